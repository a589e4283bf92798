"""Repository-wide pytest hooks: the time spent per test file, notebooks included, printed at the end of a run.

Here and not in tests/conftest.py: a conftest's hooks only see the items below its folder, and the
lessons/*.ipynb items (nbval) are not below tests/.
"""

import os

# `make test` runs the suite in pytest-xdist workers, one per core (`-n auto --dist loadscope`: each test
# module and each notebook stays whole in one worker). Each worker then uses one torch thread, and so do
# the notebook kernels it starts (they inherit the environment): two single-thread processes get more
# out of two cores than one process with two threads, and 1 thread is a summation order the
# notebooks are checked under anyway. An explicit $FTCOURSE_THREADS wins.
if os.environ.get("PYTEST_XDIST_WORKER") and "FTCOURSE_THREADS" not in os.environ:
    os.environ["FTCOURSE_THREADS"] = "1"

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
