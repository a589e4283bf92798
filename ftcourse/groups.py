"""Layer groups of torchvision CNNs, and freezing them properly (parameters *and* BatchNorm statistics).

A model is cut into ordered "units" (stem, stages, head), and the units into a few contiguous
"layer groups" (fastai's word): `freeze_to(model, 1)` freezes group 0, `param_groups` gives each
group its own learning rate. A group is a plain list of modules, so you can always write one by hand:
`groups = [[m.conv1, m.bn1, m.layer1], [m.layer2, m.layer3, m.layer4], [m.fc]]`.
"""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision import models as tvm

from .bn import bn_stats_frozen, freeze_bn_stats, unfreeze_bn_stats
from .tables import Table

__all__ = [
    "N_GROUPS", "SUPPORTED_ARCHITECTURES", "model_units", "body_units", "layer_groups", "group_label",
    "short_group_names", "freeze", "unfreeze", "freeze_to", "is_frozen", "trainable_summary", "flatten_modules",
    "params_of", "group_params", "unit_groups", "unit_names",
]

N_GROUPS = 3  # the default number of layer groups everywhere (fastai's split of a ResNet: body in two, head)

SUPPORTED_ARCHITECTURES = (tvm.ResNet, tvm.VGG, tvm.MobileNetV2, tvm.MobileNetV3, tvm.EfficientNet,
                           tvm.ConvNeXt, tvm.DenseNet, tvm.RegNet)

_BY_HAND = ("pass the groups by hand, as lists of modules from input to output, e.g. "
            "groups=[[m.conv1, m.bn1, m.layer1], [m.layer2, m.layer3], [m.fc]] "
            "to freeze_to(model, n, groups=groups) or param_groups(groups, lr)")


# ---------------------------------------------------------------- units and groups
def _vgg_stages(features: nn.Sequential) -> list[list[nn.Module]]:
    """VGG's flat `features` cut after each MaxPool2d: one unit per resolution stage."""
    stages, current = [], []
    for layer in features.children():
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(current)
            current = []
    return stages + ([current] if current else [])


def _densenet_units(f: nn.Sequential) -> list[list[nn.Module]]:
    """DenseNet: the stem, then each dense block with the transition (or final norm) after it."""
    units = [[f.conv0, f.norm0, f.relu0, f.pool0]]
    for i in range(1, 5):
        after = getattr(f, f"transition{i}") if i < 4 else f.norm5
        units.append([getattr(f, f"denseblock{i}"), after])
    return units


def _units_by_architecture(model: nn.Module) -> list[list[nn.Module]]:
    """The units of a supported torchvision model, input to output, head last."""
    m = model
    if isinstance(m, tvm.ResNet):
        return [[m.conv1, m.bn1, m.relu, m.maxpool], [m.layer1], [m.layer2], [m.layer3], [m.layer4],
                [m.avgpool, m.fc]]
    if isinstance(m, tvm.RegNet):
        return [[m.stem], *[[stage] for stage in m.trunk_output.children()], [m.avgpool, m.fc]]
    if isinstance(m, tvm.VGG):
        return [*_vgg_stages(m.features), [m.avgpool, m.classifier]]
    if isinstance(m, tvm.DenseNet):
        return [*_densenet_units(m.features), [m.classifier]]
    if isinstance(m, (tvm.MobileNetV2, tvm.MobileNetV3, tvm.EfficientNet, tvm.ConvNeXt)):
        head = [m.avgpool, m.classifier] if hasattr(m, "avgpool") else [m.classifier]
        return [*[[stage] for stage in m.features.children()], head]
    names = ", ".join(c.__name__ for c in SUPPORTED_ARCHITECTURES)
    raise TypeError(f"layer groups are known for torchvision's {names} (and subclasses), "
                    f"not for {type(model).__name__}; {_BY_HAND}")


def flatten_modules(modules) -> list[nn.Module]:
    """A module, or (nested) lists of modules, as one flat list of modules."""
    if isinstance(modules, nn.Module):
        return [modules]
    if isinstance(modules, (str, bytes)) or not isinstance(modules, Iterable):
        raise TypeError(f"expected an nn.Module or a list of modules, got {type(modules).__name__}")
    return [m for item in modules for m in flatten_modules(item)]


