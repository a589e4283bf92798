"""Interactive explorers (ipywidgets) and the small measurements behind them.

`freeze_explorer(model_factory, task)` builds a widget: pick the freeze point, press "run 5 steps",
see which layer groups receive gradients (the signature plot) and what a step costs.
`lr_explorer(model_factory, task)` (lesson 03): one learning rate per layer group on log sliders,
press "run 20 steps", see how far each group moved (||dW|| / ||W||) and the test accuracy.
Building either runs no training; the lessons never depend on them (they are for playing).
`run_frozen_steps` and `run_lr_steps` are the plain functions they call; they work without ipywidgets.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Task, make_loader
from .grads import GradientRecorder, backward_graph_size, snapshot, sync_device, update_ratios
from .groups import flatten_modules, freeze_to, layer_groups, unit_groups, unit_names
from .optim import even_mults, param_groups
from .runtime import get_device
from .train import evaluate, make_optimizer

__all__ = ["run_frozen_steps", "freeze_explorer", "short_group_names", "run_lr_steps", "plot_update_ratios",
           "lr_explorer"]


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


# ---------------------------------------------------------------- lesson 03: one learning rate per group
def short_group_names(model: nn.Module, groups: list) -> list[str]:
    """Short names of layer groups from their units: ['stem-layer2', 'layer3-layer4', 'head'] for a ResNet in 3."""
    first = {id(g[0]): name for g, name in zip(unit_groups(model), unit_names(model))}
    out = []
    for group in groups:
        names = [first[id(m)] for m in flatten_modules(group) if id(m) in first]
        out.append(names[0] if len(names) == 1 else f"{names[0]}-{names[-1]}" if names else "?")
    return out


def _n_rates(lrs) -> int:
    """How many layer groups a rate specification asks for (a slice: 3, fastai's default)."""
    return 3 if isinstance(lrs, slice) else int(np.asarray(lrs, dtype=float).size)


def run_lr_steps(model: nn.Module, task: Task, lrs, steps: int = 20, batch_size: int = 32, momentum: float = 0.9,
                 seed: int = 0, device=None) -> dict:
    """Train `steps` SGD steps (constant rates, no schedule) with one learning rate per layer group.

    lrs: one rate per group (list / np.array: the model is cut into len(lrs) groups) or slice(lo, hi)
    (3 groups). Returns {"lrs", "names", "update_ratios" (||dW|| / ||W|| per group), "grad_norms"
    (median per group), "loss" (last step), "accuracy" (test set)}. The model is changed in place.
    """
    device = get_device(device)
    model.to(device)
    groups = layer_groups(model, _n_rates(lrs))
    optimizer = make_optimizer(param_groups(groups, lrs, model=model), momentum=momentum)
    rates = [g["lr"] for g in optimizer.param_groups]
    names = short_group_names(model, groups)
    before = snapshot(model)
    loader = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed)
    done, loss = 0, float("nan")
    model.train()
    with GradientRecorder(model, groups=groups, names=names) as rec:
        while done < steps:
            for xb, yb in loader:
                optimizer.zero_grad(set_to_none=True)
                out = F.cross_entropy(model(xb.to(device)), yb.to(device))
                out.backward()
                optimizer.step()
                rec.step()
                loss, done = out.item(), done + 1
                if done == steps:
                    break
    return {"lrs": rates, "names": names, "update_ratios": update_ratios(before, model, groups),
            "grad_norms": np.nanmedian(rec.as_array(), axis=0).tolist(), "loss": loss,
            "accuracy": evaluate(model, (task.x_test, task.y_test), device=device)}


