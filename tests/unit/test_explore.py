"""ftcourse.explore: the few-step runs behind the explorer widgets."""
import numpy as np
import torch
import pytest

import ftcourse


def test_run_frozen_steps_refuses_an_all_frozen_model(small_task, model):
    with pytest.raises(ValueError, match="no trainable parameters"):
        ftcourse.explore.run_frozen_steps(model, small_task, n=6, steps=1)


def test_run_lr_steps_measures_each_group(model, small_task):
    before = ftcourse.snapshot(model)
    result = ftcourse.explore.run_lr_steps(model, small_task, np.array([0.0, 1e-3, 1e-1]), steps=3, batch_size=8)
    assert result["lrs"] == pytest.approx([0.0, 1e-3, 1e-1])
    assert result["names"] == ["stem-layer2", "layer3-layer4", "head"]
    ratios = result["update_ratios"]
    assert ratios[0] == 0.0 and 0 < ratios[1] < ratios[2]  # rate 0: the group did not move at all
    assert all(g > 0 for g in result["grad_norms"]) and np.isfinite(result["loss"])
    assert result["accuracy"] == ftcourse.evaluate(model, (small_task.x_test, small_task.y_test))  # the trained model's
    assert not torch.equal(before["fc.weight"], model.fc.weight.detach())
    assert len(ftcourse.explore.run_lr_steps(model, small_task, slice(1e-4, 1e-2), steps=1, batch_size=8)["lrs"]) == 3
