"""Does the shipped backbone help? Scratch vs linear probe vs full fine-tune on the target task.

    python benchmarks/transfer_table.py            # 10 and 50 images per class, seeds 0 1 2 (~3 min, 2 cores)
    python benchmarks/transfer_table.py --quick    # 10 per class, one seed, few steps (a smoke test)

Test accuracy on the fixed 1,000-image target test set (cluttered digits 5-9), mean and spread
(min-max) over seeds; the recipes are ftcourse.recipes (same steps for every method).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import ftcourse as fc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shots", type=int, nargs="+", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    args = ap.parse_args(argv)
    shots = args.shots or ([10] if args.quick else [10, 50])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    steps = 10 if args.quick else fc.RECIPE_DEFAULTS["steps"]
    torch.set_num_threads(2)
    src = fc.source_task()
    print(f"source: {src.name}; pretrained backbone source test accuracy "
          f"{fc.evaluate(fc.load_pretrained(), (src.x_test, src.y_test)):.3f}")
    print(f"target: cluttered digits 5-9, 1000 test images; {steps} SGD steps per method; seeds {seeds}\n")
    print(f"{'per class':>9} | {'scratch':>17} | {'linear probe':>17} | {'fine-tune':>17} | {'FT - scratch':>12}")
    print("-" * 85)
    for k in shots:
        results = {"scratch": [], "linear probe": [], "fine-tune": []}
        t0 = time.perf_counter()
        for seed in seeds:
            for name, acc in fc.compare_baselines(fc.target_task(shots=k, seed=seed), seed=seed, steps=steps).items():
                results[name].append(acc)
        cells = [f"{statistics.mean(v):.3f} ({min(v):.2f}-{max(v):.2f})" for v in results.values()]
        gap = statistics.mean(results["fine-tune"]) - statistics.mean(results["scratch"])
        print(f"{k:>9} | " + " | ".join(f"{c:>17}" for c in cells) + f" | {100 * gap:>+10.1f} pt"
              f"   [{time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
