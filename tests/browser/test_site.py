"""The course site (`make site`, build/site/) in Chromium: every page loads with no missing or outside asset,
every figure renders, the equations are typeset, and the navigation reaches every lesson. Screenshots in
$FTCOURSE_SCREENSHOTS (default build/browser/): site-index.png, site-<lesson>.png at its first figure.

Served from 127.0.0.1 by Python's http.server, as any static host would; a request to any other host counts
as a missing asset (the site must read offline)."""
from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("FTCOURSE_SITE", ROOT / "build" / "site"))
LESSONS = sorted(p.stem for p in (ROOT / "lessons").glob("*.ipynb"))
CHROMIUM = os.environ.get("FTCOURSE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHOTS = Path(os.environ.get("FTCOURSE_SCREENSHOTS", ROOT / "build" / "browser"))
PAGES = ["index.html", *(f"lessons/{n}.html" for n in LESSONS), "instructors.html", "api.html", "search.html"]

try:
    from playwright import sync_api as playwright
except ImportError as e:  # a clear error, not a skip: this file runs only when asked for
    raise ImportError('the browser test needs Playwright: pip install -e ".[browser]"') from e


@pytest.fixture(scope="module")
def site():
    if not (SITE / "index.html").exists():
        pytest.fail(f"{SITE / 'index.html'} not found: run `make site` first")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def page(site):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set FTCOURSE_CHROMIUM)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser.new_page(viewport={"width": 1280, "height": 800})
        browser.close()


def _open(page, url: str) -> list[str]:
    """Load `url`; returns every problem: failed requests, HTTP errors, requests to another host."""
    problems = []
    on_failed = lambda r: problems.append(f"failed {r.url} ({r.failure})")  # noqa: E731
    on_response = lambda r: r.status >= 400 and problems.append(f"HTTP {r.status} {r.url}")  # noqa: E731
    on_request = lambda r: (not r.url.startswith(("http://127.0.0.1", "data:", "blob:", "about:"))  # noqa: E731
                            and problems.append(f"outside request {r.url}"))
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.on("request", on_request)
    try:
        page.goto(url, wait_until="networkidle")
    finally:
        page.remove_listener("requestfailed", on_failed)
        page.remove_listener("response", on_response)
        page.remove_listener("request", on_request)
    return problems


@pytest.mark.parametrize("path", PAGES)
def test_every_page_loads_with_its_assets_and_figures(site, page, path):
    problems = _open(page, f"{site}/{path}")
    assert not problems, "\n".join(problems)
    images = page.evaluate("[...document.images].map(i => [i.currentSrc, i.complete && i.naturalWidth > 0])")
    broken = [src for src, ok in images if not ok]
    assert not broken, f"{path}: figures that do not render: {broken}"
    if path.startswith("lessons/"):
        lesson = Path(path).stem
        source = (ROOT / "lessons" / f"{lesson}.ipynb").read_text()
        figures = source.count('"image/png"')  # every figure the committed lesson shows
        assert len(images) >= figures, f"{path} shows {len(images)} images, the lesson has {figures} figures"
        assert page.locator("h1").first.inner_text().strip(), f"{path} has no title"
        if "$$" in source:  # display equations: typeset by the site's own MathJax
            page.wait_for_selector("mjx-container", timeout=15_000)
        if images:
            page.locator("img").first.scroll_into_view_if_needed()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"site-{lesson}.png"))
    elif path == "index.html":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "site-index.png"))


def test_the_navigation_reaches_every_lesson_from_the_front_page(site, page):
    assert not _open(page, f"{site}/index.html")
    nav = page.evaluate("[...document.querySelectorAll('.sidebar-tree a')].map(a => a.href)")
    table = page.evaluate("[...document.querySelectorAll('article table a')].map(a => a.href)")
    for lesson in LESSONS:
        assert any(h.endswith(f"/lessons/{lesson}.html") for h in nav), f"{lesson} is not in the navigation"
        assert any(h.endswith(f"/lessons/{lesson}.html") for h in table), f"{lesson} is not linked from the table"
    # and a lesson page links on to the next one
    assert not _open(page, f"{site}/lessons/{LESSONS[0]}.html")
    assert page.locator(f"a.next-page[href$='{LESSONS[1]}.html']").count() == 1
