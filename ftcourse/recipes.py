"""The three baselines every transfer experiment compares: from scratch, linear probe, full fine-tune.

Each runs on `device` (default: ftcourse.get_device(), i.e. $FTCOURSE_DEVICE or the CPU)."""
from __future__ import annotations

import math

from torch import nn

from .data import Task, make_loader
from .models import course_backbone, load_pretrained, replace_head
from .runtime import seed_everything
from .train import evaluate, fit, make_optimizer, precompute_features

__all__ = ["RECIPE_DEFAULTS", "train_from_scratch", "linear_probe", "fine_tune", "compare_baselines"]

RECIPE_DEFAULTS = dict(steps=200, batch_size=32, weight_decay=5e-4,
                       lr_scratch=0.05, lr_probe=0.05, lr_finetune=0.01)


def _epochs_for(n_train: int, batch_size: int, steps: int) -> int:
    return max(1, math.ceil(steps / math.ceil(n_train / batch_size)))


def train_from_scratch(task: Task, seed: int = 0, steps: int = 200, lr: float = 0.05, batch_size: int = 32,
                       progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """A randomly initialised course backbone trained on the task; returns (model, test accuracy)."""
    seed_everything(seed)
    model = course_backbone(num_classes=task.num_classes)
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    fit(model, train, epochs=_epochs_for(len(task.y_train), batch_size, steps), device=device,
        optimizer=make_optimizer(model, lr=lr, weight_decay=RECIPE_DEFAULTS["weight_decay"]), progress=progress)
    return model, evaluate(model, test, device=device)


def linear_probe(task: Task, seed: int = 0, steps: int = 200, lr: float = 0.05, batch_size: int = 32,
                 model: nn.Module | None = None, progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """Pretrained body frozen, new head trained on cached features; returns (model with head, accuracy)."""
    seed_everything(seed)
    model = model if model is not None else load_pretrained()
    head = replace_head(model, task.num_classes)
    feats, labels = precompute_features(model, (task.x_train, task.y_train), device=device)
    loader = make_loader(feats, labels, batch_size=batch_size, shuffle=True, seed=seed)
    fit(head, loader, epochs=_epochs_for(len(labels), batch_size, steps), device=device,
        optimizer=make_optimizer(head, lr=lr, weight_decay=RECIPE_DEFAULTS["weight_decay"]), progress=progress)
    return model, evaluate(model, (task.x_test, task.y_test), device=device)


def fine_tune(task: Task, seed: int = 0, steps: int = 200, lr: float = 0.01, batch_size: int = 32,
              model: nn.Module | None = None, optimizer=None, progress: bool = False,
              device=None) -> tuple[nn.Module, float]:
    """Every layer trained from the pretrained weights with one rate (or a given optimizer)."""
    seed_everything(seed)
    if model is None:
        model = load_pretrained()
        replace_head(model, task.num_classes)
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    opt = optimizer or make_optimizer(model, lr=lr, weight_decay=RECIPE_DEFAULTS["weight_decay"])
    fit(model, train, epochs=_epochs_for(len(task.y_train), batch_size, steps), optimizer=opt, device=device,
        progress=progress)
    return model, evaluate(model, test, device=device)


def compare_baselines(task: Task, seed: int = 0, steps: int = 200, device=None) -> dict[str, float]:
    """Test accuracy of scratch, linear probe and fine-tune on one task and seed."""
    return {
        "scratch": train_from_scratch(task, seed, steps, device=device)[1],
        "linear probe": linear_probe(task, seed, steps, device=device)[1],
        "fine-tune": fine_tune(task, seed, steps, device=device)[1],
    }
