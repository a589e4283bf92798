"""fastai's "frozen" (BN affine parameters still trainable) vs a true freeze: what it costs, what it buys.

fastai's `Learner.freeze()` keeps every BatchNorm layer trainable (`train_bn=True`): the BN weights
and biases get gradients and the running statistics keep updating, so backprop still runs through
the whole body. A true freeze (`ftcourse.freeze_to(model, -1)`) trains the head only. Two sides:

1. Cost: `ftcourse.step_cost` of one training step under each freeze, as a ratio to a forward pass
   of the same batch (timed in turns), and the fastai / true ratio, for the course backbone (32 px)
   and torchvision resnet18 / resnet50 (64 px, random weights: speed does not depend on them).
2. Accuracy: the pretrained course backbone (`ftcourse.load_pretrained`) fine-tuned on
   `ftcourse.target_task(shots, seed)` under each freeze with the same head initialisation, steps,
   batches and learning rate (`ftcourse.fine_tune(task, seed, model=prepared)`), test accuracy as
   mean (min-max) over seeds, and the difference fastai - true.

    python benchmarks/fastai_freeze.py [--quick] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

import ftcourse
from tables import bench_device, print_table  # benchmarks/tables.py (scripts run from this folder)

SIZES = {"course": (32, 64), "resnet18": (64, 32), "resnet50": (64, 32)}  # image size, batch
FREEZES = {"true freeze": False, "fastai train_bn=True": True}  # label -> train_bn


def build(name: str) -> torch.nn.Module:
    """The pretrained course backbone, or a torchvision ResNet with random weights; 5 classes."""
    if name == "course":
        return ftcourse.load_pretrained(num_classes=5)
    return ftcourse.torchvision_backbone(name, num_classes=5)


def cost_rows(name: str, device: torch.device, batch: int, size: int, reps: int, warmup: int) -> list[dict]:
    """One row per freeze: step and forward times, their ratio, graph nodes, trainable parameters."""
    torch.manual_seed(0)
    model = build(name).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 5, (batch,), device=device)
    rows = []
    for label, train_bn in FREEZES.items():
        ftcourse.freeze_to(model, -1, train_bn=train_bn)
        c = ftcourse.step_cost(model, x, y, reps=reps, warmup=warmup)
        rows.append({"model": name, "freeze": label,
                     "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                     "step ms": c["step_ms"], "fwd ms": c["forward_ms"], "step/fwd": c["step_ms"] / c["forward_ms"],
                     "graph nodes": c["nodes"], "peak MiB": c["peak_mib"]})
    return rows


def make_task(shots: int, seed: int, quick: bool) -> ftcourse.Task:
    """The target task; in quick mode only the first 100 test images (a smoke test, not a result)."""
    task = ftcourse.target_task(shots=shots, seed=seed)
    return dataclasses.replace(task, x_test=task.x_test[:100], y_test=task.y_test[:100]) if quick else task


def accuracy(task: ftcourse.Task, seed: int, train_bn: bool, steps: int, lr: float, device) -> float:
    """Test accuracy after training the pretrained backbone's new head (and BN, if train_bn) on the task."""
    model = ftcourse.load_pretrained()
    ftcourse.replace_head(model, task.num_classes, seed=seed)  # the same head for both freezes
    ftcourse.freeze_to(model, -1, train_bn=train_bn)
    return ftcourse.fine_tune(task, seed, steps=steps, lr=lr, model=model, device=device)[1]


def spread(v: list[float]) -> str:
    return f"{statistics.mean(v):.3f} ({min(v):.2f}-{max(v):.2f})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 8, 2 repetitions, course + resnet18; 10 shots, 1 seed, 5 steps, 100 test images")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default=None, help="comma-separated: course,resnet18,resnet50")
    ap.add_argument("--shots", type=int, nargs="+", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=None, help="SGD steps per run (default ftcourse.DEFAULTS.steps, quick 5)")
    ap.add_argument("--lr", type=float, default=ftcourse.DEFAULTS.lr_probe)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    device = bench_device(args.device, args.threads)
    names = (args.models or ("course,resnet18" if args.quick else "course,resnet18,resnet50")).split(",")
    reps, warmup = (2, 1) if args.quick else (7, 2)
    shots = args.shots or ([10] if args.quick else [10, 50])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    steps = args.steps or (5 if args.quick else ftcourse.DEFAULTS.steps)
    print(f"fastai freeze: device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"reps={reps} warmup={warmup}")

    print("\n1. cost of one training step (step_cost: step / forward of the same batch, timed in turns)\n")
    rows = []
    for name in names:
        if name not in SIZES:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(SIZES)}")
        size, batch = SIZES[name]
        rows += cost_rows(name, device, 8 if args.quick else batch, size, reps, warmup)
    print_table(rows, {"trainable": "{:,}", "step ms": "{:.1f}", "fwd ms": "{:.1f}", "step/fwd": "{:.2f}x",
                       "graph nodes": "{:d}", "peak MiB": "{:.0f}"})
    print()
    for name in names:
        true, fastai = (r for r in rows if r["model"] == name)
        print(f"  {name}: fastai train_bn=True step costs {fastai['step/fwd'] / true['step/fwd']:.2f}x a true-freeze step")

    print(f"\n2. accuracy on the target task (pretrained course backbone, {steps} SGD steps, lr {args.lr}, "
          f"batch 32; seeds {seeds}; {100 if args.quick else 1000} test images)\n")
    acc_rows = []
    for k in shots:
        t0 = time.perf_counter()
        acc = {label: [accuracy(make_task(k, s, args.quick), s, bn, steps, args.lr, device) for s in seeds]
               for label, bn in FREEZES.items()}
        gap = [f - t for t, f in zip(*acc.values())]
        acc_rows.append({"per class": k, "true freeze": spread(acc["true freeze"]),
                         "fastai train_bn=True": spread(acc["fastai train_bn=True"]),
                         "fastai - true": f"{100 * statistics.mean(gap):+.1f} pt ({100 * min(gap):+.1f}..{100 * max(gap):+.1f})",
                         "seconds": time.perf_counter() - t0})
    print_table(acc_rows, {"seconds": "{:.0f}"})


if __name__ == "__main__":
    main()
