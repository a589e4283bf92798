"""The course's plots (matplotlib only): gradient norm per layer group, filters, images, cost vs freeze point,
update size per layer group, paired comparisons.

Every plot has a title and labelled axes with units, draws on `ax` if given (else a new figure), and
returns the axes; call `plt.show()` after it in a notebook.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = ["FROZEN_COLOUR", "COURSE_STYLE", "use_course_style", "plot_group_grad_norms", "show_filters", "show_images",
           "plot_cost_vs_freeze", "plot_update_ratios", "plot_paired"]

FROZEN_COLOUR = "#c8c8c8"  # grey: frozen groups in every plot of the course
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


COURSE_STYLE = {  # readable when projected: no text below 11 pt at the saved size
    "font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 11, "ytick.labelsize": 11,
    "legend.fontsize": 11, "figure.titlesize": 14, "figure.dpi": 100,
}


def use_course_style() -> None:
    """Set matplotlib's text sizes for the course's figures (called in a lesson's first cell, never on import)."""
    import matplotlib

    matplotlib.rcParams.update(COURSE_STYLE)


def _axes(ax, figsize=(6.4, 3.6)):
    """The given axes, or a new figure's axes."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)[1]


def _history(recorder_or_array) -> np.ndarray:
    """(steps, groups) gradient norms from a GradientRecorder or an array (one row per step)."""
    if hasattr(recorder_or_array, "as_array"):
        return recorder_or_array.as_array()
    arr = np.asarray(recorder_or_array, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected (steps, groups) gradient norms, got an array of shape {arr.shape}")
    return arr


def plot_group_grad_norms(recorder_or_array, group_names: Sequence[str] | None = None,
                          frozen: Sequence[bool] | None = None, ax=None, kind: str = "median",
                          title: str = "Gradient norm per layer group"):
    """The course's signature plot: how much gradient each layer group receives, frozen groups greyed.

    kind="median": a dot at the median over steps of each group's gradient L2 norm, with a line from
    its smallest to its largest step; kind="lines": the norm at every step. Log y axis (dots, not
    bars: a bar's length means nothing on a log axis). A frozen group (or one that got no gradient:
    NaN) has no value: a grey "frozen" label stands in its place. `group_names` and `frozen` default
    to the recorder's.
    """
    hist = _history(recorder_or_array)
    n = hist.shape[1]
    names = list(group_names) if group_names is not None else list(getattr(recorder_or_array, "group_names", []))
    names = names or [f"group {i}" for i in range(n)]
    frozen = list(frozen) if frozen is not None else list(getattr(recorder_or_array, "frozen", [False] * n))
    if len(names) != n or len(frozen) != n:
        raise ValueError(f"{n} groups in the gradient history but {len(names)} names and {len(frozen)} frozen flags")
    no_grad = [bool(f) or bool(np.all(np.isnan(hist[:, i]))) for i, f in enumerate(frozen)]
    ax = _axes(ax)
    finite = hist[np.isfinite(hist) & (hist > 0)]
    floor = float(finite.min()) / 10 if finite.size else 1e-3
    if kind == "median":
        _grad_dots(ax, hist, names, no_grad, floor)
    elif kind == "lines":
        _grad_lines(ax, hist, names, no_grad)
    else:
        raise ValueError(f"kind must be 'median' or 'lines', got {kind!r}")
    ax.set_yscale("log")
    ax.set_ylabel("gradient L2 norm" + (" (median, range)" if kind == "median" else "") + ", log")
    ax.set_title(title)
    return ax


def _grad_dots(ax, hist, names, no_grad, floor) -> None:
    """A dot per group (median over steps) with its min-max range; a grey "frozen" label where a group got none."""
    xs = np.arange(len(names))
    for i in xs:
        if no_grad[i]:  # no value to draw: a label at the bottom, in axes coordinates
            ax.text(i, 0.04, "frozen", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    rotation=90, color="#777777", fontsize=11)
            ax.axvspan(i - 0.4, i + 0.4, color=FROZEN_COLOUR, alpha=0.35, lw=0)
        else:
            col = hist[:, i][np.isfinite(hist[:, i])]
            colour = _COLOURS[i % len(_COLOURS)]
            ax.vlines(i, col.min(), col.max(), color=colour, lw=2)
            ax.plot(i, float(np.median(col)), "o", ms=9, color=colour)
    ax.set_xlim(-0.6, len(names) - 0.4)
    top = float(np.nanmax(hist)) if np.isfinite(hist).any() else 1.0
    ax.set_ylim(floor, max(top * 2, floor * 10))  # room above the largest range line
    ax.set_xticks(xs)
    ax.set_xticklabels([_short(n) for n in names], rotation=30, ha="right")
    ax.set_xlabel("layer group (input -> output)")


def _grad_lines(ax, hist, names, no_grad) -> None:
    """One line per group over steps; frozen groups only in the legend, greyed."""
    steps = np.arange(1, hist.shape[0] + 1)
    for i, name in enumerate(names):
        if no_grad[i]:
            ax.plot([], [], color=FROZEN_COLOUR, lw=4, label=f"{_short(name)} (frozen)")
        else:
            ax.plot(steps, hist[:, i], marker="o", ms=3, color=_COLOURS[i % len(_COLOURS)], label=_short(name))
    ax.set_xlabel("optimisation step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="best")


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def show_filters(conv_weight: torch.Tensor, ncols: int = 8, grey_input: bool = False, ax=None,
                 title: str = "First-layer filters"):
    """The filters of a conv layer as an image grid: RGB if 3 input channels, else the channel mean.

    grey_input=True: the input's channels are all equal (grey images), so a filter acts as the sum of its
    channel slices; that sum is shown in grey. Each filter is scaled to [0, 1] on its own (min-max),
    so the pattern shows, not the magnitude.
    """
    w = conv_weight.detach().float().cpu()
    if w.dim() != 4:
        raise ValueError(f"expected a conv weight (out, in, kh, kw), got shape {tuple(w.shape)}")
    if grey_input:
        w = w.sum(1, keepdim=True)
    elif w.shape[1] != 3:
        w = w.mean(1, keepdim=True)
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    ax = _axes(ax, figsize=(6.4, 6.4 * math.ceil(len(w) / ncols) / ncols + 0.6))
    ax.imshow(_grid(w, ncols), cmap="gray" if w.shape[1] == 1 else None, interpolation="nearest")
    kh, kw = w.shape[2:]
    ax.set_title(f"{title}\n({len(w)} filters of {kh}x{kw} px, {ncols} per row; each scaled to its own range, "
                 "white = most positive)", fontsize=11)
    ax.set_axis_off()
    return ax


def _grid(images: torch.Tensor, ncols: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] tiled into one (rows*(H+pad), ncols*(W+pad), C) array."""
    n, c, h, w = images.shape
    rows = math.ceil(n / ncols)
    out = np.ones((rows * (h + pad) + pad, ncols * (w + pad) + pad, c), dtype=np.float32)
    for k in range(n):
        r, q = divmod(k, ncols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = (
            images[k].permute(1, 2, 0).numpy())
    return out[..., 0] if c == 1 else out


def show_images(x: torch.Tensor, labels=None, classes: Sequence[str] | None = None, mean=None, std=None,
                ncols: int = 8, ax=None, title: str = "Example images"):
    """A grid of (N, 3, H, W) images, un-normalised with (mean, std) if given; labels printed above each."""
    x = x.detach().float().cpu()
    if mean is not None and std is not None:
        x = x * torch.as_tensor(std).view(1, -1, 1, 1) + torch.as_tensor(mean).view(1, -1, 1, 1)
    x = x.clamp(0, 1)
    rows = math.ceil(len(x) / ncols)
    ax = _axes(ax, figsize=(1.0 * ncols, 1.1 * rows + 0.6))
    ax.imshow(_grid(x, ncols), interpolation="nearest")
    h, w = x.shape[2:]
    if labels is not None:
        for k, lab in enumerate(labels):
            r, q = divmod(k, ncols)
            text = classes[int(lab)] if classes is not None else str(int(lab))
            ax.text(1 + q * (w + 1) + 1, 1 + r * (h + 1) + 1, text, color="black", fontsize=11, va="top",
                    fontweight="bold", bbox=dict(boxstyle="square,pad=0.1", fc="yellow", ec="none"))
    ax.set_title(f"{title}\n({h}x{w} px each; yellow box: label)", fontsize=11)
    ax.set_axis_off()
    return ax


def plot_cost_vs_freeze(rows: Sequence[dict], x_key: str = "point", axes=None,
                        title: str = "What a training step costs as the freeze point moves up"):
    """Two panels from rows of {point, nodes, step_ms, forward_ms}: backward graph size, and step time / forward.

    A row with "peak_mib" (CUDA) adds a third panel with peak memory. Returns the axes.
    """
    import matplotlib.pyplot as plt

    labels = [str(r[x_key]) for r in rows]
    has_mem = all(r.get("peak_mib") is not None for r in rows)
    if axes is None:
        fig, axes = plt.subplots(1, 3 if has_mem else 2, figsize=(12 if has_mem else 10, 4.0))
        fig.suptitle(title)
    xs = np.arange(len(rows))
    axes[0].bar(xs, [r["nodes"] for r in rows], color=_COLOURS[0])
    axes[0].set_ylabel("backward graph (autograd nodes)")
    axes[0].set_title("Backward work recorded")
    ratio = [r["step_ms"] / r["forward_ms"] for r in rows]
    axes[1].plot(xs, ratio, marker="o", color=_COLOURS[1], label="training step")
    axes[1].axhline(1.0, color="#555555", ls="--", lw=1, label="one forward pass")
    axes[1].set_ylabel("step time / forward time (x)")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("Time of one step (median)")
    axes[1].legend()
    if has_mem:
        axes[2].bar(xs, [r["peak_mib"] for r in rows], color=_COLOURS[2])
        axes[2].set_ylabel("peak CUDA memory (MiB)")
        axes[2].set_title("Peak memory of one step")
    for ax in axes[: 3 if has_mem else 2]:
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ax.set_xlabel("lowest trainable layer group")
    axes[0].figure.tight_layout()
    return axes


def plot_update_ratios(ratios: dict, group_names, ax=None, title: str = "How far each layer group moved"):
    """One line of dots per run, log y: the relative update ||dW|| / ||W|| of each layer group.

    ratios: {run label: one ratio per group}; group_names: the names, or the LayerGroups. Dots on a log
    axis, not bars (a bar's length means nothing there). Returns the axes; call plt.show() after it.
    """
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        ax = plt.subplots(figsize=(7.5, 4.2))[1]
    names = list(getattr(group_names, "names", group_names))  # a LayerGroups gives its names
    for k, (label, values) in enumerate(ratios.items()):
        if len(values) != len(names):
            raise ValueError(f"run {label!r} has {len(values)} ratios but there are {len(names)} groups")
        offset = (k - (len(ratios) - 1) / 2) * 0.06  # a small shift so equal values stay visible
        ax.plot(np.arange(len(names)) + offset, values, marker="o", ms=8, lw=1.5, color=_COLOURS[k % len(_COLOURS)],
                label=label)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names)
    ax.set_xlabel("layer group (input -> output)")
    ax.set_ylabel("||W_after - W_before|| / ||W_before||, log")
    ax.set_title(title)
    ax.legend()
    if own:
        ax.figure.tight_layout()
    return ax


def plot_paired(comparisons: Sequence, ax=None, scale: float = 100, unit: str = "points",
                title: str = "Paired differences over seeds (95 % interval)", labels: Sequence[str] | None = None):
    """One row per ftcourse.paired comparison: its mean difference (a dot) and its 95 % interval (a whisker), with
    a line at 0. A whisker that crosses 0 is "not distinguishable"; filled dots are "ahead" or "behind".

    labels: one per comparison (default "<a> vs <b>"). Returns the axes; call plt.show() after it.
    """
    import matplotlib.pyplot as plt

    comparisons = list(comparisons)
    labels = [f"{c.name_a} vs {c.name_b}" for c in comparisons] if labels is None else list(labels)
    if len(labels) != len(comparisons):
        raise ValueError(f"{len(labels)} labels for {len(comparisons)} comparisons: give one label each")
    own = ax is None
    if own:
        ax = plt.subplots(figsize=(8, 0.45 * len(comparisons) + 1.4))[1]
    ys = np.arange(len(comparisons))[::-1]
    for y, c in zip(ys, comparisons):
        lo, hi = c.interval
        decided = c.verdict in ("ahead", "behind")
        colour = _COLOURS[0] if decided else "#777777"
        if math.isfinite(lo):
            ax.plot([scale * lo, scale * hi], [y, y], color=colour, lw=2)
        ax.plot(scale * c.mean, y, "o", ms=8, color=colour, mfc=colour if decided else "white")
    ax.axvline(0, color="#333333", lw=1)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels)
    ax.set_xlabel(f"difference ({unit}); filled: the interval excludes 0")
    ax.set_title(title)
    if own:
        ax.figure.tight_layout()
    return ax
