"""Layer groups for torchvision CNNs, and freezing that really freezes (parameters and BN statistics)."""
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision import models

import ftcourse
from ftcourse.bn import bn_stats_frozen
from ftcourse.groups import (LayerGroups, freeze, freeze_to, group_label, is_frozen, layer_groups, model_units,
                             short_group_names, trainable_summary, unfreeze, unit_groups, unit_names)
from ftcourse.tables import Table
from ftcourse.models import course_backbone, find_head


ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11_bn", "vgg16_bn", "vgg16",
         "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
         "densenet121", "regnet_y_400mf", "course_backbone"]
RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "course_backbone"]


def build(name: str) -> nn.Module:
    """A model on the meta device (structure only: instant, no memory); RegNet's builder needs real tensors."""
    with torch.device("cpu" if name.startswith("regnet") else "meta"):
        return course_backbone() if name == "course_backbone" else models.get_model(name, weights=None)


@pytest.fixture(scope="module")
def zoo():
    """Every supported architecture, built once."""
    return {name: build(name) for name in ARCHS}


@pytest.fixture
def model():
    """A fresh small ResNet in train mode."""
    torch.manual_seed(0)
    return course_backbone().train()


def ids(params):
    return [id(p) for p in params]


def group_param_ids(groups):
    return [id(p) for g in groups for m in g for p in m.parameters()]


def bn_layers(m):
    return [b for b in m.modules() if isinstance(b, _BatchNorm)]


# ---------------------------------------------------------------- units and groups
@pytest.mark.parametrize("arch", ARCHS)
def test_every_parameter_in_exactly_one_group_in_model_order(zoo, arch):
    model = zoo[arch]
    n_units = len(model_units(model))
    assert n_units >= 5
    for n in sorted({1, 2, 3, 4, n_units}):
        groups = layer_groups(model, n)
        assert len(groups) == n
        # concatenating the groups gives exactly model.parameters(): each once, in the model's order
        assert group_param_ids(groups) == ids(model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_head_is_last_group_alone(zoo, arch):
    model = zoo[arch]
    units = model_units(model)
    _, head = find_head(model)
    assert any(head is sub for m in units[-1] for sub in m.modules())
    assert not any(head is sub for u in units[:-1] for m in u for sub in m.modules())
    for n in (2, 3, len(units)):
        assert layer_groups(model, n)[-1] == units[-1]


@pytest.mark.parametrize("arch", ARCHS)
def test_groups_are_contiguous_and_even_with_earlier_groups_bigger(zoo, arch):
    model = zoo[arch]
    units = model_units(model)
    body = units[:-1]
    for n in range(2, len(units) + 1):
        groups = layer_groups(model, n)
        sizes, start = [], 0
        for g in groups[:-1]:  # each group is the next run of whole units
            k = 0
            while sum(len(u) for u in body[start:start + k]) < len(g):
                k += 1
            assert g == [m for u in body[start:start + k] for m in u]
            sizes.append(k)
            start += k
        assert start == len(body)
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("arch", RESNETS)
def test_resnet_three_groups_is_fastai_split(zoo, arch):
    m = zoo[arch]
    assert layer_groups(m, 3) == [[m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2], [m.layer3, m.layer4],
                                  [m.avgpool, m.fc]]
    assert layer_groups(m) == layer_groups(m, 3)


def test_vgg_units_are_pooling_stages(zoo):
    units = model_units(zoo["vgg16_bn"])
    assert len(units) == 6  # 5 stages ending in MaxPool2d, then the head
    assert all(isinstance(u[-1], nn.MaxPool2d) for u in units[:-1])
    assert units[-1] == [zoo["vgg16_bn"].avgpool, zoo["vgg16_bn"].classifier]


def test_n_out_of_range_names_valid_range(zoo):
    for bad in (0, 7, -1, 2.0, True):
        with pytest.raises(ValueError, match="from 1 to 6"):
            layer_groups(zoo["resnet18"], bad)


def test_unknown_architecture_explains_how_to_pass_groups():
    with pytest.raises(TypeError, match=r"ResNet.*VGG.*Sequential.*groups=\[\["):
        layer_groups(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2)))


def test_changed_model_with_parameters_outside_units_is_refused():
    m = course_backbone()
    m.extra = nn.Linear(3, 3)  # added after construction: not in any known unit
    with pytest.raises(ValueError, match="outside the known units"):
        model_units(m)


