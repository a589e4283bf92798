"""ftcourse.grads: GradientRecorder against direct norms, update ratios, the gradient into the body."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18

from ftcourse import GradientRecorder, body_gradient, freeze_to, layer_groups, snapshot, unfreeze, update_ratios
import ftcourse
from ftcourse.groups import params_of


def backward(model, batch):
    F.cross_entropy(model(batch[0]), batch[1]).backward()


def group_grad_norms(model, groups):
    """Reference: the L2 norm of each group's .grad, computed directly."""
    out = []
    for g in groups:
        grads = [p.grad.double().flatten() for p in params_of(g) if p.grad is not None]
        out.append(float(torch.cat(grads).norm()) if grads else math.nan)
    return out


def test_recorder_matches_direct_group_norms(model, batch):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    groups = layer_groups(model, 3)
    with GradientRecorder(model) as rec:
        for _ in range(3):
            opt.zero_grad()
            backward(model, batch)
            expected = group_grad_norms(model, groups)
            opt.step()
            assert rec.step() == pytest.approx(expected, rel=1e-5)
    assert rec.as_array().shape == (3, 3)
    assert np.isfinite(rec.as_array()).all() and (rec.as_array() > 0).all()
    assert rec.frozen == [False, False, False]
    assert rec.group_names == ["stem-layer2", "layer3-layer4", "head"] == groups.names  # named once, by the groups


def test_recorder_runs_on_resnet18_and_checks_names(batch):
    model = resnet18(weights=None, num_classes=5)
    with GradientRecorder(model) as rec:
        backward(model, batch)
        rec.step()
    assert rec.as_array().shape == (1, 3)
    with pytest.raises(ValueError, match="names has 2 entries but there are 3 groups"):
        GradientRecorder(model, names=["a", "b"])


def test_frozen_groups_record_nan_and_are_flagged(model, batch):
    freeze_to(model, -1)
    rec = GradientRecorder(model)
    backward(model, batch)
    row = rec.step()
    assert math.isnan(row[0]) and math.isnan(row[1]) and row[2] > 0
    assert rec.frozen == [True, True, False]
    unfreeze(layer_groups(model)[1])  # gradual unfreezing: the new trainable group gets its hooks at the next step()
    rec.step()  # an empty step (no backward): everything NaN
    assert np.isnan(rec.as_array()[1]).all()
    model.zero_grad()
    backward(model, batch)
    assert math.isnan(rec.step()[0]) and rec.history[-1][1] > 0
    assert rec.frozen == [True, False, False]
    rec.remove()


def test_gradient_accumulation_records_the_accumulated_gradient(model, batch):
    groups = [[model.conv1, model.bn1, model.layer1], [model.layer2, model.layer3, model.layer4, model.fc]]
    rec = GradientRecorder(model, groups=groups, names=["up to layer1", "the rest"])
    backward(model, batch)
    backward(model, (batch[0].flip(0), batch[1].flip(0)))
    expected = group_grad_norms(model, groups)
    assert rec.step() == pytest.approx(expected, rel=1e-5)
    assert rec.group_names == ["up to layer1", "the rest"]


def test_recorder_refuses_groups_of_another_model_or_that_leave_parameters_out(model):
    other = ftcourse.course_backbone(num_classes=5)
    with pytest.raises(ValueError, match="not in this ResNet"):
        GradientRecorder(model, groups=layer_groups(other))
    with pytest.raises(ValueError, match="in no group"):
        GradientRecorder(model, groups=[[model.layer1], [model.fc]])


def test_optimizer_hook_records_every_step_and_remove_stops_recording(model, batch):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = GradientRecorder(model, optimizer=opt)
    for _ in range(2):
        opt.zero_grad()
        backward(model, batch)
        opt.step()
    assert len(rec.history) == 2
    rec.remove()
    backward(model, batch)
    opt.step()
    assert len(rec.history) == 2 and rec._current == {} and "0 hooks" in repr(rec)


def test_snapshot_is_a_detached_clone(model):
    snap = snapshot(model)
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    assert not torch.equal(snap["fc.weight"], model.fc.weight)
    assert "bn1.running_mean" in snap and not snap["fc.weight"].requires_grad


def test_update_ratios_per_group(model):
    groups = layer_groups(model)
    before = snapshot(model)
    with torch.no_grad():
        model.fc.weight.mul_(1.5)  # ||dW|| = 0.5 ||W|| for this tensor
    r = update_ratios(before, model, groups)
    w, b = before["fc.weight"], before["fc.bias"]
    assert r[0] == 0 and r[1] == 0
    assert r[2] == pytest.approx(0.5 * float(w.norm()) / float(torch.cat([w.flatten(), b]).norm()), rel=1e-6)
    assert update_ratios(before, model) == pytest.approx(r)  # default groups: layer_groups(model, 3)


def test_smaller_learning_rate_gives_smaller_update(model, batch):
    ratios = []
    for lr in (1e-3, 1e-1):
        m = copy.deepcopy(model)
        before = snapshot(m)
        opt = torch.optim.SGD(m.parameters(), lr=lr)
        backward(m, batch)
        opt.step()
        ratios.append(update_ratios(before, m, layer_groups(m)))
    assert all(0 < lo < hi for lo, hi in zip(*ratios))


def test_body_gradient_matches_autograd_by_hand(model, batch):
    model.train()
    reference = copy.deepcopy(model)
    got = body_gradient(model, *batch)
    loss = F.cross_entropy(reference(batch[0]), batch[1])
    loss.backward()
    body = [p.grad.double().flatten() for n, p in reference.named_parameters() if not n.startswith("fc")]
    assert math.isclose(got["body_grad_norm"], float(torch.cat(body).norm()), rel_tol=1e-5)
    assert math.isclose(got["loss"], loss.item(), rel_tol=1e-6)
    assert math.isclose(got["head_weight_norm"], float(model.fc.weight.norm()), rel_tol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # gradients cleared, nothing stepped


def test_body_gradient_scales_with_the_head_weights(model, batch):
    """d loss / d features = W^T (softmax - onehot) / B: a zero head sends nothing into the body."""
    model.train()
    with torch.no_grad():
        model.fc.weight.zero_()
    assert body_gradient(model, *batch)["body_grad_norm"] == 0.0
