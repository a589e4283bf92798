"""Re-execute every lesson under other conditions and compare with the committed outputs (the nbval rules).

    python scripts/check_portability.py                       # 1 and 2 torch threads, this environment
    python scripts/check_portability.py --python .venv-oldest/bin/python --threads 2
    python scripts/check_portability.py --device cuda --lax   # on a GPU machine: errors and claims only

Another thread count changes the summation order of CPU kernels, a cheap stand-in for another
machine; another interpreter tests another torch/torchvision (a side venv with, say,
`pip install "torch==2.14.*" "torchvision==0.29.*" -e ".[test]"`: the lowest pair pyproject.toml allows). With
`--lax` (nbval's --nbval-lax) only errors fail, for CUDA where the random streams differ from the CPU's.
Prints one line per run and exits non-zero if any run failed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(python: str, threads: int, device: str, lax: bool, lessons: list[str]) -> tuple[bool, str, float]:
    """(passed, pytest's last line, seconds) for one nbval run over the lessons."""
    env = dict(os.environ, FTCOURSE_THREADS=str(threads), FTCOURSE_DEVICE=device)
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *lessons]
    if lax:
        cmd.append("--nbval-lax")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if " passed" in line or " failed" in line), lines[-1] if lines else "")
    if out.returncode != 0:
        failed = [line for line in lines if line.startswith("FAILED")]
        summary += "\n    " + "\n    ".join(failed[:20])
    if "time per file" in out.stdout:  # the root conftest's section: seconds per lesson
        per_file = out.stdout.split("time per file", 1)[1].splitlines()[1:]
        summary += "\n    " + "\n    ".join(line.strip() for line in per_file if line.strip().endswith(".ipynb"))
    return out.returncode == 0, summary, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="the interpreter (venv) to run the lessons with")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lax", action="store_true", help="nbval --nbval-lax: only errors fail")
    ap.add_argument("--repeat", type=int, default=1, help="runs per setting (the issue asks for three in a row)")
    ap.add_argument("lessons", nargs="*", default=["lessons"])
    args = ap.parse_args(argv)
    version = subprocess.run([args.python, "-c", "import torch, torchvision; print(torch.__version__, "
                              "torchvision.__version__)"], capture_output=True, text=True).stdout.strip()
    ok = True
    for threads in args.threads:
        for k in range(args.repeat):
            passed, summary, seconds = run(args.python, threads, args.device, args.lax, args.lessons)
            ok &= passed
            print(f"torch/torchvision {version}, {threads} thread(s), {args.device}, run {k + 1}: "
                  f"{'PASS' if passed else 'FAIL'} in {seconds:.0f} s: {summary}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
