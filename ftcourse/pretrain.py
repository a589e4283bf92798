"""`ftcourse pretrain`: reproduce the shipped backbone (data/backbone.pt) from the source task."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from .data import SOURCE_DIGITS, FreshClutter, source_indices, source_stats, source_task
from .files import atomic_write_bytes, data_dir
from .models import BACKBONE_WIDTHS, course_backbone, save_checkpoint
from .optim import make_optimizer
from .runtime import seed_everything
from .train import evaluate, fit

__all__ = ["PRETRAIN_RECIPE", "pretrain"]

PRETRAIN_RECIPE = dict(seed=0, epochs=30, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-4,
                       schedule="onecycle", data="2,000 digits 0-4, new clutter every epoch (FreshClutter)")


def pretrain(out: str | Path | None = None, epochs: int | None = None, progress: bool = True,
             update_manifest: bool = True, overwrite: bool = False) -> dict:
    """Train the course backbone on digits 0-4 with the fixed recipe; save it; return a summary.

    out=None writes the shipped data/backbone.pt (and its data/MANIFEST.json entry): that, or an
    `out` that exists, needs overwrite=True, checked before training. Files are written atomically.
    Deterministic on a given machine and torch version (fixed seed, 2 threads, deterministic
    algorithms); bit-identical files across machines are not promised, the accuracy is.
    """
    path = Path(out) if out else data_dir() / "backbone.pt"
    _check_overwrite(path, shipped=not out, overwrite=overwrite)
    r = dict(PRETRAIN_RECIPE, epochs=epochs or PRETRAIN_RECIPE["epochs"])
    seed_everything(r["seed"])
    task = source_task()  # its fixed test set measures source accuracy
    train = FreshClutter(source_indices()[0], SOURCE_DIGITS, batch_size=r["batch_size"], seed=r["seed"])
    model = course_backbone(num_classes=task.num_classes)
    opt = make_optimizer(model, lr=r["lr"], momentum=r["momentum"], weight_decay=r["weight_decay"])
    t0 = time.perf_counter()
    fit(model, train, epochs=r["epochs"], optimizer=opt, device="cpu", progress=progress)
    seconds = time.perf_counter() - t0
    acc = evaluate(model, (task.x_test, task.y_test), device="cpu")
    digest = save_checkpoint(model.state_dict(), path)
    summary = {"file": path.name, "sha256": digest, "source_test_accuracy": round(acc, 4),
               "train_seconds": round(seconds, 1), "torch": torch.__version__, "machine": platform.machine()}
    if update_manifest and out is None:
        _update_manifest(path, summary, r, task.num_classes)
    return summary


def _check_overwrite(path: Path, shipped: bool, overwrite: bool) -> None:
    """Refuse (FileExistsError) to replace the shipped backbone or an existing file unless overwrite=True."""
    if overwrite or not (shipped or path.exists()):
        return
    what = (f"the shipped backbone {path} and its entry in data/MANIFEST.json" if shipped
            else f"{path}, which already exists")
    raise FileExistsError(f"pretrain would overwrite {what}; pass overwrite=True (`ftcourse pretrain --force`) "
                          "to replace it, or out=... (`--out OTHER.pt`) to write another path")


def _update_manifest(path: Path, summary: dict, recipe: dict, num_classes: int) -> None:
    """Record the new backbone (sha256, size, recipe, accuracy) in data/MANIFEST.json, written atomically."""
    mpath = data_dir() / "MANIFEST.json"
    manifest = json.loads(mpath.read_text())
    mean, std = source_stats()
    manifest["files"][path.name] = {
        "sha256": summary["sha256"], "size": path.stat().st_size,
        "made_by": "ftcourse pretrain (ftcourse/pretrain.py)",
        "source": "trained here on the source task (cluttered MNIST digits 0-4 from mnist5k.npy.gz)",
        "licence": "MIT (weights made by this project; training data CC BY-SA 3.0)",
    }
    manifest["backbone"] = {
        "file": path.name, "arch": "torchvision.models.ResNet(BasicBlock) via ftcourse.course_backbone",
        "widths": list(BACKBONE_WIDTHS), "blocks": [1, 1, 1, 1], "num_classes": num_classes,
        "input": "3x32x32, normalised with the source statistics below",
        "input_mean": list(mean), "input_std": list(std), "recipe": recipe,
        "source_test_accuracy": summary["source_test_accuracy"], "train_seconds": summary["train_seconds"],
        "trained_with": f"torch {summary['torch']} on {summary['machine']}, 2 threads",
    }
    atomic_write_bytes(mpath, (json.dumps(manifest, indent=2) + "\n").encode())
