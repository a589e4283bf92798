"""Interactive explorers (ipywidgets): user interface only; the runs behind them are in `ftcourse.recipes`.

`freeze_explorer(model_factory, task)` builds a widget: pick the freeze point, press "run 5 steps",
see which layer groups receive gradients (the signature plot) and what a step costs.
`lr_explorer(model_factory, task)`: one learning rate per layer group on log sliders, press "run 20
steps", see how far each group moved (||dW|| / ||W||) and the test accuracy.
Building either runs no training; the lessons never depend on them (they are for playing).
`explore.run_frozen_steps` and `explore.run_lr_steps` are the plain functions they call.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .data import Task
from .groups import N_GROUPS, layer_groups, unit_names
from .optim import even_mults, lrs_for
from .plots import plot_group_grad_norms, plot_update_ratios
from .explore import run_frozen_steps, run_lr_steps
from .recipes import DEFAULTS

__all__ = ["freeze_explorer", "lr_explorer", "rate_grid"]


def freeze_explorer(model_factory: Callable[[], nn.Module], task: Task, steps: int = 5,
                    batch_size: int = DEFAULTS.batch_size, lr: float = 0.01, device=None):
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

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    title = f"{label}" + (", BN trainable" if train_bn else "")
    plot_group_grad_norms(result["recorder"], result["names"], result["frozen"], ax=ax, title=title)
    plt.show()
    plt.close(fig)
    print(f"median step time {result['step_ms']:.3g} ms, backward graph {result['nodes']} nodes")


# ---------------------------------------------------------------- one learning rate per layer group
def _rates_label(rates) -> str:
    return " / ".join(f"{r:.0e}" for r in rates)


def _nice_rate(lr: float) -> float:
    """`lr` to 3 significant digits (0.030000000000000002 -> 0.03), as the slider shows it."""
    return float(f"{float(lr):.3g}")


def rate_grid(extra=()) -> list[float]:
    """The explorer's slider positions: 1, 2, 3, 5 per decade from 1e-6 to 1, plus `extra` rates.

    Every position is a short decimal shown exactly as the kernel holds it ("0.3" is 0.3), so a preset
    such as slice(0.003, 0.3) lands on the grid; a log slider snaps to 10**(k/10) and would show 0.316.
    """
    grid = {float(f"{m}e{e}") for e in range(-6, 0) for m in (1, 2, 3, 5)} | {1.0}
    for lr in extra:
        if not (isinstance(lr, (int, float)) and 0 < lr <= 10):
            raise ValueError(f"explorer rates must be numbers in (0, 10], got {lr!r}; pass lrs=[1e-4, 1e-3, 1e-2]")
        grid.add(_nice_rate(lr))
    return sorted(grid)


def lr_explorer(model_factory: Callable[[], nn.Module], task: Task, steps: int = 20, n_groups: int = N_GROUPS,
                lrs=None, batch_size: int = DEFAULTS.batch_size, device=None):
    """A widget: one learning rate per layer group (sliders on a grid of short decimals), press the button,
    see how far each group moved.

    `model_factory()` returns a fresh pretrained model each run. Building the widget trains nothing;
    each press runs `steps` SGD steps (`run_lr_steps`) and plots the update ratio ||dW|| / ||W|| per
    group for this run and the two before it, with the test accuracy. `box.run()` is the same as a press.
    """
    import ipywidgets as w

    model = model_factory()
    names = layer_groups(model, n_groups).names
    start = lrs_for(lrs, n_groups) if lrs is not None else even_mults(1e-4, 1e-2, n_groups)  # any rate spec
    presets = {"uniform 0.01": [0.01] * n_groups, "uniform 0.3": [0.3] * n_groups,
               "slice(1e-4, 1e-2)": even_mults(1e-4, 1e-2, n_groups),
               "slice(0.003, 0.3)": even_mults(0.003, 0.3, n_groups)}
    presets = {k: [_nice_rate(v) for v in lrs_] for k, lrs_ in presets.items()}
    grid = rate_grid([*start, *(v for lrs_ in presets.values() for v in lrs_)])
    sliders = [w.SelectionSlider(options=[(f"{v:g}", v) for v in grid], value=_nice_rate(lr),
                                 description=f"{i}: {name}", style={"description_width": "110px"},
                                 layout=w.Layout(width="420px")) for i, (name, lr) in enumerate(zip(names, start))]
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
