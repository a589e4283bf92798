"""Repository-wide pytest hooks: a watchdog that ends a hung test with every thread's stack, and the time spent per
test file, notebooks included, printed at the end of a run.

Here and not in tests/conftest.py: a conftest's hooks only see the items below its folder, and the
lessons/*.ipynb items (nbval) are not below tests/.
"""

import faulthandler
import os
import signal

import pytest

# `make test` runs the suite in pytest-xdist workers, one per core (`-n auto --dist loadscope`: each test
# module and each notebook stays whole in one worker). Each worker then uses one torch thread, and so do
# the notebook kernels it starts (they inherit the environment): two single-thread processes get more
# out of two cores than one process with two threads, and 1 thread is a summation order the
# notebooks are checked under anyway. An explicit $FTCOURSE_THREADS wins.
if os.environ.get("PYTEST_XDIST_WORKER") and "FTCOURSE_THREADS" not in os.environ:
    os.environ["FTCOURSE_THREADS"] = "1"

# A hung test ends the run in minutes, naming itself, instead of holding CI until its limit: each test (its fixtures
# included) runs under faulthandler's watchdog, a C thread that needs no GIL. Past FTCOURSE_TEST_HANG_S seconds
# (default 900; 0 turns it off) it prints every thread's stack to the terminal and ends the process: under xdist the
# controller then reports "worker 'gwN' crashed while running <test>" (the Makefile runs with --max-worker-restart=0,
# so the run stops there instead of re-running the hung test on fresh workers). No test file takes 70 s in all in
# `make test` (the time per file printed below, 2026-12-05); a notebook cell fails on its own after 300 s (pyproject.toml).
HANG_SECONDS = 900.0
_STDERR_FD: int | None = None  # the terminal's stderr (a test's own fd 2 is a capture file)
_WATCHDOG = False


def pytest_configure(config):
    """Arm the stack dumps: the watchdog (below), and SIGUSR1 for the whole run (`kill -USR1 <pid>` prints every
    thread's stack and goes on; .ci/run's step limit sends it to every pytest process)."""
    global _STDERR_FD, _WATCHDOG, HANG_SECONDS
    text = os.environ.get("FTCOURSE_TEST_HANG_S", str(HANG_SECONDS))
    try:
        HANG_SECONDS = float(text)
    except ValueError:
        raise pytest.UsageError(f"FTCOURSE_TEST_HANG_S must be a number of seconds per test (0 turns the watchdog "
                                f"off), got {text!r}") from None
    _STDERR_FD = os.dup(2)
    # faulthandler has one watchdog: pytest's own faulthandler_timeout, when someone sets it, keeps it
    _WATCHDOG = HANG_SECONDS > 0 and not float(config.getini("faulthandler_timeout") or 0)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=_stacks_file(), all_threads=True)


def _stacks_file():
    """Where SIGUSR1 prints the stacks: $FTCOURSE_STACKS_DIR/stacks-<worker>-<pid>.txt when set (.ci/run sets it, then
    prints the files: several processes writing to one terminal at once interleave their lines), else the terminal."""
    folder = os.environ.get("FTCOURSE_STACKS_DIR")
    if not folder:
        return _STDERR_FD
    os.makedirs(folder, exist_ok=True)
    name = f"stacks-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}.txt"
    return open(os.path.join(folder, name), "w")  # noqa: SIM115 - open until the process ends


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Run each test (setup, call, teardown) under the watchdog."""
    if not _WATCHDOG:
        yield
        return
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=_STDERR_FD)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


_SECONDS_PER_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Add up the time of every test phase per file (notebooks included)."""
    path = report.nodeid.split("::")[0]
    _SECONDS_PER_FILE[path] = _SECONDS_PER_FILE.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """Print the time per test file at the end of a run: where the suite's minutes go."""
    if not _SECONDS_PER_FILE:
        return
    terminalreporter.section("time per file")
    for path, seconds in sorted(_SECONDS_PER_FILE.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")
    terminalreporter.write_line(f"{sum(_SECONDS_PER_FILE.values()):8.1f} s  in all")
