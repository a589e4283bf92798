"""Training recipes: the baselines (scratch, linear probe, fine-tune), LP-FT, gradual unfreezing, short probes.

Every recipe trains for a fixed number of optimizer steps (`fit(steps=...)`), seeds itself, and runs
on `device` (default: ftcourse.get_device(), i.e. $FTCOURSE_DEVICE or the CPU). `run_frozen_steps`
and `run_lr_steps` are the few-step runs behind the explorer widgets; they work without ipywidgets.
"""
from __future__ import annotations

import copy
import numbers
import statistics
import time

import numpy as np
import torch.nn.functional as F
from torch import nn

from .cost import backward_graph_size
from .data import Task, make_loader, shifted_test_set
from .grads import GradientRecorder, snapshot, update_ratios
from .groups import N_GROUPS, freeze_to, layer_groups, short_group_names, unit_groups, unit_names
from .models import course_backbone, load_pretrained, replace_head
from .optim import make_optimizer, param_groups
from .runtime import get_device, seed_everything
from .train import evaluate, fit, precompute_features

__all__ = ["RECIPE_DEFAULTS", "OOD_SHIFTS", "train_from_scratch", "linear_probe", "fine_tune", "lp_ft",
           "gradual_unfreeze", "shifted_accuracy", "compare_baselines", "run_frozen_steps", "run_lr_steps"]

OOD_SHIFTS = ("contrast", "colour", "blur")  # out-of-distribution test sets for LP vs FT, at severity 0.5

RECIPE_DEFAULTS = dict(steps=200, batch_size=32, weight_decay=5e-4,
                       lr_scratch=0.05, lr_probe=0.05, lr_finetune=0.01)


def train_from_scratch(task: Task, seed: int = 0, steps: int = 200, lr: float = 0.05, batch_size: int = 32,
                       progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """A randomly initialised course backbone trained on the task; returns (model, test accuracy)."""
    seed_everything(seed)
    model = course_backbone(num_classes=task.num_classes)
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    fit(model, train, steps=steps, device=device,
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
    fit(head, loader, steps=steps, device=device,
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
    fit(model, train, steps=steps, optimizer=opt, device=device,
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


def gradual_unfreeze(task: Task, seed: int = 0, steps: int = 200, lr=0.01, n_groups: int = N_GROUPS, batch_size: int = 32,
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
    for first in range(n_groups - 1, -1, -1):
        freeze_to(model, first, groups=groups)
        opt = make_optimizer(param_groups(groups[first:], rates[first:], weight_decay=RECIPE_DEFAULTS["weight_decay"]))
        fit(model, train, steps=max(1, steps // n_groups), optimizer=opt, progress=progress, device=device)
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


# ---------------------------------------------------------------- a few steps, measured (the explorers' runs)
def run_frozen_steps(model: nn.Module, task: Task, n: int, steps: int = 5, batch_size: int = 32, lr: float = 0.01,
                     train_bn: bool = False, seed: int = 0, device=None) -> dict:
    """Freeze the units below index `n` (freeze_to on one group per unit), train `steps` SGD steps, record gradients.

    Returns {"recorder", "names", "frozen", "step_ms" (median time between steps), "nodes" (backward
    graph of one step)}. The model is changed in place.
    """
    device = get_device(device)
    model.to(device)
    groups = unit_groups(model)
    freeze_to(model, n, groups=groups, train_bn=train_bn)
    loader = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed)
    xb, yb = next(iter(loader))
    nodes = backward_graph_size(F.cross_entropy(copy.deepcopy(model).train()(xb.to(device)), yb.to(device)))
    stamps = [time.perf_counter()]
    rec = GradientRecorder(model, groups=groups, names=unit_names(model))
    fit(model, loader, steps=steps, optimizer=make_optimizer(model, lr=lr), schedule=None, progress=False,
        device=device, on_step=lambda _: (rec.step(), stamps.append(time.perf_counter())))
    rec.remove()
    return {"recorder": rec, "names": rec.group_names, "frozen": rec.frozen,
            "step_ms": 1e3 * statistics.median(np.diff(stamps)), "nodes": nodes}


def _n_rates(lrs) -> int:
    """How many layer groups a rate specification asks for (a slice: N_GROUPS, fastai's default)."""
    return N_GROUPS if isinstance(lrs, slice) else int(np.asarray(lrs, dtype=float).size)


def run_lr_steps(model: nn.Module, task: Task, lrs, steps: int = 20, batch_size: int = 32, momentum: float = 0.9,
                 seed: int = 0, device=None) -> dict:
    """Train `steps` SGD steps (constant rates, no schedule) with one learning rate per layer group.

    lrs: one rate per group (list / np.array: the model is cut into len(lrs) groups) or slice(lo, hi)
    (N_GROUPS groups). Returns {"lrs", "names", "update_ratios" (||dW|| / ||W|| per group),
    "grad_norms" (median per group), "loss" (mean over the last pass), "accuracy" (test set)}.
    The model is changed in place.
    """
    device = get_device(device)
    model.to(device)
    groups = layer_groups(model, _n_rates(lrs))
    optimizer = make_optimizer(param_groups(groups, lrs, model=model), momentum=momentum)
    names = short_group_names(model, groups)
    before = snapshot(model)
    loader = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed)
    with GradientRecorder(model, groups=groups, names=names) as rec:
        hist = fit(model, loader, steps=steps, optimizer=optimizer, schedule=None, progress=False, device=device,
                   on_step=rec)
    return {"lrs": [g["lr"] for g in optimizer.param_groups], "names": names,
            "update_ratios": update_ratios(before, model, groups),
            "grad_norms": np.nanmedian(rec.as_array(), axis=0).tolist(), "loss": hist.loss[-1],
            "accuracy": evaluate(model, (task.x_test, task.y_test), device=device)}
