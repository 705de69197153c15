"""Open built HTML pages in headless Chromium and fail on what a reader would see broken.

Run by the ``docs_check`` nox session after the HTML build::

    python docs/scripts/check_rendered.py docs/_build/html [PAGE.html ...]
    python docs/scripts/check_rendered.py --self-test


For each page (the key pages by default) it waits until MathJax has typeset
the maths, then fails if

- TeX is left in the visible text (``\\(``, ``\\[``, ``\\frac``, ``\\sum``, ...
  outside code blocks): MathJax did not load or could not read it;
- an image did not load (``naturalWidth == 0``): a missing or broken file.

It drives the Chromium and ChromeDriver of the system (Debian's ``chromium``
and ``chromium-driver``) through Selenium, from ``file://`` URLs: no server and
no network, so it also proves that the pages render offline. ``--self-test``
first shows that the check can fail: a page with raw TeX and a missing image
must be reported, and a clean one must pass.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service

KEY_PAGES = (
    "index.html",
    "getting-started.html",
    "nn.html",
    "how-it-works.html",
    "performance.html",
    "reliability.html",
)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
PAGE_TIMEOUT_S = 60
# TeX that MathJax would have turned into maths: delimiters and common commands.
RAW_TEX = re.compile(r"\\[(\[)\]]|\$\$|\\(frac|sum|mathrm|left|right|begin\{|cdot|times)\b")

# Waits for MathJax (when the page loads it) and for every image, then reports.
# Lazy images are switched to eager so that off-screen ones load too.
REPORT_JS = """
const done = arguments[arguments.length - 1];
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const images = [...document.images];
  for (const img of images) { img.loading = "eager"; }
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  const body = document.body.cloneNode(true);
  body.querySelectorAll("pre, code, script, style, mjx-container, .MathJax")
      .forEach(node => node.remove());
  done({
    mathjax: Boolean(window.MathJax && MathJax.version),
    text: body.textContent,
    broken: images.filter(img => img.naturalWidth === 0).map(img => img.currentSrc || img.src),
  });
})();
"""


def _driver() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(PAGE_TIMEOUT_S)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    return driver


def _snippet(text: str, match: re.Match[str]) -> str:
    start, end = max(match.start() - 40, 0), match.end() + 40
    return " ".join(text[start:end].split())


def problems(report: dict[str, Any]) -> list[str]:
    """What is wrong in one page's report: raw TeX in its text, images that did not load."""
    text = report["text"]
    found = [f"raw TeX visible: ...{_snippet(text, m)}..." for m in RAW_TEX.finditer(text)][:5]
    found += [f"broken image: {src}" for src in report["broken"]]
    return found


def check(site: Path, pages: list[str]) -> int:
    failures = 0
    driver = _driver()
    try:
        for page in pages:
            path = (site / page).resolve()
            if not path.is_file():
                print(f"FAIL {page}: not built ({path} does not exist)")
                failures += 1
                continue
            driver.get(path.as_uri())
            try:
                report = driver.execute_async_script(REPORT_JS)
            except TimeoutException:
                print(f"FAIL {page}: MathJax or an image did not finish in {PAGE_TIMEOUT_S} s")
                failures += 1
                continue
            found = problems(report)
            status = "FAIL" if found else "ok  "
            mathjax = "MathJax loaded" if report["mathjax"] else "no MathJax on the page"
            print(f"{status} {page}: {mathjax}, {len(found)} problem(s)")
            for line in found:
                print(f"     {line}")
            failures += bool(found)
    finally:
        driver.quit()
    return failures


SELF_TEST_PAGES = {
    "raw-tex.html": "<p>The sum is \\[y = \\frac{1}{2}\\]</p>",
    "broken-image.html": '<p><img src="missing.png" alt="missing"></p>',
    "clean.html": "<p>Nothing to see.</p><pre>code may hold \\[ and \\frac</pre>",
}


def self_test() -> int:
    """The check fails on raw TeX and on a missing image, and passes a clean page."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        for name, body in SELF_TEST_PAGES.items():
            (site / name).write_text(f"<!doctype html><html><body>{body}</body></html>")
        bad = check(site, ["raw-tex.html", "broken-image.html"])
        good = check(site, ["clean.html"])
    if (bad, good) != (2, 0):
        print(f"self-test FAILED: {bad} of 2 bad pages and {good} of 1 clean page reported")
        return 1
    print("self-test passed: the check reports raw TeX and broken images")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--self-test"]:
        return self_test()
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    site = Path(argv[0])
    failures = check(site, argv[1:] or list(KEY_PAGES))
    print(f"{failures} page(s) with problems" if failures else "every page rendered cleanly")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