def params_of(modules) -> list[nn.Parameter]:
    """Every parameter of the modules, each once, in module order."""
    seen, out = set(), []
    for m in flatten_modules(modules):
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def model_units(model: nn.Module) -> list[list[nn.Module]]:
    """The model cut into its natural units, input to output; each unit is a list of modules, the last one the head.

    ResNet: [[conv1, bn1, relu, maxpool], [layer1], [layer2], [layer3], [layer4], [avgpool, fc]].
    Models with a `features` Sequential get one unit per child of `features` (VGG: one per
    MaxPool-ended stage; DenseNet: the stem, then each dense block with its transition).
    """
    units = _units_by_architecture(model)
    covered = {id(p) for p in params_of(units)}
    missing = [n for n, p in model.named_parameters() if id(p) not in covered]
    if missing:
        raise ValueError(f"{type(model).__name__} has parameters outside the known units "
                         f"(e.g. {missing[:3]}): it was changed after construction; {_BY_HAND}")
    return units


def layer_groups(model: nn.Module, n_groups: int = N_GROUPS) -> list[list[nn.Module]]:
    """`n_groups` contiguous groups of modules, input to output: the head alone last, the body split evenly before it.

    ResNet with n=3: [[conv1, bn1, relu, maxpool, layer1, layer2], [layer3, layer4], [avgpool, fc]]
    (fastai's split). Earlier groups take the extra units when the body does not split evenly.
    """
    units = model_units(model)
    n = n_groups
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(units):
        raise ValueError(f"n_groups must be an int from 1 to {len(units)} for this {type(model).__name__} "
                         f"({len(units)} units: stem/stages and head), got {n!r}")
    if n == 1:
        return [[m for unit in units for m in unit]]
    body, head = units[:-1], units[-1]
    size, extra = divmod(len(body), n - 1)
    groups, start = [], 0
    for i in range(n - 1):
        stop = start + size + (1 if i < extra else 0)
        groups.append([m for unit in body[start:stop] for m in unit])
        start = stop
    return groups + [list(head)]


def group_label(group, model: nn.Module | None = None, max_names: int = 6) -> str:
    """A short readable name for a group of modules: their names in the model (class names without a model)."""
    names = {id(m): n for n, m in model.named_modules()} if model is not None else {}
    labels = [names.get(id(m)) or type(m).__name__ for m in flatten_modules(group)]
    if len(labels) > max_names:
        return f"{labels[0]}, {labels[1]} ... {labels[-1]} ({len(labels)} modules)"
    return ", ".join(labels)


# ---------------------------------------------------------------- freezing
def freeze(modules, train_bn: bool = False) -> None:
    """Freeze modules for real: no parameter trainable (grads dropped) and BN running statistics pinned.

    `modules`: a module, a list of modules, or a list of groups. With `train_bn=True` (fastai's
    default) BatchNorm layers are left alone: affine parameters trainable, statistics updating in
    train mode. The BN pin survives `model.train()`; `unfreeze` removes it.
    """
    for module in flatten_modules(modules):
        for sub in module.modules():
            keep_bn = train_bn and isinstance(sub, _BatchNorm)
            for p in sub.parameters(recurse=False):
                p.requires_grad_(keep_bn)
                if not keep_bn:
                    p.grad = None  # a None grad is skipped by optimizers (a zero grad still gets weight decay)
            if keep_bn:
                unfreeze_bn_stats(sub)
        if not train_bn:
            freeze_bn_stats(module)


def unfreeze(modules) -> None:
    """Make every parameter trainable again and unpin BN layers (they follow the next model.train()/eval())."""
    for module in flatten_modules(modules):
        for p in module.parameters():
            p.requires_grad_(True)
        unfreeze_bn_stats(module)


def is_frozen(module: nn.Module) -> bool:
    """True if nothing in the module can change in training: no trainable parameter and every BN layer pinned."""
    no_grad = not any(p.requires_grad for p in module.parameters())
    return no_grad and all(bn_stats_frozen(m) for m in module.modules() if isinstance(m, _BatchNorm))


