"""ftcourse.plots: every plot is labelled, greys frozen groups, and draws what it is given."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import to_hex

import ftcourse
import ftcourse.plots as plots


def _labelled(ax):
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def _titled_without_pixel_ticks(ax):
    assert ax.get_title() and not ax.axison  # an image montage: no pixel axes


def test_grad_norm_dots_mark_frozen_groups_without_a_value_on_a_log_axis():
    hist = np.array([[np.nan, 0.5, 2.0], [np.nan, 0.7, 1.0]])
    ax = plots.plot_group_grad_norms(hist, ["stem", "layer", "head"], [True, False, False])
    _labelled(ax)
    assert ax.get_yscale() == "log" and not [p for p in ax.patches if p.get_height() > 0 and p.get_y() > 0]
    dots = [line.get_ydata()[0] for line in ax.lines]  # one median dot per trained group, none for the frozen one
    assert dots == pytest.approx([0.6, 1.5]) and [line.get_xdata()[0] for line in ax.lines] == [1, 2]
    assert [t.get_text() for t in ax.texts] == ["frozen"]
    assert to_hex(ax.patches[0].get_facecolor()) == plots.FROZEN_COLOUR  # the frozen group's grey band


def test_grad_norm_plot_reads_a_recorder_and_draws_lines(model, batch):
    ftcourse.freeze_to(model, -1)
    rec = ftcourse.GradientRecorder(model, groups=ftcourse.unit_groups(model), names=ftcourse.unit_names(model))
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        rec.step()
    ax = plots.plot_group_grad_norms(rec, kind="lines")
    _labelled(ax)
    labels = ax.get_legend_handles_labels()[1]
    assert labels[:5] == [f"{n} (frozen)" for n in ["stem", "layer1", "layer2", "layer3", "layer4"]]
    assert labels[5] == "head" and len(ax.lines[-1].get_xdata()) == 2


def test_grad_norm_plot_rejects_mismatched_names_and_kinds():
    with pytest.raises(ValueError, match="2 groups"):
        plots.plot_group_grad_norms(np.ones((3, 2)), ["a"], [False])
    with pytest.raises(ValueError, match="kind"):
        plots.plot_group_grad_norms(np.ones((3, 2)), ["a", "b"], [False, False], kind="pie")


def test_show_filters_grid_and_grey_input(model):
    ax = plots.show_filters(model.conv1.weight, ncols=8)
    _titled_without_pixel_ticks(ax)
    img = ax.images[0].get_array()
    assert img.shape == (4 * 4 + 1, 8 * 4 + 1, 3)  # 32 filters of 3x3, 1-px gaps
    ax = plots.show_filters(model.conv1.weight, ncols=8, grey_input=True)
    assert ax.images[0].get_array().ndim == 2
    with pytest.raises(ValueError, match="conv weight"):
        plots.show_filters(torch.ones(3, 3))


def test_show_images_labels_each_image(small_task):
    ax = plots.show_images(small_task.x_train[:6], small_task.y_train[:6], small_task.classes,
                           small_task.mean, small_task.std, ncols=3)
    _titled_without_pixel_ticks(ax)
    assert [t.get_text() for t in ax.texts] == [small_task.classes[int(v)] for v in small_task.y_train[:6]]
    arr = ax.images[0].get_array()
    assert float(arr.min()) >= 0 and float(arr.max()) <= 1


def test_plot_cost_vs_freeze_two_or_three_panels():
    rows = [{"point": "stem", "nodes": 80, "step_ms": 30.0, "forward_ms": 10.0, "peak_mib": None},
            {"point": "head", "nodes": 6, "step_ms": 10.5, "forward_ms": 10.0, "peak_mib": None}]
    axes = plots.plot_cost_vs_freeze(rows)
    assert len(axes) == 2
    for ax in axes:
        _labelled(ax)
    assert list(axes[1].lines[0].get_ydata()) == pytest.approx([3.0, 1.05])
    rows = [dict(r, peak_mib=m) for r, m in zip(rows, [100.0, 20.0])]
    assert len(plots.plot_cost_vs_freeze(rows)) == 3


def test_plot_update_ratios_draws_dots_not_bars_on_a_log_axis():
    ax = plots.plot_update_ratios({"a": [0.01, 0.02, 1.0], "b": [0.001, 0.01, 2.0]}, ["g0", "g1", "head"])
    _labelled(ax)
    assert ax.get_yscale() == "log" and len(ax.patches) == 0
    assert [list(line.get_ydata()) for line in ax.lines] == [[0.01, 0.02, 1.0], [0.001, 0.01, 2.0]]
    assert ax.get_legend_handles_labels()[1] == ["a", "b"]
    with pytest.raises(ValueError, match="2 ratios but there are 3 groups"):
        plots.plot_update_ratios({"a": [1.0, 2.0]}, ["g0", "g1", "head"])


def test_course_style_makes_every_text_at_least_11_pt():
    import matplotlib

    with matplotlib.rc_context():
        plots.use_course_style()
        sizes = [matplotlib.rcParams[k] for k in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize",
                                                  "ytick.labelsize", "legend.fontsize")]
        assert all(float(s) >= 11 for s in sizes), sizes


def test_plot_paired_draws_one_dot_and_whisker_per_comparison_filled_when_decided():
    ahead = ftcourse.paired([0.7, 0.72, 0.71], [0.6, 0.61, 0.6], ("a", "b"))
    unclear = ftcourse.paired([0.6, 0.7, 0.5], [0.6, 0.6, 0.6], ("c", "b"))
    ax = plots.plot_paired([ahead, unclear], labels=["a minus b", "c minus b"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a minus b", "c minus b"]
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(dots) == 2 and dots[0].get_xdata()[0] == pytest.approx(100 * ahead.mean)
    assert dots[0].get_markerfacecolor() != "white" and dots[1].get_markerfacecolor() == "white"
    whiskers = [line for line in ax.lines if line.get_marker() != "o" and len(line.get_xdata()) == 2
                and line.get_ydata()[0] == line.get_ydata()[1]]
    assert len(whiskers) == 2 and whiskers[0].get_xdata()[0] == pytest.approx(100 * ahead.interval[0])
    with pytest.raises(ValueError, match="give one label each"):
        plots.plot_paired([ahead], labels=["x", "y"])
    import matplotlib.pyplot as plt
    plt.close("all")
