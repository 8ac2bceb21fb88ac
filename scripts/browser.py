"""The site in Debian's headless Chromium, with no network: what the site's tests and its screenshot share.

:func:`build_site` builds the site as ``make docs`` does; :func:`chromium` starts the browser, which can reach
loopback alone; :func:`pointer_strokes` draws on an element with a mouse or a finger, as a visitor would;
:func:`severe_messages` is what the page logged as errors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--proxy-server=http://127.0.0.1:9",  # nowhere: loopback alone is reachable
         "--allow-file-access-from-files")  # fmt: skip


def build_site(out: Path) -> Path:
    """``mkdocs build --strict`` into ``out``, with nothing of the caller's environment but ``PATH``."""
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=REPO, check=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return out


def chromium(size: tuple[int, int] | None = None):
    """A headless Chromium (a Selenium driver: ``quit()`` it), logging the console; its window ``size`` is
    ``(width, height)``, or headless Chromium's own, a small screen's, where Material shows its mobile layout."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        raise FileNotFoundError(
            f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver "
            "(make test does, as root)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, *([f"--window-size={size[0]},{size[1]}"] if size else [])):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    return driver


def pointer_strokes(driver, element, strokes, kind: str = "mouse") -> None:
    """Draw ``strokes`` on ``element``: each a list of points ``(x, y)`` in [0, 1] of its width and height,
    pressed at the first, moved through the rest, released; ``kind`` is ``"mouse"``, ``"touch"`` or ``"pen"``."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    size = element.size
    actions = ActionBuilder(driver, mouse=PointerInput(kind, f"{kind} pointer"))
    pointer = actions.pointer_action
    for stroke in strokes:
        for i, (x, y) in enumerate(stroke):
            # offsets are from the element's centre, in CSS pixels
            offset = round((x - 0.5) * size["width"]), round((y - 0.5) * size["height"])
            pointer.move_to(element, *offset)
            if i == 0:
                pointer.pointer_down()
        pointer.pointer_up()
    actions.perform()


def severe_messages(driver) -> list[str]:
    """The console's errors (level SEVERE) since they were last read: a page that works logs none."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
