"""A few training steps, measured: the runs behind the explorer widgets (`ftcourse.widgets`), usable without them.

`run_frozen_steps` freezes the units below an index and records each group's gradient for a few steps;
`run_lr_steps` trains a few steps with one learning rate per layer group and measures the update ratios.
"""
from __future__ import annotations

import copy
import statistics
import time

import numpy as np
import torch.nn.functional as F
from torch import nn

from .cost import backward_graph_size
from .data import Task, make_loader
from .grads import GradientRecorder, snapshot, update_ratios
from .groups import freeze_to, layer_groups, unit_groups
from .optim import make_optimizer, param_groups, rate_count
from .recipes import DEFAULTS
from .runtime import get_device
from .train import evaluate, fit

__all__ = ["run_frozen_steps", "run_lr_steps"]

def run_frozen_steps(model: nn.Module, task: Task, n: int, steps: int = 5, batch_size: int = DEFAULTS.batch_size,
                     lr: float = 0.01, train_bn: bool = False, seed: int = 0, device=None) -> dict:
    """Freeze the units below index `n` (freeze_to on one group per unit), train `steps` SGD steps, record gradients.

    Returns {"recorder", "names", "frozen", "step_ms" (median time between steps), "nodes" (backward
    graph of one step)}. The model is changed in place.
    """
    device = get_device(device)
    model.to(device)
    groups = freeze_to(model, n, groups=unit_groups(model), train_bn=train_bn)
    loader = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed)
    xb, yb = next(iter(loader))
    nodes = backward_graph_size(F.cross_entropy(copy.deepcopy(model).train()(xb.to(device)), yb.to(device)))
    stamps = [time.perf_counter()]
    rec = GradientRecorder(model, groups=groups)
    fit(model, loader, steps=steps, optimizer=make_optimizer(model, lr=lr), schedule=None, progress=False,
        device=device, on_step=lambda _: (rec.step(), stamps.append(time.perf_counter())))
    rec.remove()
    return {"recorder": rec, "names": rec.group_names, "frozen": rec.frozen,
            "step_ms": 1e3 * statistics.median(np.diff(stamps)), "nodes": nodes}


def run_lr_steps(model: nn.Module, task: Task, lrs, steps: int = 20, batch_size: int = DEFAULTS.batch_size,
                 momentum: float = 0.9, seed: int = 0, device=None) -> dict:
    """Train `steps` SGD steps (constant rates, no schedule) with one learning rate per layer group.

    lrs: one rate per group (list / np.array: the model is cut into len(lrs) groups) or slice(lo, hi)
    (N_GROUPS groups). Returns {"lrs", "names", "update_ratios" (||dW|| / ||W|| per group),
    "grad_norms" (median per group), "loss" (mean over the last pass), "accuracy" (test set)}.
    The model is changed in place.
    """
    device = get_device(device)
    model.to(device)
    groups = layer_groups(model, rate_count(lrs) or 1)
    optimizer = make_optimizer(param_groups(groups, lrs), momentum=momentum)
    names = groups.names
    before = snapshot(model)
    loader = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed)
    with GradientRecorder(model, groups=groups, names=names) as rec:
        hist = fit(model, loader, steps=steps, optimizer=optimizer, schedule=None, progress=False, device=device,
                   on_step=rec)
    return {"lrs": [g["lr"] for g in optimizer.param_groups], "names": names,
            "update_ratios": update_ratios(before, model, groups),
            "grad_norms": np.nanmedian(rec.as_array(), axis=0).tolist(), "loss": hist.loss[-1],
            "accuracy": evaluate(model, (task.x_test, task.y_test), device=device)}


