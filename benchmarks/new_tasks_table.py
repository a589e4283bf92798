"""How far does the shipped backbone transfer? Scratch vs linear probe vs fine-tune on the near and far tasks.

    python benchmarks/new_tasks_table.py           # 10 and 50 per class, seeds 0 1 2, both tasks (~15 min, 1 core idle)
    python benchmarks/new_tasks_table.py --quick   # 10 per class, seed 0, 20 steps, 100 test images (a smoke test)
    python benchmarks/new_tasks_table.py --save data/results/new_tasks.json   # written after every row
    python benchmarks/new_tasks_table.py --save data/results/new_tasks.json --resume   # skip rows already saved

near: other people's handwritten digits 0-9 (UCI, scaled-up 8x8 scans, cluttered as the course's; 800 test
images); far: patches of five grey textures (480 test patches). Test accuracy, mean and spread (min-max)
over seeds; the recipes are ftcourse.recipes (same steps for every method), as in transfer_table.py.
The last line compares with the course's own target (cluttered MNIST digits 5-9), read from
data/results/data_size.json (`python benchmarks/transfer_table.py` prints it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import ftcourse
from ftcourse.lab import shipped

TASKS = {"near": ftcourse.near_task, "far": ftcourse.far_task}
METHODS = ("scratch", "linear probe", "fine-tune")


def course_target_reference() -> dict[str, dict[str, float]]:
    """{shots: {method: mean test accuracy}} on the course's target, seeds 0-2, from data/results/data_size.json."""
    runs = list(shipped.read_results("data_size")["seeds"].values())
    keys = {"scratch": "scratch", "linear probe": "probe", "fine-tune": "fine-tune"}
    return {k: {m: statistics.fmean(r[f"{k}/class test {key}"] for r in runs) for m, key in keys.items()}
            for k in ("10", "50")}


def _cell(v: list[float]) -> str:
    return f"{statistics.mean(v):.3f} ({min(v):.2f}-{max(v):.2f})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed, 10/class, 20 steps, a 100-image test prefix")
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    ap.add_argument("--shots", type=int, nargs="+", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", type=Path, default=None, help="write every number to this JSON file (after each row)")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --save (same steps and seeds)")
    args = ap.parse_args(argv)
    if args.resume and not args.save:
        ap.error("--resume needs --save FILE (the file whose rows to keep)")
    shots = args.shots or ([10] if args.quick else [10, 50])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    steps = 20 if args.quick else ftcourse.DEFAULTS.steps
    os.environ["FTCOURSE_THREADS"] = str(args.threads)  # every recipe calls seed_everything, which sets this count
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    out = {"command": "python benchmarks/new_tasks_table.py" + (" --quick" if args.quick else ""),
           "steps": steps, "seeds": seeds, "torch": torch.__version__,
           "machine": f"{platform.machine()}, {args.threads} threads", "tasks": {}}
    if args.resume and args.save.exists():
        old = json.loads(args.save.read_text())
        if old.get("steps") == steps and old.get("seeds") == seeds:
            out["tasks"] = old.get("tasks", {})
    for tname in args.tasks:
        t0 = time.perf_counter()
        probe = TASKS[tname](shots=1)
        load_s = time.perf_counter() - t0
        n_test = 100 if args.quick else len(probe.y_test)
        print(f"\n{probe.name.rsplit(',', 1)[0]}; {probe.num_classes} classes (chance "
              f"{1 / probe.num_classes:.2f}), {n_test} test images; {steps} SGD steps per method; seeds {seeds}")
        print(f"{'per class':>9} | {'scratch':>17} | {'linear probe':>17} | {'fine-tune':>17} | "
              f"{'FT - scratch':>12} | {'LP - scratch':>12}")
        print("-" * 101)
        entry = {"name": probe.name.rsplit(",", 1)[0], "classes": list(probe.classes), "test_images": n_test,
                 "load_seconds": round(load_s, 2), "shots": out["tasks"].get(tname, {}).get("shots", {})}
        out["tasks"][tname] = entry
        for k in shots:
            if str(k) in entry["shots"]:  # --resume: measured before
                cell = entry["shots"][str(k)]
                print(f"{k:>9} | " + " | ".join(f"{_cell(list(cell['per_seed'][m].values())):>17}" for m in METHODS) +
                      f" | {100 * cell['ft_minus_scratch']:>+9.1f} pt | {100 * cell['lp_minus_scratch']:>+9.1f} pt"
                      f"   [{cell['wall_seconds']:.0f} s, saved]")
                continue
            results = {m: [] for m in METHODS}
            t1 = time.perf_counter()
            for seed in seeds:
                task = TASKS[tname](shots=k, seed=seed)
                if args.quick:
                    task = dataclasses.replace(task, x_test=task.x_test[:n_test], y_test=task.y_test[:n_test])
                for name, acc in ftcourse.recipes.compare_baselines(task, seed=seed, steps=steps).items():
                    results[name].append(round(float(acc), 4))
            secs = time.perf_counter() - t1
            mean = {m: statistics.mean(v) for m, v in results.items()}
            ft_gap, lp_gap = mean["fine-tune"] - mean["scratch"], mean["linear probe"] - mean["scratch"]
            print(f"{k:>9} | " + " | ".join(f"{_cell(v):>17}" for v in results.values()) +
                  f" | {100 * ft_gap:>+9.1f} pt | {100 * lp_gap:>+9.1f} pt   [{secs:.0f} s]")
            entry["shots"][str(k)] = {"per_seed": {m: dict(zip(map(str, seeds), v)) for m, v in results.items()},
                                      "mean": {m: round(v, 4) for m, v in mean.items()},
                                      "ft_minus_scratch": round(ft_gap, 4), "lp_minus_scratch": round(lp_gap, 4),
                                      "wall_seconds": round(secs, 1)}
            _save(args.save, out)
    out["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    ref = "; ".join(f"{k}/class FT - scratch {100 * (v['fine-tune'] - v['scratch']):+.1f} pt, LP - scratch "
                    f"{100 * (v['linear probe'] - v['scratch']):+.1f} pt" for k, v in course_target_reference().items())
    print(f"\ncourse target (cluttered MNIST 5-9, data/results/data_size.json): {ref}")
    print(f"total {out['wall_seconds']:.0f} s")
    if args.save:
        _save(args.save, out)
        print(f"saved {args.save}")


def _save(path: Path | None, out: dict) -> None:
    """Write the numbers so far (atomically: an interrupted run leaves the previous file)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ftcourse.files.atomic_write_bytes(path, (json.dumps(out, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
