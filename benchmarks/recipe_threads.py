"""Is a recipe stable? The same seed with 1 and with 2 torch threads, on each task at each number of images per class.

Threads change the order of floating-point sums inside convolutions, so the two runs differ in their last digits at
the first step; a stable recipe ends close anyway, an unstable one (a run at the edge of divergence, a choice
between rates that flips) ends far apart. Prints, per task and size, validation and test accuracy with 1 and 2
threads, the recipe's choices, and the largest |difference|; the bar of issue 25 is 3 points everywhere.

    python benchmarks/recipe_threads.py                       # run_recipe as it is now, seed 0, 3 tasks x 2 sizes
    python benchmarks/recipe_threads.py --arm "shifts, one rate 0.03, no short runs" --seed 1
    python benchmarks/recipe_threads.py --save build/threads.json   # every number as JSON

An arm is one of ftcourse.lab.studies.ABLATION_ARMS (its run_recipe arguments); the default, "run_recipe", is
run_recipe's defaults. Timed runs are not the point: run it alone or not, the numbers are the same.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import ftcourse
from ftcourse.lab import studies


def run(arm: str, task_name: str, shots: int, seed: int, threads: int) -> dict[str, float]:
    """One recipe run with `threads` torch threads: its accuracies and choices. run_recipe's seed_everything sets
    the thread count from $FTCOURSE_THREADS, so that is what is set (and the count checked after the run)."""
    before = os.environ.get("FTCOURSE_THREADS")
    os.environ["FTCOURSE_THREADS"] = str(threads)
    try:
        task = studies.RECIPE_TASKS[task_name](shots=shots, seed=seed)
        _, report = ftcourse.run_recipe(task, seed=seed, fold=False, **studies._arm_kwargs(arm))
        assert torch.get_num_threads() == threads, (torch.get_num_threads(), threads)
    finally:
        if before is None:
            os.environ.pop("FTCOURSE_THREADS")
        else:
            os.environ["FTCOURSE_THREADS"] = before
    return {"val": report.val_accuracy, "test": report.test_accuracy, "rate": report.chosen_lr,
            "adabn": float(report.adabn_applied)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", default="run_recipe", help="an ablation arm's name, or run_recipe (its defaults)")
    ap.add_argument("--tasks", nargs="+", default=list(studies.ABLATION_TASKS), choices=list(studies.RECIPE_TASKS))
    ap.add_argument("--shots", type=int, nargs="+", default=list(studies.ABLATION_SHOTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.arm != "run_recipe" and args.arm not in studies.ABLATION_ARMS:
        ap.error(f"unknown arm {args.arm!r}; choose run_recipe or one of: {', '.join(studies.ABLATION_ARMS)}")
    rows, numbers, t0 = [], {}, time.perf_counter()
    for name in args.tasks:
        for k in args.shots:
            one, two = (run(args.arm, name, k, args.seed, t) for t in (1, 2))
            numbers[f"{name} {k}/class"] = {"1 thread": one, "2 threads": two}
            rows.append({"task": f"{name} {k}/class", "val 1 / 2 threads": f"{one['val']:.3f} / {two['val']:.3f}",
                         "test 1 / 2 threads": f"{one['test']:.3f} / {two['test']:.3f}",
                         "rate, AdaBN": f"{one['rate']:g}, {one['adabn']:.0f} / {two['rate']:g}, {two['adabn']:.0f}",
                         "largest |diff| (points)": 100 * max(abs(one[s] - two[s]) for s in ("val", "test"))})
            print(rows[-1], flush=True)
    print(f"\n{args.arm}, seed {args.seed}: the same seed with 1 and with 2 torch threads")
    print(ftcourse.Table(rows=rows, formats={"largest |diff| (points)": "{:.1f}"}))
    worst = max(r["largest |diff| (points)"] for r in rows)
    print(f"largest difference {worst:.1f} points: {'within' if worst <= 3 else 'OVER'} the 3-point bar "
          f"({time.perf_counter() - t0:.0f} s)")
    if args.save:
        result = {"arm": args.arm, "seed": args.seed, "torch": torch.__version__, "cells": numbers}
        ftcourse.files.atomic_write_text(args.save, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
