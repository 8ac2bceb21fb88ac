"""The drawing page's picture, ``docs/figures/demo/screenshot.png``: the page in headless Chromium after a 7 is
drawn on it with a mouse, as a visitor would (``make figures`` runs this; the page shows the picture where it
cannot run, as on GitHub).

``python scripts/demo_screenshot.py [--out PNG]`` builds the site into a temporary folder, opens the page from
disk, draws, and saves the page's interactive part, unless the model did not read the 7 as a 7; it prints
what the model said. A fault is one line on stderr and exit status 1, with nothing written.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
browser = importlib.import_module("browser")  # scripts/browser.py, beside this one

from lr_from_scratch.cli import writable_folder  # noqa: E402
from lr_from_scratch.errors import UserError  # noqa: E402
from lr_from_scratch.files import write_bytes  # noqa: E402

OUT = browser.REPO / "docs" / "figures" / "demo" / "screenshot.png"
#: A 7: the bar from left to right, then down to the left; points in [0, 1] of the square's width and height.
SEVEN = [[(0.25, 0.18), (0.78, 0.18), (0.62, 0.45), (0.45, 0.85)]]


def shoot(out: Path) -> str:
    """Draw the 7, save the picture to ``out``; return the page's summary line."""
    from selenium.webdriver.common.by import By

    writable_folder(out.parent, "--out")
    with tempfile.TemporaryDirectory() as folder:
        site = browser.build_site(Path(folder) / "site")
        driver = browser.chromium((1100, 2400))  # tall enough to hold the whole part
        try:
            driver.get((site / "demo.html").as_uri())
            browser.pointer_strokes(driver, driver.find_element(By.ID, "lr-demo-canvas"), SEVEN)
            said = driver.find_element(By.ID, "lr-demo-summary").text
            png = driver.find_element(By.ID, "lr-demo").screenshot_as_png
        finally:
            driver.quit()
    if not said.startswith("The model says 7 "):
        raise UserError(f"the model did not read the drawn 7 as a 7 ({said!r}); the picture would mislead")
    write_bytes(out, png)
    return said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the PNG to write (default: {OUT})")
    args = parser.parse_args(argv)
    from selenium.common.exceptions import WebDriverException

    try:
        said = shoot(args.out)
    except (UserError, OSError, subprocess.CalledProcessError, WebDriverException) as error:
        print(f"error: {str(error).splitlines()[0]}; nothing written", file=sys.stderr)
        return 1
    print(f"drew a 7; {said} Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
