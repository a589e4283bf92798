"""How long each lesson takes to run top to bottom in a fresh kernel, against the course's time budget.

Each notebook under lessons/ is read, executed in memory by nbclient in a new python3 kernel (in the
lessons folder, as a learner runs it) and thrown away: the files on disk are never written. This
prints one row per lesson with its wall time and OK/OVER against the budget (COURSE_PLAN section 7:
<= 120 s per lesson and <= 10 min for the whole course on the 2-core CPU), then the total. A lesson
that raises an error is reported as ERROR with the exception's first line.

    python benchmarks/course_runtime.py [--quick] [--device cpu|cuda] [lessons/01_*.ipynb ...]

--quick runs only lessons/00_*.ipynb. --device sets FTCOURSE_DEVICE for the kernels, so the
lessons' ftcourse.get_device() picks it up.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LESSON_BUDGET_S = 120.0
COURSE_BUDGET_S = 600.0


def run_lesson(path: Path, timeout: int) -> tuple[float, str | None]:
    """(seconds, error or None) for one execution of the notebook in a fresh kernel; the file is not written."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as exc:  # a failing lesson is a row of the table, not the end of the benchmark
        return time.perf_counter() - t0, (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:80]
    return time.perf_counter() - t0, None


def lesson_paths(notebooks: list[Path], quick: bool) -> list[Path]:
    """The notebooks given, or every lesson (only lesson 00 with `quick`)."""
    return notebooks or sorted((ROOT / "lessons").glob("00_*.ipynb" if quick else "*.ipynb"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every lessons/*.ipynb")
    ap.add_argument("--quick", action="store_true", help="only lessons/00_*.ipynb")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--timeout", type=int, default=600, help="seconds a single cell may run before it is stopped")
    args = ap.parse_args(argv)
    paths = lesson_paths(args.notebooks, args.quick)
    if not paths:
        raise SystemExit("no lessons found under lessons/")
    os.environ["FTCOURSE_DEVICE"] = args.device  # inherited by the kernels
    print(f"course runtime: device={args.device} budget {LESSON_BUDGET_S:.0f} s per lesson, "
          f"{COURSE_BUDGET_S / 60:.0f} min in all; cpu cores={os.cpu_count()}\n")
    width = max(len("lesson"), *(len(p.name) for p in paths))
    print(f"{'lesson':<{width}}  {'seconds':>7}  status")
    print(f"{'-' * width}  {'-' * 7}  ------")
    total, failed = 0.0, 0
    for path in paths:
        seconds, error = run_lesson(path, args.timeout)
        total += seconds
        failed += error is not None
        status = f"ERROR: {error}" if error else ("OK" if seconds <= LESSON_BUDGET_S else "OVER")
        print(f"{path.name:<{width}}  {seconds:>7.1f}  {status}", flush=True)
    print(f"{'-' * width}  {'-' * 7}  ------")
    print(f"{'total':<{width}}  {total:>7.1f}  {'OK' if total <= COURSE_BUDGET_S else 'OVER'}")
    if failed:
        raise SystemExit(f"{failed} lesson(s) failed to run")


if __name__ == "__main__":
    main()
