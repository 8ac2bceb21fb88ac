"""The drawing page's picture, ``docs/figures/demo/screenshot.png``: the page in headless Chromium after a 7 is
drawn on it with a mouse, as a visitor would (``make figures`` runs this; the page shows the picture where it
cannot run, as on GitHub).

``python scripts/demo_screenshot.py [--out PNG]`` builds the site into a temporary folder, opens the page from
disk, draws, and saves the page's interactive part; it prints what the model said.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "figures" / "demo" / "screenshot.png"
#: A 7: the bar from left to right, then down to the left; points in [0, 1] of the square's width and height.
SEVEN = [[(0.25, 0.18), (0.78, 0.18), (0.62, 0.45), (0.45, 0.85)]]


def _browser_module():
    spec = importlib.util.spec_from_file_location("browser", HERE / "browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the PNG to write (default: {OUT})")
    args = parser.parse_args(argv)
    browser = _browser_module()
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as folder:
        site = browser.build_site(Path(folder) / "site")
        try:
            driver = browser.chromium((1100, 2400))  # tall enough to hold the whole part
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        try:
            driver.get((site / "demo.html").as_uri())
            browser.pointer_strokes(driver, driver.find_element(By.ID, "lr-demo-canvas"), SEVEN)
            said = driver.find_element(By.ID, "lr-demo-summary").text
            png = driver.find_element(By.ID, "lr-demo").screenshot_as_png
        finally:
            driver.quit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"drew a 7; {said} Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
