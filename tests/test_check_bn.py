"""Lesson 04's exercise checkers accept right answers and reject wrong ones."""
import copy

import pytest
import torch

import ftcourse as fc
import ftcourse.check as check


@pytest.fixture(scope="module")
def model():
    return fc.load_pretrained()


def test_bn_scale_shift(model, capsys):
    b = model.layer2[0].bn2
    check.bn_scale_shift(None, None, b)
    assert "Not attempted" in capsys.readouterr().out
    with torch.no_grad():
        scale = b.weight / torch.sqrt(b.running_var + b.eps)
        shift = b.bias - b.running_mean * scale
    check.bn_scale_shift(scale, shift, b)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Hint"):
        check.bn_scale_shift(b.weight / torch.sqrt(b.running_var), shift + 0.1, b)
    with pytest.raises(AssertionError, match="shape"):
        check.bn_scale_shift(scale[:3], shift, b)


def test_folded_conv(model, capsys):
    c, b = model.layer2[0].conv2, model.layer2[0].bn2
    with torch.no_grad():
        s = b.weight / torch.sqrt(b.running_var + b.eps)
        weight, bias = c.weight * s.view(-1, 1, 1, 1), b.bias - b.running_mean * s
    check.folded_conv(weight, bias, c, b)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="off by"):
        check.folded_conv(c.weight, bias, c, b)


def test_adabn_adapted(model, capsys):
    probe = fc.load_pretrained()
    task = fc.target_task(shots=5, seed=0, shift="colour")
    test = (task.x_test[:200], task.y_test[:200])
    with pytest.raises(AssertionError, match="copy"):
        check.adabn_adapted(probe, probe, test)
    untouched = copy.deepcopy(probe)
    with pytest.raises(AssertionError, match="pretrained statistics"):
        check.adabn_adapted(untouched, probe, test)
    changed = copy.deepcopy(probe)
    with torch.no_grad():
        changed.fc.weight.add_(1.0)
    with pytest.raises(AssertionError, match="weights changed"):
        check.adabn_adapted(changed, probe, test)
