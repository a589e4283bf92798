"""The three baselines every transfer experiment compares: from scratch, linear probe, full fine-tune.

Each runs on `device` (default: ftcourse.get_device(), i.e. $FTCOURSE_DEVICE or the CPU)."""
from __future__ import annotations

import math
import numbers
import statistics

from torch import nn

from .data import Task, make_loader, shifted_test_set
from .groups import freeze_to, layer_groups
from .models import course_backbone, load_pretrained, replace_head
from .optim import param_groups
from .runtime import seed_everything
from .train import evaluate, fit, make_optimizer, precompute_features

__all__ = ["RECIPE_DEFAULTS", "OOD_SHIFTS", "train_from_scratch", "linear_probe", "fine_tune", "lp_ft",
           "gradual_unfreeze", "shifted_accuracy", "compare_baselines"]

OOD_SHIFTS = ("contrast", "colour", "blur")  # the shifted test sets of lesson 02, at severity 0.5

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


def fine_tune(task: Task, seed: int = 0, steps: int = 200, lr=0.01, batch_size: int = 32,
              model: nn.Module | None = None, optimizer=None, progress: bool = False,
              device=None) -> tuple[nn.Module, float]:
    """Every layer trained from the pretrained weights; returns (model, test accuracy).

    lr: one rate for all, or one per layer group (a list / np.array, input to output) or fastai's
    slice(lo, hi): discriminative rates through `param_groups`. Or pass your own optimizer.
    """
    seed_everything(seed)
    if model is None:
        model = load_pretrained()
        replace_head(model, task.num_classes)
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    wd = RECIPE_DEFAULTS["weight_decay"]
    if optimizer is not None:
        opt = optimizer
    elif isinstance(lr, numbers.Real):
        opt = make_optimizer(model, lr=lr, weight_decay=wd)
    else:
        opt = make_optimizer(param_groups(model, lr, weight_decay=wd))
    fit(model, train, epochs=_epochs_for(len(task.y_train), batch_size, steps), optimizer=opt, device=device,
        progress=progress)
    return model, evaluate(model, test, device=device)


def lp_ft(task: Task, seed: int = 0, steps: int = 200, lr=0.01, lr_probe: float = 0.05, batch_size: int = 32,
          progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """Linear probe, then fine-tune everything from the warmed-up head (LP-FT, Kumar et al. 2022).

    Also the "two-stage" recipe: freeze the body and train the head, then unfreeze and train all
    layers at `lr` (one rate, or per group as in fine_tune). `steps` for each stage.
    """
    model, _ = linear_probe(task, seed, steps, lr_probe, batch_size, device=device)
    return fine_tune(task, seed, steps, lr, batch_size, model=model, progress=progress, device=device)


def gradual_unfreeze(task: Task, seed: int = 0, steps: int = 200, lr=0.01, n_groups: int = 3, batch_size: int = 32,
                     progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """ULMFiT's gradual unfreezing: head first, then one more layer group per stage; `steps` in all.

    lr: one rate or one per group (list / slice); each stage trains the unfrozen groups with their
    rates (a fresh one-cycle schedule per stage). Returns (model, test accuracy).
    """
    seed_everything(seed)
    model = load_pretrained()
    replace_head(model, task.num_classes)
    groups = layer_groups(model, n_groups)
    rates = [g["lr"] for g in param_groups(groups, lr)]  # one per group, validated
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    epochs = _epochs_for(len(task.y_train), batch_size, max(1, steps // n_groups))
    for first in range(n_groups - 1, -1, -1):
        freeze_to(model, first, groups=groups)
        opt = make_optimizer(param_groups(groups[first:], rates[first:], weight_decay=RECIPE_DEFAULTS["weight_decay"]))
        fit(model, train, epochs=epochs, optimizer=opt, progress=progress, device=device)
    return model, evaluate(model, test, device=device)


def shifted_accuracy(model: nn.Module, task: Task, shifts=OOD_SHIFTS, severity: float = 0.5,
                     device=None) -> dict[str, float]:
    """Test accuracy on the target's test set under each shift (out of distribution), and their mean."""
    accs = {s: evaluate(model, shifted_test_set(task, s, severity), device=device) for s in shifts}
    accs["mean"] = statistics.fmean(accs.values())
    return accs


def compare_baselines(task: Task, seed: int = 0, steps: int = 200, device=None) -> dict[str, float]:
    """Test accuracy of scratch, linear probe and fine-tune on one task and seed."""
    return {
        "scratch": train_from_scratch(task, seed, steps, device=device)[1],
        "linear probe": linear_probe(task, seed, steps, device=device)[1],
        "fine-tune": fine_tune(task, seed, steps, device=device)[1],
    }
