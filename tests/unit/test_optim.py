"""param_groups (one learning rate per layer group) and describe_param_groups (what an optimizer holds)."""
import numpy as np
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision import models

from ftcourse.groups import freeze_to, layer_groups, unfreeze
from ftcourse.models import course_backbone, replace_head
from ftcourse.optim import (describe_param_groups, even_mults, layerwise_lrs, lrs_for, param_groups, rate_count,
                            ulmfit_lrs)


NAMES = ["resnet18", "resnet50", "course_backbone"]


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    return {"resnet18": models.resnet18(weights=None, num_classes=5),
            "resnet50": models.resnet50(weights=None, num_classes=5), "course_backbone": course_backbone()}


@pytest.fixture(params=NAMES)
def model(request, built):
    """Each test model, fully trainable again."""
    m = built[request.param]
    unfreeze(m)
    return m.train()


@pytest.fixture
def small():
    torch.manual_seed(0)
    return course_backbone().train()


def held_ids(groups):
    return [id(p) for g in groups for p in g["params"]]


def trainable_ids(model):
    return {id(p) for p in model.parameters() if p.requires_grad}


def assert_each_trainable_once(model, groups):
    ids = held_ids(groups)
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == trainable_ids(model), "frozen parameter held or trainable one missing"


# ---------------------------------------------------------------- learning rates
@pytest.mark.parametrize("lr, expected", [
    (1e-3, [1e-3]),
    ([1e-4, 1e-3, 1e-2], [1e-4, 1e-3, 1e-2]),
    (np.array([1e-4, 1e-3, 1e-2]), [1e-4, 1e-3, 1e-2]),
    (slice(1e-4, 1e-2), [1e-4, 1e-3, 1e-2]),
    (slice(None, 1e-2), [1e-3, 1e-3, 1e-2]),
    ([1e-5, 1e-4, 1e-3, 1e-2, 1e-1], [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]),
])
def test_lr_forms(model, lr, expected):
    groups = param_groups(model, lr, weight_decay=0.01)
    assert [g["lr"] for g in groups] == pytest.approx(expected, rel=1e-9)
    assert all(g["weight_decay"] == 0.01 for g in groups)
    assert_each_trainable_once(model, groups)
    layers = layer_groups(model, len(expected))
    for g, modules in zip(groups, layers):  # group k holds exactly layer group k, in order
        assert [id(p) for p in g["params"]] == [id(p) for m in modules for p in m.parameters()]
    assert groups[-1]["name"].startswith(f"group {len(expected) - 1} (of {len(expected)})")


def test_three_groups_are_named_after_resnet_modules(built):
    names = [g["name"] for g in param_groups(built["resnet18"], slice(1e-4, 1e-2))]
    assert names == ["group 0 (of 3): conv1, bn1, relu, maxpool, layer1, layer2", "group 1 (of 3): layer3, layer4",
                     "group 2 (of 3): avgpool, fc"]


def test_wrong_length_says_how_many_groups(small):
    groups = layer_groups(small)
    with pytest.raises(ValueError, match=r"lr has 2 values but there are 3 groups \(0: conv1.*1: layer3, layer4"):
        param_groups(groups, [1e-3, 1e-2], model=small)
    with pytest.raises(ValueError, match="lr has 2 values but there are 4 groups"):
        param_groups(small, [1e-3, 1e-2], n_groups=4)
    with pytest.raises(ValueError, match="cannot make 7 layer groups.*from 1 to 6"):
        param_groups(small, [1e-3] * 7)


def test_bad_lr_values_are_refused(small):
    with pytest.raises(ValueError, match=">= 0"):
        param_groups(small, -1e-3)
    with pytest.raises(TypeError, match="lr must be"):
        param_groups(small, "1e-3")
    with pytest.raises(ValueError, match="slice"):
        param_groups(small, slice(1e-4, 1e-2, 2))
    with pytest.raises(ValueError, match="n_groups is for a model"):
        param_groups(layer_groups(small), 1e-3, n_groups=3)


