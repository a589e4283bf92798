"""What does freezing save? Time (and CUDA memory) of one training step as the freeze point moves up.

For each model and freeze point (nothing frozen, freeze_to(1), freeze_to(2), ... head only, and
fastai's freeze with BN affine parameters left trainable, train_bn=True) this prints the median
time of a full training step (forward + backward + SGD step, model in train mode) as a ratio to a
forward-only pass of the same batch (eval mode, torch.no_grad), the size of the backward graph
autograd recorded, and the peak CUDA memory of the step. Freeze points are ftcourse's layer groups
with one group per unit (stem, each stage, head), so freeze_to(k) freezes the first k units.

    python benchmarks/freeze_cost.py [--quick] [--device cpu|cuda] [--models course,resnet18,resnet50]

Target (COURSE_PLAN section 7): a head-only step costs <= 1.15x a forward pass.
"""
from __future__ import annotations

import argparse

import torch

import ftcourse
from tables import bench_device, pick_models  # benchmarks/tables.py (scripts run from this folder)

TARGET = 1.15
SIZES = {"course": (32, 64), "resnet18": (64, 32), "resnet50": (64, 32)}  # image size, batch


def build(name: str) -> torch.nn.Module:
    """The course backbone or a torchvision ResNet (random weights, 5 classes: speed does not depend on the weights)."""
    if name == "course":
        return ftcourse.course_backbone(num_classes=5)
    return ftcourse.torchvision_backbone(name, weights=None, num_classes=5)


def freeze_points(model) -> list[tuple[str, int, bool]]:
    """(label, freeze_to index, train_bn) for every freeze point, one group per unit of the model."""
    groups = ftcourse.unit_groups(model)
    names = ftcourse.unit_names(model)
    k = len(groups)
    points = [("nothing frozen", 0, False)]
    points += [(f"freeze_to({i}): train {names[i]}..", i, False) for i in range(1, k - 1)]
    points += [(f"freeze_to({k - 1}): head only", k - 1, False),
               (f"fastai freeze_to({k - 1}, train_bn=True)", k - 1, True)]
    return points


def bench_model(name, device, batch, size, warmup, reps, amp) -> list[dict]:
    """One row per freeze point for one model."""
    torch.manual_seed(0)
    model = build(name).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 5, (batch,), device=device)
    groups = ftcourse.unit_groups(model)
    rows = []
    for label, n, train_bn in freeze_points(model):
        ftcourse.freeze_to(model, n, groups=groups, train_bn=train_bn)
        c = ftcourse.step_cost(model, x, y, reps=reps, warmup=warmup, amp=amp)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows.append({"model": name, "freeze point": label, "trainable": trainable, "step ms": c["step_ms"],
                     "fwd ms": c["forward_ms"], "step/fwd": c["step_ms"] / c["forward_ms"],
                     "graph nodes": c["nodes"], "peak MiB": c["peak_mib"]})
    return rows


FORMATS = {"trainable": "{:,}", "step ms": "{:.1f}", "fwd ms": "{:.1f}", "step/fwd": "{:.2f}x",
           "graph nodes": "{:d}", "peak MiB": "{:.0f}"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 8, 2 repetitions, course + resnet18 only")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default=None, help="comma-separated: course,resnet18,resnet50")
    ap.add_argument("--size", type=int, default=None, help="image size for every model (default: per model)")
    ap.add_argument("--batch", type=int, default=None, help="batch size for every model (default: per model)")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 7, quick 2)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the course's laptop: 2)")
    args = ap.parse_args(argv)
    device = bench_device(args.device, args.threads)
    reps = args.reps or (2 if args.quick else 7)
    warmup = 1 if args.quick else 2
    print(f"freeze cost: device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"reps={reps} warmup={warmup}{' amp=bf16' if args.amp else ''}")
    rows, models = [], pick_models(args.models, args.quick, SIZES)
    for name, size, batch in models:
        size, batch = args.size or size, args.batch or (8 if args.quick else batch)
        print(f"  {name}: {batch}x3x{size}x{size}", flush=True)
        rows += bench_model(name, device, batch, size, warmup, reps, args.amp)
    print()
    print(ftcourse.Table(rows, formats=FORMATS))
    print()
    print(f"target: head-only <= {TARGET}x forward")
    for name, _, _ in models:
        head = next(r for r in rows if r["model"] == name and r["freeze point"].endswith("head only"))
        full = next(r for r in rows if r["model"] == name and r["freeze point"] == "nothing frozen")
        fastai = next(r for r in rows if r["model"] == name and "train_bn=True" in r["freeze point"])
        verdict = "meets" if head["step/fwd"] <= TARGET else "MISSES"
        memory = "" if head["peak MiB"] is None else (
            f"; peak memory head-only {head['peak MiB'] / full['peak MiB']:.2f}x full, "
            f"fastai {fastai['peak MiB'] / full['peak MiB']:.2f}x full")
        print(f"  {name}: head-only {head['step/fwd']:.2f}x forward ({verdict} the target); full step "
              f"{full['step/fwd']:.2f}x; fastai train_bn=True {fastai['step/fwd'] / head['step/fwd']:.2f}x head-only"
              + memory)


if __name__ == "__main__":
    main()