def freeze_to(model: nn.Module, n: int, groups: list | None = None, train_bn: bool = False) -> list[list[nn.Module]]:
    """fastai's freeze_to: groups before index n frozen, groups n onward trainable; returns the groups used.

    Negative n counts from the end: `freeze_to(model, -1)` trains the head only; `freeze_to(model, 0)`
    trains everything. `groups` defaults to `layer_groups(model)` (N_GROUPS groups); pass the returned
    groups on to `param_groups`, `GradientRecorder`, `update_ratios` and `trainable_summary`.
    """
    groups = layer_groups(model) if groups is None else list(groups)
    k = len(groups)
    if isinstance(n, bool) or not isinstance(n, int) or not -k <= n <= k:
        raise ValueError(f"n must be an int from {-k} to {k} for {k} groups (0 = all trainable, "
                         f"-1 = last group only, {k} = all frozen), got {n!r}")
    first_trainable = n if n >= 0 else k + n
    for i, group in enumerate(groups):
        if i >= first_trainable:
            unfreeze(group)
    for group in groups[:first_trainable]:
        freeze(group, train_bn=train_bn)
    return groups


# ---------------------------------------------------------------- summaries
def _summary_row(group: str, modules, label: str) -> dict:
    """Parameter and BN counts for one group of modules."""
    params = params_of(modules)
    bns = [b for m in flatten_modules(modules) for b in m.modules() if isinstance(b, _BatchNorm)]
    bns = list({id(b): b for b in bns}.values())
    return {"group": group, "modules": label, "params": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad), "bn_layers": len(bns),
            "bn_pinned_eval": sum(bn_stats_frozen(b) for b in bns),
            "bn_train_mode": sum(b.training for b in bns)}


def trainable_summary(model: nn.Module, groups: list | None = None) -> Table:
    """One row per group (or per top-level child): parameters, trainable parameters, BN layers and their mode."""
    if groups is None:
        rows = [_summary_row(name, child, type(child).__name__) for name, child in model.named_children()]
        own = list(model.parameters(recurse=False))
        if own:
            n = sum(p.numel() for p in own)
            rows.append({"group": "(own)", "modules": "parameters of the model itself", "params": n,
                         "trainable": sum(p.numel() for p in own if p.requires_grad)})
    else:
        rows = [_summary_row(str(i), g, group_label(g, model)) for i, g in enumerate(groups)]
    rows.append(_summary_row("total", model, type(model).__name__))
    warnings = []
    if groups is not None:
        covered = {id(p) for p in params_of(groups)}
        outside = [n for n, p in model.named_parameters() if id(p) not in covered]
        if outside:
            warnings.append(f"{len(outside)} parameter tensors are in no group, e.g. {outside[:3]}")
    return Table(rows, warnings, title=f"{type(model).__name__}: trainable parameters and BN layers")


def unit_groups(model: nn.Module) -> list[list[nn.Module]]:
    """One layer group per natural unit (ResNet: stem, layer1 .. layer4, head): the finest freeze points."""
    return layer_groups(model, len(model_units(model)))


def unit_names(model: nn.Module) -> list[str]:
    """Short names of unit_groups: the first module's name in each ('conv1' is called 'stem', the last 'head')."""
    names = [group_label(g, model).split(",")[0] for g in unit_groups(model)]
    if names and names[0] == "conv1":
        names[0] = "stem"
    return names[:-1] + ["head"]


def short_group_names(model: nn.Module, groups: list) -> list[str]:
    """Short names of layer groups from their units: ['stem-layer2', 'layer3-layer4', 'head'] for a ResNet in 3."""
    first = {id(g[0]): name for g, name in zip(unit_groups(model), unit_names(model))}
    out = []
    for group in groups:
        names = [first[id(m)] for m in flatten_modules(group) if id(m) in first]
        out.append(names[0] if len(names) == 1 else f"{names[0]}-{names[-1]}" if names else "?")
    return out


group_params = params_of  # the old name of params_of, kept working
body_units = model_units  # the old name of model_units (it returns the head too), kept working