def test_frozen_parameters_left_out_and_empty_groups_dropped(model):
    freeze_to(model, 1)
    groups = param_groups(model, slice(1e-4, 1e-2))
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2])  # the rates of groups 1 and 2 are kept
    assert groups[0]["name"].startswith("group 1 (of 3)")
    assert_each_trainable_once(model, groups)
    freeze_to(model, 3)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 1e-3)


def test_groups_by_hand(small):
    m = small
    groups = [[m.conv1, m.bn1, m.layer1], [m.layer2, m.layer3, m.layer4], m.fc]
    out = param_groups(groups, [1e-4, 1e-3, 1e-2], model=m)
    assert [g["name"] for g in out][-1] == "group 2 (of 3): fc"
    assert_each_trainable_once(m, out)
    # a parameter shared by two hand-made groups is held once, by the first
    out = param_groups([[m.layer4], [m.layer4, m.fc]], 1e-3)
    assert len(held_ids(out)) == len(set(held_ids(out)))
    assert out[1]["name"] == "group 1 (of 2): Sequential, Linear"


def test_bn_weight_decay_splits_norm_weights_and_biases(model):
    out = param_groups(model, slice(1e-4, 1e-2), weight_decay=0.05, bn_weight_decay=0.0)
    assert len(out) == 6 and [g["lr"] for g in out[::2]] == pytest.approx([1e-4, 1e-3, 1e-2])
    assert_each_trainable_once(model, out)
    no_decay = {id(p) for m in model.modules() for n, p in m.named_parameters(recurse=False)
                if isinstance(m, _BatchNorm) or n == "bias"}
    for g in out:
        is_nd = g["name"].endswith("[norm weights, biases]")
        assert g["weight_decay"] == (0.0 if is_nd else 0.05)
        assert all((id(p) in no_decay) == is_nd for p in g["params"])


@pytest.mark.parametrize("name, opt_class", [("course_backbone", torch.optim.SGD),
                                              ("course_backbone", torch.optim.AdamW), ("resnet18", torch.optim.SGD)])
def test_optimizer_built_from_groups_steps(built, name, opt_class):
    model = built[name]
    unfreeze(model)
    model.train()
    freeze_to(model, 1)
    opt = opt_class(param_groups(model, np.array([1e-4, 1e-3, 1e-2]), weight_decay=0.01), lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-2])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(before[n], p)
        assert moved == p.requires_grad, n  # trainable ones moved, frozen ones did not
    assert describe_param_groups(opt, model).warnings == []


