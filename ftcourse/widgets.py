"""Interactive explorers (ipywidgets) and the small measurements behind them.

`freeze_explorer(model_factory, task)` builds a widget: pick the freeze point, press "run 5 steps",
see which layer groups receive gradients (the signature plot) and what a step costs. Building it
runs no training; the lessons never depend on it (it is for playing). `step_cost` and
`run_frozen_steps` are the plain functions it calls; they work without ipywidgets.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import Task, make_loader
from .grads import GradientRecorder, backward_graph_size, sync_device
from .groups import freeze_to, unit_groups, unit_names
from .runtime import get_device

__all__ = ["run_frozen_steps", "freeze_explorer"]


def run_frozen_steps(model: nn.Module, task: Task, first_trainable: int, steps: int = 5, batch_size: int = 32,
                     lr: float = 0.01, train_bn: bool = False, seed: int = 0, device=None) -> dict:
    """Freeze the units below `first_trainable`, train `steps` SGD steps, record gradient norms per unit.

    Returns {"recorder", "names", "frozen", "step_ms" (median), "nodes"}. The model is changed in place.
    """
    device = get_device(device)
    model.to(device)
    groups = unit_groups(model)
    freeze_to(model, first_trainable, groups=groups, train_bn=train_bn)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing is trainable at this freeze point")
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    rec = GradientRecorder(model, groups=groups, names=unit_names(model))
    loader = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed)
    times, nodes, done = [], 0, 0
    model.train()
    while done < steps:
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            nodes = backward_graph_size(loss)
            loss.backward()
            opt.step()
            sync_device(device)
            times.append(time.perf_counter() - t0)
            rec.step()
            done += 1
            if done == steps:
                break
    frozen = rec.frozen
    rec.remove()
    return {"recorder": rec, "names": rec.group_names, "frozen": frozen,
            "step_ms": 1e3 * statistics.median(times), "nodes": nodes}


def freeze_explorer(model_factory: Callable[[], nn.Module], task: Task, steps: int = 5, batch_size: int = 32,
                    lr: float = 0.01, device=None):
    """A widget: choose the freeze point (and fastai's train_bn), press the button, see who gets gradients.

    `model_factory()` returns a fresh model each run (e.g. `lambda: ftcourse.load_pretrained(5)`).
    Building the widget trains nothing; each press runs `steps` steps on a fresh model and shows the
    gradient norm per unit (frozen units grey), the median step time and the backward graph size.
    """
    import ipywidgets as w

    names = unit_names(model_factory())
    options = [("nothing frozen (train all)", 0)]
    options += [(f"freeze below {names[i]} (train {names[i]} and up)", i) for i in range(1, len(names) - 1)]
    options += [("head only", len(names) - 1)]
    point = w.Dropdown(options=options, value=len(names) - 1, description="freeze point",
                       style={"description_width": "initial"}, layout=w.Layout(width="420px"))
    train_bn = w.Checkbox(value=False, description="keep BN trainable (fastai train_bn=True)", indent=False)
    button = w.Button(description=f"run {steps} steps", button_style="primary", icon="play")
    out = w.Output(layout=w.Layout(min_height="320px"))

    def run(_=None) -> dict:
        result = run_frozen_steps(model_factory(), task, point.value, steps=steps, batch_size=batch_size, lr=lr,
                                  train_bn=train_bn.value, device=device)
        with out:
            out.clear_output(wait=True)
            _show_result(result, point.label, train_bn.value)
        return result

    button.on_click(run)
    box = w.VBox([w.HBox([point, train_bn]), button, out])
    box.run = run  # the same as pressing the button (for tests and scripts)
    return box


def _show_result(result: dict, label: str, train_bn: bool) -> None:
    """The signature plot and the cost of a step, inside the explorer's output area."""
    import matplotlib.pyplot as plt

    from .plots import plot_group_grad_norms

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    title = f"{label}" + (", BN trainable" if train_bn else "")
    plot_group_grad_norms(result["recorder"], result["names"], result["frozen"], ax=ax, title=title)
    plt.show()
    plt.close(fig)
    print(f"median step time {result['step_ms']:.3g} ms, backward graph {result['nodes']} nodes")
