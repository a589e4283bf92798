"""Wall time of run_recipe against the baselines it must not be slower than, on each task at each size (run it alone).

Issue 25's bar: the recipe in no more wall time than fastai's one call (with the same shifts). The studies record
seconds too, but measured with other jobs on the machine; this script times each method on the same cell, one
after another, `--repeats` times (the median is printed), with the torch threads the machine has.

    python benchmarks/recipe_wall_time.py                  # seed 0, 3 tasks x 2 sizes, 3 repeats
    python benchmarks/recipe_wall_time.py --repeats 1 --tasks far --shots 10
    python benchmarks/recipe_wall_time.py --arm "shifts, one rate 0.03, always AdaBN"   # an ablation arm instead
    python benchmarks/recipe_wall_time.py --arm run_recipe "shifts, one rate 0.03, always AdaBN"  # several, one run
    python benchmarks/recipe_wall_time.py --save data/results/recipe_wall_time.json     # what lesson 05 prints

--save writes the medians with how they were made (command, torch, machine, threads, date), atomically. Several
arms are timed in the same run, interleaved with the baselines, so that their ratios share one machine state; each
gets a column "<arm> / one call + shifts" ("recipe / one call + shifts" is the first arm's).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import ftcourse
from ftcourse.files import atomic_write_text
from ftcourse.lab import studies



def seconds(method: str, task, seed: int, steps: int = ftcourse.DEFAULTS.steps) -> float:
    """Wall seconds of one run of `method` on `task`: "run_recipe" (its defaults), an ablation arm (its arguments),
    or a baseline; a recipe with BN folding included."""
    t0 = time.perf_counter()
    if method == "run_recipe":
        ftcourse.run_recipe(task, seed=seed, steps=steps)
    elif method in studies.ABLATION_ARMS:
        ftcourse.run_recipe(task, seed=seed, steps=steps, **studies._arm_kwargs(method))
    else:
        studies._ablation_arm(method, task, seed, steps)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(studies.ABLATION_TASKS), choices=list(studies.RECIPE_TASKS))
    ap.add_argument("--shots", type=int, nargs="+", default=list(studies.ABLATION_SHOTS))
    ap.add_argument("--arm", nargs="+", default=["run_recipe"],
                    help="run_recipe (its defaults) or ablation arms' names, one or several")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=ftcourse.DEFAULTS.steps, help="a smaller number: a smoke test")
    ap.add_argument("--save", type=Path, default=None, help="write the table as JSON here (e.g. data/results/...)")
    args = ap.parse_args(argv)
    for arm in args.arm:
        if arm != "run_recipe" and arm not in studies.ABLATION_ARMS:
            ap.error(f"unknown arm {arm!r}; choose run_recipe or one of: {', '.join(studies.ABLATION_ARMS)}")
    methods = (*args.arm, *studies.ABLATION_BASELINES)
    threads = torch.get_num_threads()
    rows = []
    warm = studies.RECIPE_TASKS[args.tasks[0]](shots=args.shots[0], seed=args.seed)
    for m in methods:  # untimed: the first call of each pays one-time costs (kernels, caches)
        seconds(m, warm, args.seed, 5)
    for name in args.tasks:
        for k in args.shots:
            task = studies.RECIPE_TASKS[name](shots=k, seed=args.seed)
            times = {m: [] for m in methods}
            for _ in range(args.repeats):  # interleaved, so that a slow minute hits every method
                for m in methods:
                    times[m].append(seconds(m, task, args.seed, args.steps))
            row = {"cell": f"{name} {k}/class", **{m: statistics.median(v) for m, v in times.items()}}
            bar = row["one call, shifts of up to 4 px"]
            row["recipe / one call + shifts"] = row[args.arm[0]] / bar
            row |= {f"{arm} / one call + shifts": row[arm] / bar for arm in args.arm[1:]}
            rows.append(row)
            print(f"  {row['cell']}: " + ", ".join(f"{m} {row[m]:.1f} s" for m in methods), flush=True)
    print(ftcourse.Table(rows, title=f"Median wall seconds of {args.repeats} runs, seed {args.seed}, "
                                     f"{threads} torch threads (recipe with BN folding)",
                         formats={**{m: "{:.1f}" for m in methods}, "recipe / one call + shifts": "{:.2f}",
                                  **{f"{a} / one call + shifts": "{:.2f}" for a in args.arm[1:]}}))
    if args.save is not None:
        given = sys.argv[1:] if argv is None else argv
        payload = {"command": "python benchmarks/recipe_wall_time.py " + " ".join(given),
                   "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                   "threads": threads, "date": datetime.date.today().isoformat(), "arm": args.arm[0], "arms": args.arm,
                   "repeats": args.repeats, "seed": args.seed, "steps": args.steps, "rows": rows}
        args.save.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.save, json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.save}")


if __name__ == "__main__":
    main()
