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
    sliders = [c for c in box.children if isinstance(c, w.FloatLogSlider)]
    assert [s.value for s in sliders] == pytest.approx([1e-4, 1e-3, 1e-2])
    preset, button = box.children[3].children
    assert isinstance(button, w.Button) and isinstance(box.children[4], w.Output)
    preset.value = "uniform 0.3"
    assert [s.value for s in sliders] == pytest.approx([0.3] * 3)
    monkeypatch.setattr(widgets, "run_lr_steps", real)
    result = box.run()
    assert result["lrs"] == pytest.approx([0.3] * 3) and len(result["update_ratios"]) == 3
    box.run()
    assert len(box.history) == 2
