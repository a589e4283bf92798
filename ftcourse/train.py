"""Training loops a learner can read: fit, evaluate, cached features, a small augmentation."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .data import make_loader
from .models import split_head
from .runtime import get_device

__all__ = ["History", "fit", "evaluate", "predict", "precompute_features", "make_optimizer"]


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


def make_optimizer(model_or_groups, lr=0.01, momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.SGD:
    """SGD with momentum over trainable parameters; lr a float, or param-group dicts already built."""
    if isinstance(model_or_groups, nn.Module):
        params = [p for p in model_or_groups.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters (everything is frozen)")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.SGD(model_or_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def fit(model: nn.Module, train: DataLoader, epochs: int = 5, optimizer: torch.optim.Optimizer | None = None,
        lr: float = 0.01, weight_decay: float = 0.0, schedule: str | None = "onecycle", val=None,
        loss_fn: Callable = F.cross_entropy, augment: Callable | None = None, device=None,
        progress: bool = True, on_step: Callable | None = None) -> History:
    """Train for `epochs` epochs; returns a History (loss, accuracies, seconds per epoch).

    optimizer: any torch optimizer (e.g. built from ftcourse.param_groups); default SGD(momentum=0.9)
    over the trainable parameters. schedule="onecycle" uses each group's lr as its peak.
    on_step(step) is called after every optimizer step (e.g. a GradientRecorder's record).
    """
    from tqdm.auto import tqdm

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    device = get_device(device)
    model.to(device)
    opt = optimizer or make_optimizer(model, lr=lr, weight_decay=weight_decay)
    sched = None
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=epochs * len(train))
    elif schedule is not None:
        raise ValueError(f"schedule must be 'onecycle' or None, got {schedule!r}")
    hist, step = History(), 0
    bar = tqdm(range(epochs), desc="epochs", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        t0, total, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
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
            if on_step is not None:
                on_step(step)
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            total += len(y)
        hist.seconds.append(time.perf_counter() - t0)
        hist.loss.append(loss_sum / total)
        hist.train_acc.append(correct / total)
        if val is not None:
            hist.val_acc.append(evaluate(model, val, device=device))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}", **({"val_acc": f"{hist.val_acc[-1]:.3f}"} if val is not None else {}))
    return hist


@torch.no_grad()
def predict(model: nn.Module, data, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over a loader or an (x, y) pair, in eval mode; the model's mode is restored."""
    device = get_device(device)
    was_training = model.training
    model.to(device).eval()
    outs, ys = [], []
    for x, y in _as_loader(data):
        outs.append(model(x.to(device)).float().cpu())
        ys.append(y)
    model.train(was_training)
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