def test_group_label_uses_model_names(zoo):
    m = zoo["resnet18"]
    assert group_label([m.layer3, m.layer4], m) == "layer3, layer4"
    assert group_label([m.layer3, m.fc]) == "Sequential, Linear"
    assert "(6 modules)" in group_label(layer_groups(m)[0], m, max_names=3)


# ---------------------------------------------------------------- freezing
def test_freeze_sets_requires_grad_false_and_drops_grads(model):
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    freeze([model.conv1, model.bn1, model.layer1])
    for p in [*model.conv1.parameters(), *model.bn1.parameters(), *model.layer1.parameters()]:
        assert not p.requires_grad and p.grad is None
    assert all(p.requires_grad and p.grad is not None for p in model.layer2.parameters())


def test_frozen_bn_statistics_do_not_drift_after_train(model):
    freeze(model)
    model.train()  # the trap: model.train() would put plain BN back into training mode
    before = [b.running_mean.clone() for b in bn_layers(model)]
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert all(not b.training and bn_stats_frozen(b) for b in bn_layers(model))
    assert all(torch.equal(b0, b.running_mean) for b0, b in zip(before, bn_layers(model)))
    assert is_frozen(model)

    unfreeze(model)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert all(b.training for b in bn_layers(model))
    assert all(not torch.equal(b0, b.running_mean) for b0, b in zip(before, bn_layers(model)))
    assert all(p.requires_grad for p in model.parameters()) and not is_frozen(model)


def test_train_bn_true_keeps_bn_trainable_and_updating(model):
    freeze(model.layer1, train_bn=True)  # fastai's default behaviour
    model.train()
    for m in model.layer1.modules():
        for p in m.parameters(recurse=False):
            assert p.requires_grad == isinstance(m, _BatchNorm)
    bn = model.layer1[0].bn1
    assert bn.training and not bn_stats_frozen(bn)
    before = bn.running_mean.clone()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    assert not torch.equal(before, bn.running_mean)
    assert not is_frozen(model.layer1)


def test_train_bn_true_after_full_freeze_unpins_bn(model):
    freeze(model.layer2)
    freeze(model.layer2, train_bn=True)
    model.train()
    assert all(b.training and b.weight.requires_grad for b in bn_layers(model.layer2))
    assert not any(p.requires_grad for m in model.layer2.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())


def test_freeze_accepts_module_list_and_groups(model):
    groups = layer_groups(model)
    freeze(groups[:2])  # a list of groups
    assert all(is_frozen(m) for g in groups[:2] for m in g)
    assert not any(is_frozen(m) for m in groups[2] if list(m.parameters()))
    with pytest.raises(TypeError, match="nn.Module or a list of modules"):
        freeze([model.fc, "layer4"])


def test_freeze_to_fastai_meaning(model):
    groups = freeze_to(model, -1)
    assert len(groups) == 3
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert trainable == ids(model.fc.parameters())
    assert all(bn_stats_frozen(b) for b in bn_layers(model))

    freeze_to(model, 1)
    assert is_frozen(model.layer2) and not is_frozen(model.layer3) and not is_frozen(model.fc)
    assert not any(bn_stats_frozen(b) for b in bn_layers(model.layer3))

    freeze_to(model, 0)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(bn_stats_frozen(b) for b in bn_layers(model))

    freeze_to(model, 3)
    assert is_frozen(model)


def test_freeze_to_validates_n_against_groups(model):
    for bad in (4, -4, 1.5):
        with pytest.raises(ValueError, match="from -3 to 3 for 3 groups"):
            freeze_to(model, bad)


def test_freeze_to_with_groups_by_hand(model):
    m = model
    groups = [[m.conv1, m.bn1, m.layer1, m.layer2, m.layer3], [m.layer4], [m.fc]]
    assert freeze_to(m, 2, groups=groups) == groups
    assert {id(p) for p in m.parameters() if p.requires_grad} == set(ids(m.fc.parameters()))


def test_freeze_to_train_bn_keeps_backprop_through_body(model):
    freeze_to(model, -1, train_bn=True)
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    # BN affine parameters in the "frozen" body get gradients: backprop runs through the whole body
    assert model.bn1.weight.grad is not None and model.conv1.weight.grad is None
    assert model.layer1[0].conv1.weight.grad is None


