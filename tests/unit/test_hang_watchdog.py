"""The hang watchdog in the repository's conftest.py: a test that hangs ends the run within its limit, printing its
stack and naming itself, with the Makefile's own xdist options; SIGUSR1 prints every thread's stack and the run goes
on. Each case is a small pytest run in a folder of its own, with a copy of conftest.py."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # spawns five pytest runs (about 30 s in all)

HANGS = '''
import time


def test_passes():
    pass


def test_sleeps():
    time.sleep(600)  # far past the limit the outer test sets, and past the outer timeout
'''
OTHER = '''
def test_other():
    pass
'''


def _project(tmp_path: Path, **tests: str) -> Path:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # its own rootdir: not the repository's configuration
    for name, text in tests.items():
        (tmp_path / f"{name}.py").write_text(text)
    return tmp_path


def _pytest(folder: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    outer = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FTCOURSE_STACKS"))}  # not a worker
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=folder,
                         env=outer | env, capture_output=True, text=True, timeout=150)
    return out, time.monotonic() - start


def _makefile_xdist() -> list[str]:
    """The xdist options `make test` and `make test-oldest` run with."""
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("-m pytest $(XDIST)") == 2, "make test and make test-oldest both run with $(XDIST)"
    return re.search(r"^XDIST := (.+)$", makefile, re.M).group(1).split()


def test_a_hung_test_ends_the_run_naming_itself_with_the_makefiles_xdist_options(tmp_path):
    xdist = _makefile_xdist()
    assert "--max-worker-restart=0" in xdist  # or xdist re-runs the hung test on each fresh worker
    out, seconds = _pytest(_project(tmp_path, test_hangs=HANGS, test_other=OTHER), *xdist,
                           FTCOURSE_TEST_HANG_S="3")
    text = out.stdout + out.stderr
    assert out.returncode != 0 and seconds < 120, (out.returncode, seconds)
    assert "Timeout (0:00:03)!" in text  # faulthandler's dump, with the hung line
    assert re.search(r'test_hangs\.py", line \d+ in test_sleeps', text), text[-3000:]
    assert re.search(r"worker 'gw\d' crashed while running 'test_hangs.py::test_sleeps'", text), text[-3000:]
    # stopped there, not re-run on fresh workers (xdist's default re-runs it on each replacement, up to 8 times)
    assert "replacing crashed worker" not in text and re.search(r"\b1 failed\b", text), text[-2000:]


def test_the_watchdog_works_without_xdist_can_be_turned_off_and_names_a_bad_limit(tmp_path):
    folder = _project(tmp_path, test_hangs=HANGS.replace("600", "4"))
    out, seconds = _pytest(folder, FTCOURSE_TEST_HANG_S="2")
    assert out.returncode != 0 and seconds < 120
    assert "Timeout (0:00:02)!" in out.stdout + out.stderr and "in test_sleeps" in out.stdout + out.stderr
    out, _ = _pytest(folder, FTCOURSE_TEST_HANG_S="0")  # off: the 4 s test just passes
    assert out.returncode == 0 and "2 passed" in out.stdout, out.stdout[-2000:]
    out, _ = _pytest(folder, FTCOURSE_TEST_HANG_S="ten minutes")
    assert out.returncode != 0 and "FTCOURSE_TEST_HANG_S must be a number of seconds" in out.stderr, out.stderr


def test_sigusr1_writes_every_threads_stack_and_the_run_goes_on(tmp_path):
    folder = _project(tmp_path, test_signal='''
import os
import signal


def test_signal_me():
    os.kill(os.getpid(), signal.SIGUSR1)
''')
    stacks = tmp_path / "stacks"
    out, _ = _pytest(folder, FTCOURSE_STACKS_DIR=str(stacks))
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout[-2000:]
    [dump] = stacks.glob("stacks-main-*.txt")
    assert re.search(r'test_signal\.py", line \d+ in test_signal_me', dump.read_text()), dump.read_text()
