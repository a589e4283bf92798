"""ftcourse.widgets: the explorers build without training and run when pressed."""
import numpy as np
import pytest
import torch

import ftcourse
import ftcourse.widgets as widgets


def test_freeze_explorer_builds_without_training(monkeypatch, small_task):
    import ipywidgets as w

    built = []

    def factory():
        torch.manual_seed(0)
        built.append(ftcourse.course_backbone(num_classes=5))
        return built[-1]

    def no_training(*args, **kwargs):
        raise AssertionError("building the widget must not train")

    monkeypatch.setattr(widgets, "run_frozen_steps", no_training)
    box = widgets.freeze_explorer(factory, small_task)
    assert isinstance(box, w.VBox) and len(built) == 1
    dropdown = box.children[0].children[0]
    assert isinstance(dropdown, w.Dropdown) and dropdown.value == 5 and len(dropdown.options) == 6
    assert isinstance(box.children[1], w.Button) and isinstance(box.children[2], w.Output)
    snap = ftcourse.snapshot(built[0])
    assert all(torch.equal(v, built[0].state_dict()[k]) for k, v in snap.items())


def test_freeze_explorer_run_records_who_gets_gradients(small_task):
    def factory():
        torch.manual_seed(0)
        return ftcourse.course_backbone(num_classes=5)

    box = widgets.freeze_explorer(factory, small_task, steps=2, batch_size=8)
    box.children[0].children[0].value = 4  # train layer4 and the head
    result = box.run()
    assert result["frozen"] == [True] * 4 + [False, False]
    arr = result["recorder"].as_array()
    assert arr.shape == (2, 6) and np.all(np.isnan(arr[:, :4])) and np.all(arr[:, 4:] > 0)
    assert result["step_ms"] > 0 and 0 < result["nodes"] < 40


def test_lr_explorer_builds_without_training_and_runs(monkeypatch, small_task):
    import ipywidgets as w

    def factory():
        torch.manual_seed(0)
        return ftcourse.course_backbone(num_classes=5)

    real = widgets.run_lr_steps

    def no_training(*args, **kwargs):
        raise AssertionError("building the widget must not train")

    monkeypatch.setattr(widgets, "run_lr_steps", no_training)
    box = widgets.lr_explorer(factory, small_task, steps=2, batch_size=8)
    sliders = [c for c in box.children if isinstance(c, w.SelectionSlider)]
    assert [s.value for s in sliders] == [1e-4, 1e-3, 1e-2] and [s.label for s in sliders] == ["0.0001", "0.001", "0.01"]
    preset, button = box.children[3].children
    assert isinstance(button, w.Button) and isinstance(box.children[4], w.Output)
    for name, rates in [("slice(0.003, 0.3)", [0.003, 0.03, 0.3]), ("slice(1e-4, 1e-2)", [1e-4, 1e-3, 1e-2]),
                        ("uniform 0.01", [0.01] * 3), ("uniform 0.3", [0.3] * 3)]:
        preset.value = name  # the screen (label) and the kernel (value) hold exactly the named rates
        assert [s.value for s in sliders] == rates and [s.label for s in sliders] == [f"{r:g}" for r in rates], name
    monkeypatch.setattr(widgets, "run_lr_steps", real)
    result = box.run()
    assert result["lrs"] == [0.3] * 3 and len(result["update_ratios"]) == 3
    box.run()
    assert len(box.history) == 2


def test_rate_grid_holds_short_decimals_and_the_rates_asked_for():
    grid = widgets.rate_grid([0.0007, 0.030000000000000002])
    assert grid[0] == 1e-6 and grid[-1] == 1.0 and grid == sorted(set(grid))
    assert {0.3, 0.003, 0.0007, 0.03} <= set(grid) and all(float(f"{v:g}") == v for v in grid)
    with pytest.raises(ValueError, match="pass lrs="):
        widgets.rate_grid([-0.1])
