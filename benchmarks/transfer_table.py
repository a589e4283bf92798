"""Does the shipped backbone help? Scratch vs linear probe vs full fine-tune on the target task.

    python benchmarks/transfer_table.py            # prints the shipped data/results/data_size.json (no training)
    python benchmarks/transfer_table.py --run      # trains the shipped seeds (0-9) at 10 and 50 per class
    python benchmarks/transfer_table.py --quick    # 10 per class, seed 0, 10 steps per method (a smoke test)

Test accuracy on the fixed 1,000-image target test set (cluttered digits 5-9), mean and spread
(min-max) over seeds. The three methods are ftcourse.recipes (200 SGD steps each) as
`studies.data_size_study` runs them: the same numbers lesson 02's data-size table prints, so this
table is the file, not a second training of it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import ftcourse
from ftcourse.lab import shipped, studies

METHODS = {"scratch": "scratch", "linear probe": "probe", "fine-tune": "fine-tune"}  # column -> study key


def table(per_seed: dict[int, dict[str, float]], shots) -> str:
    """One row per training-set size: each method's mean (min-max) over seeds, and fine-tune minus scratch."""
    runs = list(per_seed.values())
    lines = [f"{'per class':>9} | {'scratch':>17} | {'linear probe':>17} | {'fine-tune':>17} | {'FT - scratch':>12}",
             "-" * 85]
    for k in shots:
        acc = {col: [r[f"{k}/class test {key}"] for r in runs] for col, key in METHODS.items()}
        cells = [f"{statistics.fmean(v):.3f} ({min(v):.2f}-{max(v):.2f})" for v in acc.values()]
        gap = statistics.fmean(acc["fine-tune"]) - statistics.fmean(acc["scratch"])
        lines.append(f"{k:>9} | " + " | ".join(f"{c:>17}" for c in cells) + f" | {100 * gap:>+10.1f} pt")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="train instead of reading the shipped file")
    mode.add_argument("--quick", action="store_true", help="10 per class, seed 0, 10 steps per method")
    ap.add_argument("--shots", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(shipped.STUDY_SEEDS["data_size"]))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ["FTCOURSE_THREADS"] = str(args.threads)  # every recipe calls seed_everything, which sets this count
    torch.set_num_threads(args.threads)
    if args.quick:
        shots, t0 = [10], time.perf_counter()
        found = ftcourse.recipes.compare_baselines(ftcourse.target_task(shots=10, seed=0), seed=0, steps=10)
        per_seed = {0: {f"10/class test {key}": found[col] for col, key in METHODS.items()}}
        source = f"trained now: seed 0, 10 steps per method, {args.threads} threads ({time.perf_counter() - t0:.0f} s)"
    elif args.run:
        shots, t0, per_seed = args.shots, time.perf_counter(), {}
        for seed in args.seeds:
            per_seed[seed] = studies.data_size_study(seed, sizes=tuple(shots))
            print(f"  seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        source = f"trained now: seeds {args.seeds}, 200 steps per method, {args.threads} threads"
    else:
        stored = shipped.read_results("data_size")
        shots, per_seed = args.shots, {int(s): v for s, v in stored["seeds"].items()}
        source = f"data/results/data_size.json ({stored['command']}, torch {stored['torch']}, {stored['machine']})"
    print(f"target: cluttered digits 5-9, 1000 test images; {source}\n")
    print(table(per_seed, shots))


if __name__ == "__main__":
    main()
