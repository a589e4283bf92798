"""ftcourse.recipes: the baselines, LP-FT, gradual unfreezing and the explorers' short runs."""
import math

import numpy as np
import pytest
import torch

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
    assert 0 <= result["accuracy"] <= 1
    assert not torch.equal(before["fc.weight"], model.fc.weight.detach())
    assert len(ftcourse.explore.run_lr_steps(model, small_task, slice(1e-4, 1e-2), steps=1, batch_size=8)["lrs"]) == 3


def test_fine_tune_takes_per_group_rates_and_lp_ft_starts_from_the_probe():
    task = ftcourse.target_task(shots=2, seed=0)
    model, acc = ftcourse.fine_tune(task, seed=0, steps=2, lr=np.array([0.0, 0.0, 0.01]))
    pretrained = ftcourse.load_pretrained()
    assert torch.equal(model.conv1.weight, pretrained.conv1.weight)  # groups 0 and 1 at rate 0 did not move
    assert torch.equal(model.layer4[0].conv1.weight, pretrained.layer4[0].conv1.weight)
    assert 0.0 <= acc <= 1.0
    with pytest.raises(TypeError, match="lr must be"):
        ftcourse.fine_tune(task, seed=0, steps=1, lr="fast")
    probe, _ = ftcourse.linear_probe(task, seed=0, steps=5)
    lpft, _ = ftcourse.lp_ft(task, seed=0, steps=5, lr=0.0)  # lr 0: the second stage changes no weight
    assert torch.allclose(lpft.fc.weight, probe.fc.weight)


def test_gradual_unfreeze_trains_the_head_first_and_everything_at_the_end():
    task = ftcourse.target_task(shots=2, seed=0)
    model, acc = ftcourse.gradual_unfreeze(task, seed=0, steps=3, lr=slice(0.001, 0.01))
    pretrained = ftcourse.load_pretrained()
    assert not torch.equal(model.conv1.weight, pretrained.conv1.weight)  # the last stage trains group 0
    assert all(p.requires_grad for p in model.parameters())
    assert 0.0 <= acc <= 1.0


def test_shifted_accuracy_reports_each_shift_and_the_mean():
    task = ftcourse.target_task(shots=2, seed=0)
    model = ftcourse.load_pretrained(5)
    accs = ftcourse.recipes.shifted_accuracy(model, task, shifts=("blur", "noise"))
    assert set(accs) == {"blur", "noise", "mean"}
    assert math.isclose(accs["mean"], (accs["blur"] + accs["noise"]) / 2)
