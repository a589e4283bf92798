"""ftcourse.recipes: the baselines, LP-FT, gradual unfreezing; and ftcourse.explore's short runs (the explorers')."""
import math

import numpy as np
import pytest
import torch

import ftcourse


def test_fine_tune_takes_per_group_rates_and_lp_ft_starts_from_the_probe():
    task = ftcourse.target_task(shots=2, seed=0)
    model, acc = ftcourse.fine_tune(task, seed=0, steps=2, lr=np.array([0.0, 0.0, 0.01]))
    pretrained = ftcourse.load_pretrained()
    assert torch.equal(model.conv1.weight, pretrained.conv1.weight)  # groups 0 and 1 at rate 0 did not move
    assert torch.equal(model.layer4[0].conv1.weight, pretrained.layer4[0].conv1.weight)
    assert acc == ftcourse.evaluate(model, (task.x_test, task.y_test))  # the returned model's test accuracy
    assert ftcourse.fine_tune(task, seed=0, steps=2, lr=np.array([0.0, 0.0, 0.01]))[1] == acc  # seeded: it repeats
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
    assert acc == ftcourse.evaluate(model, (task.x_test, task.y_test))  # the returned model's test accuracy


def test_shifted_accuracy_reports_each_shift_and_the_mean():
    task = ftcourse.target_task(shots=2, seed=0)
    model = ftcourse.load_pretrained(5)
    accs = ftcourse.recipes.shifted_accuracy(model, task, shifts=("blur", "noise"))
    assert set(accs) == {"blur", "noise", "mean"}
    assert math.isclose(accs["mean"], (accs["blur"] + accs["noise"]) / 2)