def plot_update_ratios(ratios: dict, group_names, ax=None, title: str = "How far each layer group moved"):
    """Grouped bars, log y: the relative update ||dW|| / ||W|| of each layer group, one colour per run.

    ratios: {run label: one ratio per group}. Returns the axes; call plt.show() after it.
    """
    import matplotlib.pyplot as plt

    from .plots import _COLOURS

    own = ax is None
    if own:
        ax = plt.subplots(figsize=(7.0, 3.8))[1]
    names = list(group_names)
    width = 0.8 / max(1, len(ratios))
    for k, (label, values) in enumerate(ratios.items()):
        if len(values) != len(names):
            raise ValueError(f"run {label!r} has {len(values)} ratios but there are {len(names)} groups")
        xs = np.arange(len(names)) + (k - (len(ratios) - 1) / 2) * width
        ax.bar(xs, values, width=width * 0.95, bottom=1e-30, color=_COLOURS[k % len(_COLOURS)], label=label)
    ax.set_yscale("log")
    finite = [v for values in ratios.values() for v in values if np.isfinite(v) and v > 0]
    if finite:
        ax.set_ylim(min(finite) / 3, max(finite) * 3)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names)
    ax.set_xlabel("layer group (input -> output)")
    ax.set_ylabel("||W_after - W_before|| / ||W_before|| (log)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    if own:
        ax.figure.tight_layout()
    return ax


def _rates_label(rates) -> str:
    return " / ".join(f"{r:.0e}" for r in rates)


def lr_explorer(model_factory: Callable[[], nn.Module], task: Task, steps: int = 20, n_groups: int = 3,
                lrs=None, batch_size: int = 32, device=None):
    """A widget: one learning rate per layer group (log sliders), press the button, see how far each group moved.

    `model_factory()` returns a fresh pretrained model each run. Building the widget trains nothing;
    each press runs `steps` SGD steps (`run_lr_steps`) and plots the update ratio ||dW|| / ||W|| per
    group for this run and the two before it, with the test accuracy. `box.run()` is the same as a press.
    """
    import ipywidgets as w

    model = model_factory()
    names = short_group_names(model, layer_groups(model, n_groups))
    start = list(lrs) if lrs is not None else even_mults(1e-4, 1e-2, n_groups)
    if len(start) != n_groups:
        raise ValueError(f"lrs has {len(start)} values but n_groups is {n_groups}")
    sliders = [w.FloatLogSlider(value=lr, base=10, min=-6, max=0, step=0.1, readout_format=".1e",
                                description=f"{i}: {name}", style={"description_width": "110px"},
                                layout=w.Layout(width="420px")) for i, (name, lr) in enumerate(zip(names, start))]
    presets = {"uniform 0.01": [0.01] * n_groups, "uniform 0.3": [0.3] * n_groups,
               "slice(1e-4, 1e-2)": even_mults(1e-4, 1e-2, n_groups),
               "slice(0.003, 0.3)": even_mults(0.003, 0.3, n_groups)}
    preset = w.Dropdown(options=["(sliders)", *presets], value="(sliders)", description="preset")

    def use_preset(change) -> None:
        for slider, lr in zip(sliders, presets.get(change["new"], [])):
            slider.value = lr

    preset.observe(use_preset, names="value")
    button = w.Button(description=f"run {steps} steps", button_style="primary", icon="play")
    out = w.Output(layout=w.Layout(min_height="300px"))
    history: list[dict] = []

    def run(_=None) -> dict:
        result = run_lr_steps(model_factory(), task, [s.value for s in sliders], steps=steps,
                              batch_size=batch_size, device=device)
        history.append(result)
        with out:
            out.clear_output(wait=True)
            _show_lr_runs(history[-3:], steps)
        return result

    button.on_click(run)
    box = w.VBox([*sliders, w.HBox([preset, button]), out])
    box.run = run  # the same as pressing the button (for tests and scripts)
    box.history = history
    return box


def _show_lr_runs(runs: list[dict], steps: int) -> None:
    """The update ratios of the last runs side by side, and their accuracies, inside the explorer's output."""
    import matplotlib.pyplot as plt

    ratios = {f"rates {_rates_label(r['lrs'])}": r["update_ratios"] for r in runs}
    ax = plot_update_ratios(ratios, runs[-1]["names"], title=f"After {steps} steps (the last {len(runs)} runs)")
    plt.show()
    plt.close(ax.figure)
    for r in runs:
        print(f"rates {_rates_label(r['lrs'])}: update ratios {', '.join(f'{v:.3g}' for v in r['update_ratios'])}; "
              f"last loss {r['loss']:.3g}; test accuracy {r['accuracy']:.3f}")