def test_layerwise_and_ulmfit_rates():
    assert layerwise_lrs(4, 1e-2, 0.5) == pytest.approx([1.25e-3, 2.5e-3, 5e-3, 1e-2])
    assert ulmfit_lrs(3, 1e-2) == pytest.approx([1e-2 / 2.6**2, 1e-2 / 2.6, 1e-2])
    assert even_mults(1e-4, 1e-2, 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert even_mults(1e-4, 1e-2, 1) == [1e-2]
    with pytest.raises(ValueError):
        layerwise_lrs(0, 1e-2, 0.5)
    with pytest.raises(ValueError):
        ulmfit_lrs(3, 1e-2, factor=0)


# ---------------------------------------------------------------- describe_param_groups
def test_describe_clean_optimizer(small):
    freeze_to(small, 1)
    opt = torch.optim.SGD(param_groups(small, slice(1e-4, 1e-2)), lr=0.1)
    report = describe_param_groups(opt, small)
    assert report.warnings == []
    assert [r["lr"] for r in report.rows] == pytest.approx([1e-3, 1e-2])
    assert sum(r["scalars"] for r in report.rows) == sum(p.numel() for p in small.parameters() if p.requires_grad)
    assert sum(r["tensors"] for r in report.rows) == len(trainable_ids(small))
    bn_tensors = sum(len(list(m.parameters())) for m in [*small.layer3.modules(), *small.layer4.modules()]
                     if isinstance(m, _BatchNorm))
    assert report.rows[0]["bn_tensors"] == bn_tensors and report.rows[1]["bn_tensors"] == 0
    assert report.rows[0]["frozen"] == 0
    text = str(report)
    assert "SGD: 2 group(s)" in text and "layer3, layer4" in text and "WARNING" not in text
    assert describe_param_groups(opt).rows[0]["bn_tensors"] == "?"


def test_describe_catches_frozen_parameter_in_optimizer(small):
    opt = torch.optim.SGD(small.parameters(), lr=0.1, weight_decay=1e-4)
    freeze_to(small, -1)  # frozen after the optimizer was built: it still holds them
    report = describe_param_groups(opt, small)
    assert report.rows[0]["frozen"] == len(list(small.parameters())) - 2
    assert len(report.warnings) == 1 and "frozen tensor(s)" in report.warnings[0]
    assert "conv1.weight" in report.warnings[0]


def test_describe_catches_duplicate_parameter(small):
    groups = param_groups(small, [1e-3, 1e-2], n_groups=2)
    groups[1]["params"].append(small.conv1.weight)  # torch.optim would refuse this list at construction
    report = describe_param_groups(groups, small)
    assert report.title.startswith("param groups")
    assert len(report.warnings) == 1 and "held more than once" in report.warnings[0]
    assert "conv1.weight in groups [0, 1]" in report.warnings[0]


def test_describe_catches_missing_and_foreign_parameters(small):
    opt = torch.optim.AdamW(param_groups(small, slice(1e-4, 1e-2)))
    replace_head(small, 3)  # the classic bug: new head made after the optimizer
    report = describe_param_groups(opt, small)
    assert any("2 trainable tensor(s) of the model are in no group" in w and "fc.weight" in w for w in report.warnings)
    assert any("2 tensor(s) held are not parameters of this model" in w for w in report.warnings)
    assert "WARNING" in str(report) and "<table>" in report._repr_html_()


def test_describe_missing_group(small):
    groups = param_groups(small, slice(1e-4, 1e-2))
    del groups[1]  # one group forgotten: layer3 and layer4 never trained
    report = describe_param_groups(torch.optim.SGD(groups, lr=0.1), small)
    assert len(report.warnings) == 1 and "layer3.0.conv1.weight" in report.warnings[0]


def test_one_validator_behind_the_warnings_and_the_checker(small):
    """describe_param_groups' warnings are exactly param_group_problems; the checker raises the same first one."""
    import ftcourse.check as check
    from ftcourse.optim import param_group_problems

    groups = param_groups(small, [1e-3, 1e-2], n_groups=2)
    groups[0]["params"] = groups[0]["params"] + groups[1]["params"][:1]  # one tensor in two groups
    problems = param_group_problems(groups, small)
    assert describe_param_groups(groups, small).warnings == problems and "more than once" in problems[0]
    with pytest.raises(AssertionError, match="more than once"):
        check.param_groups_match(groups, small, [1e-3, 1e-2])



@pytest.mark.parametrize("lr, count, rates", [
    (0.01, None, [0.01, 0.01, 0.01]), ([1e-3, 1e-2, 1e-1], 3, [1e-3, 1e-2, 1e-1]),
    (np.array([1e-4, 1e-2]), 2, None), (torch.tensor([0.1, 0.2, 0.3]), 3, [0.1, 0.2, 0.3]),
    (slice(1e-4, 1e-2), 3, [1e-4, 1e-3, 1e-2]), (slice(None, 1e-1), 3, [1e-2, 1e-2, 1e-1]),
])
def test_a_rate_spec_is_read_in_one_place(lr, count, rates):
    assert rate_count(lr) == count
    if rates is not None:
        assert lrs_for(lr, 3) == pytest.approx(rates)


def test_lrs_for_names_the_groups_when_the_count_is_wrong(model):
    groups = layer_groups(model, 3)
    with pytest.raises(ValueError, match=r"2 values but there are 3 groups \(0: stem-layer2; 1: layer3-layer4; 2: head\)"):
        lrs_for([0.1, 0.2], groups)
    with pytest.raises(TypeError, match="a count"):
        lrs_for(0.1, 3.0)


def test_param_groups_refuses_a_model_that_is_not_the_groups_model(model):
    other = course_backbone(num_classes=5)
    with pytest.raises(ValueError, match="not the model these layer groups were made from"):
        param_groups(layer_groups(other, 3), 0.01, model=model)
