"""The lessons in a real browser: JupyterLab on 127.0.0.1, driven in Chromium by Playwright (`make browser-test`).

nbval proves the cells run in a kernel; this proves what a learner sees: for every lesson, run all cells
in JupyterLab, wait for the kernel, and check that no cell shows a traceback, that every widget renders
(no "Error displaying widget"), that the long cells' tqdm bars render as widgets, and that the explorers
redraw when pressed. It also opens the offline reveal.js decks (`make slides`) at 1280x720 and measures every slide.
Screenshots go to $FTCOURSE_SCREENSHOTS (default build/browser/): look at them.

Needs Debian's chromium (`apt-get install chromium`; Playwright never downloads a browser here) and
`pip install -e ".[browser]"`. Not collected by a plain `pytest`: run `pytest tests/browser`.
JupyterLab serves a temporary copy of lessons/, so its autosave never touches the tested originals.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
CHROMIUM = os.environ.get("FTCOURSE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHOTS = Path(os.environ.get("FTCOURSE_SCREENSHOTS", ROOT / "build" / "browser"))
RUN_ALL_TIMEOUT_S = 400  # the slowest lesson runs in about 110 s on 2 cores; the browser adds a little
# Lessons whose cells build an explorer (ipywidgets) and whose long cells show tqdm bars.
EXPLORERS = {"01_where_backprop_stops": "run", "03_differential_learning_rates": "run"}
MIN_BARS = {"00_welcome_and_setup": 0, "01_where_backprop_stops": 1, "02_warming_up_the_head": 1,
            "03_differential_learning_rates": 1, "04_batchnorm_when_fine_tuning": 1, "05_the_recipe": 1,
            "06_beyond_one_process": 1}

try:
    from playwright import sync_api as playwright
except ImportError as e:  # a clear error, not a skip: this file runs only when asked for
    raise ImportError('the browser test needs Playwright: pip install -e ".[browser]"') from e


def _report(line: str) -> None:
    """Print a result line and append it to SHOTS/report.txt (xdist workers' prints do not reach the terminal)."""
    print("\n" + line)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open(SHOTS / "report.txt", "a") as f:
        f.write(line + "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """Attach every cell (no windowing), and nothing reaches out for news or updates."""
    for rel, value in [("@jupyterlab/notebook-extension/tracker.jupyterlab-settings", {"windowingMode": "none"}),
                       ("@jupyterlab/apputils-extension/notification.jupyterlab-settings",
                        {"fetchNews": "false", "checkForUpdates": False}),
                       ("@jupyterlab/docmanager-extension/plugin.jupyterlab-settings", {"autosave": False})]:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The URL of a JupyterLab serving a copy of lessons/; stopped (with its kernels) afterwards."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set FTCOURSE_CHROMIUM)")
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "lessons", root / "lessons", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _settings(root / "settings")
    port = _free_port()
    env = os.environ | {"JUPYTERLAB_SETTINGS_DIR": str(root / "settings"), "JUPYTER_RUNTIME_DIR": str(root / "rt"),
                        "FTCOURSE_DATA": str(ROOT / "data")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited: {(root / 'lab.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not answer within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-item", has_text=menu).first.click()
    page.locator(".lm-Menu-item:visible", has_text=item).first.click()
    page.keyboard.press("Escape")  # no menu left open


def _started(page) -> bool:
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    return any(p.strip() not in ("", "[ ]:") for p in prompts)


def _clear_outputs(page) -> None:
    """Edit > Clear Outputs of All Cells, tried again if nothing is cleared within 15 s.

    The first page of a worker once kept its outputs for 60 s, twice, with two workers starting: the
    click fell between menus (as `_run_all`'s can), and waiting longer did not help.
    """
    cleared = ("document.querySelectorAll('.jp-Notebook .jp-OutputArea-output').length === 0"
               " && [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].every(p => !/\\d/.test(p.textContent))")
    for _ in range(4):
        _menu(page, "Edit", "Clear Outputs of All Cells")
        try:
            page.wait_for_function(cleared, timeout=15_000)
            return
        except playwright.TimeoutError:
            continue
    raise AssertionError("Clear Outputs of All Cells left outputs after four tries")


def _run_all(page) -> None:
    """Run > Run All Cells, tried again if the kernel has not started within 10 s (a click can fall between menus)."""
    for _ in range(3):
        _menu(page, "Run", "Run All Cells")
        for _ in range(20):
            if _started(page):
                return
            page.wait_for_timeout(500)
    raise AssertionError("Run All Cells did not start the kernel")


def _wait_until_done(page, n_code: int, timeout_s: float) -> None:
    """Every code cell with a visible input shows an execution count (none "[*]") and the kernel is idle.

    Cells whose input is collapsed (the solutions) show no prompt; a run that stops (an error in a
    cell) leaves the kernel idle with cells unrun, which fails here within a minute, not at the timeout.
    """
    deadline, idle_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        prompts = [p.strip() for p in page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]
        done = [p for p in prompts if p[:1] == "[" and p.rstrip(":")[1:-1].strip().isdigit()]
        busy = any("*" in p for p in prompts)
        if len(done) >= n_code and not busy:
            return
        idle = not busy and page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0
        idle_since = (idle_since or time.monotonic()) if idle else None
        if idle_since and time.monotonic() - idle_since > 60:
            break
        time.sleep(1)
    raise AssertionError(f"{len(done)} of {n_code} cells ran (prompts: {prompts})")


def _code_cells(path: Path) -> int:
    """Code cells a learner sees with a prompt (collapsed solution inputs show none)."""
    cells = json.loads(path.read_text())["cells"]
    return sum(c["cell_type"] == "code" and bool("".join(c["source"]).strip())
               and not c["metadata"].get("jupyter", {}).get("source_hidden") for c in cells)


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_and_renders_in_jupyterlab(lab, browser, path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(f"{lab}/lab/tree/lessons/{path.name}?reset", timeout=60_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
        # clear the committed outputs first, so that everything checked below comes from this run
        _clear_outputs(page)
        page.wait_for_timeout(1000)  # let the clear settle before the run starts
        t0 = time.monotonic()
        _run_all(page)
        _wait_until_done(page, _code_cells(path), RUN_ALL_TIMEOUT_S)
        seconds = time.monotonic() - t0
        stderr = page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
        tracebacks = [t for t in stderr if "Traceback" in t or "Error" in t.split("\n")[0]]
        assert not tracebacks, f"{path.name}: {tracebacks[0][:2000]}"
        assert page.get_by_text("Error displaying widget").count() == 0, path.name
        bars = page.locator(".jp-OutputArea .widget-hprogress").count()
        assert bars >= MIN_BARS[path.stem], f"{path.name}: {bars} tqdm bars rendered as widgets"
        widgets = page.locator(".jp-OutputArea .jupyter-widgets")
        if path.stem in EXPLORERS:
            button = page.locator(".jp-OutputArea .jupyter-widgets button", has_text=EXPLORERS[path.stem]).first
            button.scroll_into_view_if_needed()
            box = button.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')]").first
            button.click()
            box.locator(".jp-RenderedImage img, img").first.wait_for(timeout=120_000)
            box.screenshot(path=str(SHOTS / f"{path.stem}-explorer.png"))
        if widgets.count():
            widgets.first.scroll_into_view_if_needed()
            widgets.first.screenshot(path=str(SHOTS / f"{path.stem}-first-widget.png"))
        page.screenshot(path=str(SHOTS / f"{path.stem}-end.png"))
        _report(f"{path.name}: all cells in {seconds:.0f} s, {widgets.count()} widgets, {bars} tqdm bars")
    finally:
        page.close()


DECKS = [ROOT / "build" / "slides" / f"{p.stem}.slides.html" for p in LESSONS]
# every slide laid out in place (reveal.js shows one at a time), so that each can be measured
SHOW_ALL = (".reveal .slides section { display: block !important; position: relative !important;"
            " visibility: visible !important; opacity: 1 !important; transform: none !important;"
            " height: auto !important; top: 0 !important; } .reveal .fragment { opacity: 1 !important;"
            " visibility: visible !important; }")


def test_offline_slides_project_at_1280x720(browser):
    """Every deck loads offline; every slide and sub-slide of every lesson fits a 1280x720 screen."""
    missing = [d.name for d in DECKS if not d.exists()]
    if missing:
        pytest.fail(f"{missing} missing: run `make slides` first")
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 720}, offline=True)
    page = context.new_page()
    try:
        page.goto(DECKS[1].as_uri())  # lesson 01: the first three slides, as the room sees them
        page.wait_for_selector(".reveal.ready", timeout=30_000)  # reveal.js initialised from the local copy
        for i in range(3):
            page.wait_for_timeout(900)  # the slide transition
            page.screenshot(path=str(SHOTS / f"slides-01-{i + 1}.png"))
            page.keyboard.press("Space")  # next slide or sub-slide
        too_tall = []
        for deck in DECKS:
            page.goto(deck.as_uri())
            page.wait_for_selector(".reveal.ready", timeout=30_000)
            page.add_style_tag(content=SHOW_ALL)
            page.wait_for_timeout(300)
            heights = page.evaluate("[...document.querySelectorAll('.reveal .slides section')]"
                                    ".filter(s => !s.querySelector('section')).map(s => s.scrollHeight)")
            assert len(heights) >= 6, f"{deck.name}: {len(heights)} slides"
            too_tall += [f"{deck.stem} slide {k + 1}: {h} px" for k, h in enumerate(heights) if h > 720]
            _report(f"{deck.stem}: {len(heights)} slides and sub-slides, tallest {max(heights)} px")
        assert not too_tall, f"taller than a 720-px screen: {too_tall}"
    finally:
        context.close()
