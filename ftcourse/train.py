"""The training loop a learner can read (fit, for a number of epochs or of steps), evaluate, predict,
cached features."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .data import make_loader
from .inputs import require_int
from .models import split_head
from .optim import make_optimizer
from .runtime import get_device

__all__ = ["History", "fit", "evaluate", "predict", "precompute_features"]


@dataclass
class History:
    """Per-epoch training record returned by fit."""

    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def __repr__(self) -> str:
        last = f", last val_acc={self.val_acc[-1]:.3f}" if self.val_acc else ""
        return f"History(epochs={len(self.loss)}, last loss={self.loss[-1]:.3f}{last})" if self.loss else "History()"


def _as_loader(data, batch_size: int = 512) -> DataLoader:
    """Accept a DataLoader or an (x, y) pair of tensors."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return make_loader(data[0], data[1], batch_size=batch_size)
    raise TypeError(f"expected a DataLoader or an (x, y) pair of tensors, got {type(data).__name__}")


def _total_steps(train, epochs: int | None, steps: int | None) -> tuple[int, int]:
    """(epochs, optimizer steps) for a run given in epochs (default 5) or in steps; clear errors otherwise."""
    if epochs is not None and steps is not None:
        raise ValueError(f"give epochs or steps, not both (got epochs={epochs}, steps={steps})")
    if isinstance(train, (tuple, list)) and len(train) == 2 and all(isinstance(t, torch.Tensor) for t in train):
        raise TypeError("fit takes a DataLoader, not an (x, y) pair: "
                        "fit(model, ftcourse.make_loader(x, y, batch_size=32, shuffle=True), ...)")
    if not hasattr(train, "__len__") or not hasattr(train, "__iter__"):
        raise TypeError(f"fit takes a DataLoader (something with len() that yields (x, y) batches), "
                        f"got {type(train).__name__}: use ftcourse.make_loader(x, y, batch_size, shuffle=True)")
    per_epoch = len(train)
    if per_epoch < 1:
        raise ValueError("the training loader is empty: it yields no batch (no images, or drop_last with too few)")
    if steps is not None:
        steps = require_int("steps", steps, low=1)
        return math.ceil(steps / per_epoch), steps
    epochs = 5 if epochs is None else epochs
    epochs = require_int("epochs", epochs, low=1)
    return epochs, epochs * per_epoch


def fit(model: nn.Module, train: DataLoader, epochs: int | None = None, optimizer: torch.optim.Optimizer | None = None,
        lr: float = 0.01, weight_decay: float = 0.0, schedule: str | None = "onecycle", val=None,
        loss_fn: Callable = F.cross_entropy, augment: Callable | None = None, device=None,
        progress: bool = True, on_step: Callable | None = None, steps: int | None = None) -> History:
    """Train for `epochs` passes over `train` (default 5), or for exactly `steps` optimizer steps; returns a History.

    With `steps` the loader is cycled and the last pass may stop early (History keeps one entry per
    pass). optimizer: any torch optimizer (e.g. built from ftcourse.param_groups); default
    SGD(momentum=0.9) over the trainable parameters. schedule="onecycle" uses each group's lr as its
    peak over the whole run; "cosine" starts at it and decays to 0 (no warm-up); None keeps it constant.
    augment(x) changes each training batch (e.g. ftcourse.RandomShift). on_step(step) is called after
    every optimizer step (a GradientRecorder works).
    """
    from tqdm.auto import tqdm

    if schedule not in ("onecycle", "cosine", None):
        raise ValueError(f"schedule must be 'onecycle', 'cosine' or None (constant), got {schedule!r}")
    epochs, total = _total_steps(train, epochs, steps)
    device = get_device(device)
    model.to(device)
    opt = optimizer or make_optimizer(model, lr=lr, weight_decay=weight_decay)
    sched = None
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total)
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    hist, step = History(), 0
    bar = tqdm(total=total, desc="steps", unit="step", disable=not progress, leave=True)
    for _ in range(epochs):
        model.train()
        t0, count, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
        for x, y in train:
            x, y = x.to(device), y.to(device)
            if augment is not None:
                x = augment(x)
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            bar.update(1)
            if on_step is not None:
                on_step(step)
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            count += len(y)
            if step == total:
                break
        hist.seconds.append(time.perf_counter() - t0)
        hist.loss.append(loss_sum / count)
        hist.train_acc.append(correct / count)
        if val is not None:
            hist.val_acc.append(evaluate(model, val, device=device))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}",
                        **({"val_acc": f"{hist.val_acc[-1]:.3f}"} if val is not None else {}))
    bar.close()
    return hist


@torch.no_grad()
def predict(model: nn.Module, data, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over a loader or an (x, y) pair, in eval mode; the model's mode is restored."""
    device = get_device(device)
    was_training = model.training
    model.to(device).eval()
    outs, ys = [], []
    try:
        for x, y in _as_loader(data):
            outs.append(model(x.to(device)).float().cpu())
            ys.append(y)
    finally:
        model.train(was_training)
    if not outs:
        raise ValueError("the data yielded no batch (no images, or drop_last with too few): "
                         "evaluate on a non-empty loader or (x, y) pair")
    return torch.cat(outs), torch.cat(ys)


def evaluate(model: nn.Module, data, device=None) -> float:
    """Accuracy (0-1) over a loader or an (x, y) pair, in eval mode."""
    logits, y = predict(model, data, device)
    return float((logits.argmax(1) == y).float().mean())


@torch.no_grad()
def precompute_features(model: nn.Module, data, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the body once (eval mode, head removed) and keep its outputs: (features, labels) on the CPU.

    Training a head on these is the same as training it on top of a frozen body in eval mode, without
    paying for the body's forward pass every epoch.
    """
    body, _ = split_head(model)
    return predict(body, data, device)
