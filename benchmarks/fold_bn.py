"""Folding BatchNorm into the convolutions for inference: how much faster, and how close the outputs.

In eval mode a BN layer is a fixed per-channel scale and shift, so it can be folded into the conv
before it (`ftcourse.fold_bn`: w' = w * scale, b' = (b - mean) * scale + beta). This prints, per
model, the median time of an inference forward pass (eval mode, no_grad) of the model as it is and
of its folded copy, timed in turns after a warm-up, their ratio, and the largest absolute
difference between the two outputs (with the largest output, for scale).

Models: the pretrained course backbone (32 px) and torchvision resnet18 / resnet50 (64 px, random
weights). Random-init BN layers have running mean 0 and variance 1, which would make folding
nearly trivial, so those models first run a few train-mode batches (no_grad) to give every BN layer
real running statistics.

    python benchmarks/fold_bn.py [--quick] [--device cpu|cuda] [--models course,resnet18,resnet50]
"""
from __future__ import annotations

import argparse

import torch

import ftcourse
from tables import bench_device, pick_models, print_table  # benchmarks/tables.py (scripts run from this folder)

SIZES = {"course": (32, 256), "resnet18": (64, 64), "resnet50": (64, 32)}  # image size, batch


@torch.no_grad()
def build(name: str, size: int, device: torch.device) -> torch.nn.Module:
    """The pretrained course backbone, or a torchvision ResNet whose BN layers have seen some data; eval mode."""
    if name == "course":
        return ftcourse.load_pretrained().to(device).eval()
    model = ftcourse.torchvision_backbone(name, num_classes=5).to(device)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # running statistics = the average over the calibration batches
    model.train()
    for _ in range(3):
        model(2 * torch.rand(16, 3, size, size, device=device) - 0.5)
    return model.eval()


def bench(name: str, device: torch.device, batch: int, size: int, reps: int, warmup: int) -> dict:
    """One row: unfolded and folded forward times, their ratio, output difference."""
    torch.manual_seed(0)
    model = build(name, size, device)
    folded, report = ftcourse.fold_bn(model, return_report=True)
    x = torch.randn(batch, 3, size, size, device=device)
    plain, fold = ftcourse.forward_ms([model, folded], x, reps=reps, warmup=warmup)  # in turns: the same machine load
    with torch.no_grad():
        out, out_folded = model(x), folded(x)
    bns = len(report["folded"]) + len(report["frozen_affine"])
    return {"model": name, "input": f"{batch}x3x{size}x{size}", "BN folded": f"{len(report['folded'])}/{bns}",
            "eval ms": plain, "folded ms": fold, "folded/eval": fold / plain,
            "max |diff|": float((out - out_folded).abs().max()), "max |out|": float(out.abs().max())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 8, 2 repetitions, course + resnet18 only")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default=None, help="comma-separated: course,resnet18,resnet50")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 15, quick 2)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    device = bench_device(args.device, args.threads)
    reps, warmup = args.reps or (2 if args.quick else 15), 1 if args.quick else 3
    print(f"fold BN: device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"reps={reps} warmup={warmup}")
    rows = []
    for name, size, batch in pick_models(args.models, args.quick, SIZES):
        rows.append(bench(name, device, 8 if args.quick else batch, size, reps, warmup))
    print()
    print_table(rows, {"eval ms": "{:.1f}", "folded ms": "{:.1f}", "folded/eval": "{:.2f}x",
                       "max |diff|": "{:.1e}", "max |out|": "{:.2f}"})
    print()
    for r in rows:
        print(f"  {r['model']}: folded inference takes {r['folded/eval']:.2f}x the time of eval mode "
              f"({1 / r['folded/eval']:.2f}x faster); outputs differ by at most {r['max |diff|']:.1e}")


if __name__ == "__main__":
    main()
