"""The docs site in a real browser (Debian's Chromium, headless), with no network: every formula typeset, search
and navigation working, whether the site is opened from disk (``file://``) or served on loopback."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from .conftest import REPO, load_script

BROWSER = load_script("browser")
PAGES = sorted(p.stem for p in (REPO / "docs").glob("*.md"))


def typeset(driver, url: str) -> dict:
    """Open ``url``, wait for MathJax to finish, and report what the page holds."""
    driver.get(url)
    return driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const report = () => done({
            mathjax: typeof MathJax === "object" && typeof MathJax.typesetPromise === "function",
            formulas: document.querySelectorAll(".arithmatex").length,
            typeset: document.querySelectorAll(".arithmatex mjx-container").length,
            raw: [...document.querySelectorAll(".arithmatex")].filter(e => !e.querySelector("mjx-container"))
                .map(e => e.textContent.slice(0, 60)),
            resources: performance.getEntriesByType("resource").map(r => r.name),
        });
        const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
            ? MathJax.startup.promise.then(report, report) : setTimeout(wait, 50);
        wait();
        """
    )


@pytest.mark.parametrize("page", PAGES)
def test_every_formula_is_typeset_from_disk_without_network(site, browser, page):
    result = typeset(browser, (site / f"{page}.html").as_uri())
    assert result["mathjax"], "MathJax did not load"
    assert result["raw"] == [], f"{page}: formulas left as TeX: {result['raw']}"
    assert result["typeset"] == result["formulas"]
    assert all(url.startswith(("file:", "data:")) for url in result["resources"]), result["resources"]
    assert BROWSER.severe_messages(browser) == []


def test_the_pages_with_formulas_have_them(site, browser):
    counts = {page: typeset(browser, (site / f"{page}.html").as_uri())["typeset"] for page in ("math", "fast")}
    assert min(counts.values()) >= 10, counts


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_served_on_loopback_the_maths_is_typeset_too(served, browser):
    result = typeset(browser, f"{served}/math.html")
    assert result["typeset"] == result["formulas"] >= 10 and result["raw"] == []
    assert all(url.startswith(served) for url in result["resources"]), result["resources"]


def test_search_and_navigation_work_from_disk(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((site / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, "label[for='__search']").click()
    browser.find_element(By.CSS_SELECTOR, "input[data-md-component='search-query']").send_keys("cross-entropy")
    results = WebDriverWait(browser, 20).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item a") or False
    )
    assert any("math.html" in link.get_attribute("href") for link in results)
    browser.get((site / "index.html").as_uri())
    browser.find_element(By.LINK_TEXT, "The mathematics").click()
    assert browser.current_url.endswith("math.html") and "softmax" in browser.page_source


def test_the_vendored_scripts_ship_with_their_licences(site):
    vendored = site / "javascripts" / "vendor"
    assert "Apache License" in (vendored / "mathjax" / "LICENSE").read_text()
    assert "Permission is hereby granted, free of charge" in (vendored / "iframe-worker" / "LICENSE").read_text()
    assert "unpkg.com" not in (site / "index.html").read_text()


def test_the_browser_really_has_no_network(browser):
    from selenium.common.exceptions import WebDriverException

    with pytest.raises(WebDriverException, match="ERR_PROXY_CONNECTION_FAILED"):
        browser.get("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js")


def test_the_copy_button_copies_code_without_prompts_or_output(site, browser):
    """What Material's copy button takes from a pycon block (its innerText while marked data-md-copying) pastes
    into python: no >>> or ... prompts, no printed output."""
    browser.get((site / "math.html").as_uri())
    copied = browser.execute_script(
        """
        const code = [...document.querySelectorAll(".highlight code")].find(c => c.querySelector(".gp"));
        code.setAttribute("data-md-copying", "");
        const text = code.innerText;
        code.removeAttribute("data-md-copying");
        return [code.innerText, text];
        """
    )
    shown, pasted = copied
    assert ">>> " in shown and "(4, 10)" in shown
    assert ">>>" not in pasted and "..." not in pasted and "(4, 10)" not in pasted
    assert "Z = linear(X, W, b)" in pasted