@pytest.mark.parametrize("arch", ARCHS)
def test_freeze_to_head_only_on_every_architecture(zoo, arch):
    model = zoo[arch]
    try:
        freeze_to(model, -1)
        head = model_units(model)[-1]
        head_ids = {id(p) for m in head for p in m.parameters()}
        assert {id(p) for p in model.parameters() if p.requires_grad} == head_ids
        assert all(bn_stats_frozen(b) for m in model_units(model)[:-1] for u in m for b in bn_layers(u))
    finally:
        unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(bn_stats_frozen(b) for b in bn_layers(model))


# ---------------------------------------------------------------- summary
def test_trainable_summary_counts(model):
    freeze_to(model, -1)
    table = trainable_summary(model, layer_groups(model))
    assert isinstance(table, Table)
    rows = table.rows
    assert [r["group"] for r in rows] == ["0", "1", "2", "total"]
    assert rows[-1]["params"] == sum(p.numel() for p in model.parameters())
    assert rows[-1]["trainable"] == rows[2]["trainable"] == sum(p.numel() for p in model.fc.parameters())
    assert rows[0]["trainable"] == rows[1]["trainable"] == 0
    assert rows[0]["bn_layers"] == rows[0]["bn_pinned_eval"] == len(bn_layers(model.layer1)) + 1 + len(
        bn_layers(model.layer2))
    assert rows[-1]["bn_train_mode"] == 0
    assert table.warnings == []
    text = str(table)
    assert "bn_pinned_eval" in text and "layer3, layer4" in text and f"{rows[-1]['params']:,}" in text
    assert text.count("\n") >= 5 and "<table>" in table._repr_html_() and repr(table) == text


def test_trainable_summary_per_child_and_uncovered_warning(model):
    table = trainable_summary(model)
    assert [r["group"] for r in table.rows] == [n for n, _ in model.named_children()] + ["total"]
    assert sum(r["params"] for r in table.rows[:-1]) == table.rows[-1]["params"]
    assert table.rows[-1]["bn_train_mode"] == len(bn_layers(model))
    with pytest.raises(ValueError, match="27 parameter tensor.* in no group"):
        trainable_summary(model, [[model.layer4], [model.fc]])


def test_unit_groups_and_names(model):
    assert unit_names(model) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert len(unit_groups(model)) == 6


def test_short_group_names(model):
    assert short_group_names(model, layer_groups(model, 3)) == ["stem-layer2", "layer3-layer4", "head"]
    assert short_group_names(model, unit_groups(model)) == unit_names(model)



def test_freeze_to_refuses_groups_of_another_model_or_that_leave_parameters_out(model):
    """Both used to pass silently: the first froze the other model, the second left layer1-4 trainable."""
    other = ftcourse.course_backbone(num_classes=5)
    with pytest.raises(ValueError, match="not in this ResNet"):
        freeze_to(model, 1, groups=layer_groups(other))
    assert all(p.requires_grad for p in model.parameters()) and all(p.requires_grad for p in other.parameters())
    with pytest.raises(ValueError, match="in no group"):
        freeze_to(model, 1, groups=[[model.conv1], [model.fc]])
    assert all(p.requires_grad for p in model.parameters())


def test_layer_groups_are_made_once_and_passed_along(model):
    groups = layer_groups(model, 3)
    assert isinstance(groups, LayerGroups) and groups.model is model and len(groups) == 3
    assert groups.names == ["stem-layer2", "layer3-layer4", "head"] and "3 groups" in repr(groups)
    assert freeze_to(model, -1, groups=groups) is groups  # checked, not cut again
    assert LayerGroups.of(model, groups) is groups and type(groups[1:]) is list  # a slice is part of the model
    by_hand = LayerGroups(model, [[model.conv1, model.bn1, model.layer1], [model.layer2, model.layer3, model.layer4],
                                  [model.fc]], names=["low", "high", "head"])
    assert by_hand.names == ["low", "high", "head"] and freeze_to(model, 1, groups=by_hand).names == by_hand.names
    model.fc = torch.nn.Linear(model.fc.in_features, 3)  # a new head after the groups were made: they are stale
    with pytest.raises(ValueError, match="not in this ResNet"):
        freeze_to(model, -1, groups=groups)
    with pytest.raises(ValueError, match="groups is empty"):
        LayerGroups(model, [])
