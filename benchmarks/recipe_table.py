"""Lesson 05's table: scratch, linear probe, fine-tune, fastai's fine_tune and run_recipe on three tasks, over seeds.

    python benchmarks/recipe_table.py            # prints the shipped data/results/recipe.json (no training)
    python benchmarks/recipe_table.py --run      # trains seeds 0 1 2 again (about 6 min on 2 cores) and prints it
    python benchmarks/recipe_table.py --quick    # the far task, seed 0, 20 steps per method: a smoke test

Test accuracy as mean (min-max) over seeds and mean wall seconds per method, 10 images per class, about
200 optimizer steps per method (ftcourse.lab.studies.recipe_study). `--run --save FILE` writes the numbers
in the results-file format (`benchmarks/seed_studies.py --study recipe` writes the shipped one).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from ftcourse.lab import shipped, studies


def table(per_seed: dict[int, dict[str, float]], tasks, methods) -> str:
    """The printed table: one block per task, one row per method."""
    runs = list(per_seed.values())
    lines = [f"{'task':<6} {'method':<18} {'test accuracy':>19} {'seconds':>8}", "-" * 54]
    for name in tasks:
        for m in methods:
            acc = [r[f"{name} test {m}"] for r in runs]
            secs = statistics.fmean(r[f"{name} seconds {m}"] for r in runs)
            lines.append(f"{name:<6} {m:<18} {statistics.fmean(acc):>7.3f} ({min(acc):.2f}-{max(acc):.2f}) {secs:>8.1f}")
        best = max(methods, key=lambda m: statistics.fmean(r[f"{name} test {m}"] for r in runs))
        lines.append(f"{'':<6} best on the mean: {best}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="train instead of reading the shipped file")
    mode.add_argument("--quick", action="store_true", help="far task, seed 0, 20 steps per method")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(shipped.STUDY_SEEDS["recipe"]))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", type=Path, default=None, help="with --run: write the numbers to this JSON file")
    args = ap.parse_args(argv)
    os.environ["FTCOURSE_THREADS"] = str(args.threads)  # every method calls seed_everything, which sets this count
    torch.set_num_threads(args.threads)
    tasks, methods = tuple(studies.RECIPE_TASKS), studies.RECIPE_METHODS
    if args.quick or args.run:
        seeds, steps = ([0], 20) if args.quick else (args.seeds, 200)
        tasks = ("far",) if args.quick else tasks
        t0, per_seed = time.perf_counter(), {}
        for seed in seeds:
            per_seed[seed] = studies.recipe_study(seed, tasks=tasks, steps=steps)
            print(f"  seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        source = f"trained now: seeds {seeds}, {steps} steps per method, {args.threads} threads"
        if args.save:
            shipped.write_results("recipe", per_seed, "python benchmarks/recipe_table.py --run", time.perf_counter() - t0,
                                  path=args.save)
    else:
        stored = shipped.read_results("recipe")
        per_seed = {int(s): v for s, v in stored["seeds"].items()}
        source = f"data/results/recipe.json ({stored['command']}, torch {stored['torch']}, {stored['machine']})"
    print(f"{studies.NEW_TASK_SHOTS} images per class; {source}")
    print(table(per_seed, tasks, methods))


if __name__ == "__main__":
    main()
