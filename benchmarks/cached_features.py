"""Cached features vs recomputing the frozen body: time per epoch of head training, and the same head.

With the body frozen (and its BN layers pinned in eval mode) the body's output for an image never
changes, so a linear probe can run the body once (`ftcourse.precompute_features`) and train the
head on the stored features for every epoch after. This prints, per model:

- the median seconds of one epoch of head training on cached features and of one epoch of training
  `freeze_to(model, -1)` on images (the body recomputed every epoch), measured in turns (epoch 0 of
  each is a warm-up and not timed), and their ratio (target >= 20x);
- the one-off cost of caching the features, and after how many epochs it has paid for itself;
- the largest absolute difference between the two heads' weights after the same epochs: both start
  from the same head, see the batches in the same order (same loader seed) and take the same SGD
  steps, so they should be equal up to float rounding.

Models: the pretrained course backbone on the target task (250 images per class, 32 px), and a
torchvision resnet18 (random weights) on random 64 px images.

    python benchmarks/cached_features.py [--quick] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import ftcourse
from tables import bench_device, print_table  # benchmarks/tables.py (scripts run from this folder)

TARGET = 20.0


def course_data(quick: bool) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The pretrained course backbone and the target task's training images (250 per class; quick: 10)."""
    task = ftcourse.target_task(shots=10 if quick else None, seed=0)
    return ftcourse.load_pretrained(), task.x_train, task.y_train


def resnet18_data(quick: bool) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A torchvision resnet18 (random weights) and random 64 px images with 5 random labels (quick: 32 at 32 px)."""
    n, size = (32, 32) if quick else (512, 64)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, size, size, generator=g), torch.randint(0, 5, (n,), generator=g)
    return ftcourse.torchvision_backbone("resnet18"), x, y


DATA = {"course": course_data, "resnet18": resnet18_data}


def bench(name: str, device: torch.device, epochs: int, batch: int, lr: float, quick: bool) -> dict:
    """Train the same head both ways, one epoch of each in turn; return the row of the table."""
    model, x, y = DATA[name](quick)
    ftcourse.replace_head(model, 5, seed=0)
    twin = copy.deepcopy(model)  # the frozen-body route
    ftcourse.freeze_to(twin, -1)
    t0 = time.perf_counter()
    feats, labels = ftcourse.precompute_features(model, (x, y), device=device)
    cache_s = time.perf_counter() - t0
    head = model.fc.to(device)
    images = ftcourse.make_loader(x, y, batch, shuffle=True, seed=3)  # same seed: the same order of batches
    cached = ftcourse.make_loader(feats, labels, batch, shuffle=True, seed=3)
    opt_body = ftcourse.make_optimizer(twin, lr=lr)
    opt_head = ftcourse.make_optimizer(head, lr=lr)
    body_s, head_s = [], []
    quiet = {"schedule": None, "device": device, "progress": False}
    for _ in range(epochs):  # one epoch each in turn: both see the same machine load
        body_s += ftcourse.fit(twin, images, 1, optimizer=opt_body, **quiet).seconds
        head_s += ftcourse.fit(head, cached, 1, optimizer=opt_head, **quiet).seconds
    body, cached_epoch = statistics.median(body_s[1:]), statistics.median(head_s[1:])
    diff = max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(head.parameters(), twin.fc.parameters()))
    return {"model": name, "images": f"{len(y)}x{'x'.join(map(str, x.shape[1:]))}", "features": feats.shape[1],
            "recompute s/epoch": body, "cached s/epoch": cached_epoch, "speed-up": body / cached_epoch,
            "caching s": cache_s, "pays off after": cache_s / max(body - cached_epoch, 1e-9),
            "max |head diff|": diff}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 course images, 32 resnet18 images at 32 px, 1 timed epoch")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default="course,resnet18", help="comma-separated: course,resnet18")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of each, the first one untimed (default 6, quick 2)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    device = bench_device(args.device, args.threads)
    epochs = args.epochs or (2 if args.quick else 6)
    if epochs < 2:
        raise SystemExit("--epochs must be >= 2 (the first epoch is a warm-up)")
    print(f"cached features: device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"epochs={epochs} (first untimed) batch={args.batch} lr={args.lr}")
    rows = []
    for name in args.models.split(","):
        if name not in DATA:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(DATA)}")
        rows.append(bench(name, device, epochs, args.batch, args.lr, args.quick))
    print()
    print_table(rows, {"recompute s/epoch": "{:.3f}", "cached s/epoch": "{:.4f}", "speed-up": "{:.0f}x",
                       "caching s": "{:.2f}", "pays off after": "{:.1f} epochs", "max |head diff|": "{:.1e}"})
    print()
    print(f"target: cached-feature epochs >= {TARGET:.0f}x faster than recomputing the body")
    for r in rows:
        verdict = "meets" if r["speed-up"] >= TARGET else "MISSES"
        print(f"  {r['model']}: {r['speed-up']:.0f}x ({verdict} the target); heads equal to {r['max |head diff|']:.1e}")


if __name__ == "__main__":
    main()
