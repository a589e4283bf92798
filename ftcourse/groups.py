"""Layer groups of torchvision CNNs, and freezing them properly (parameters *and* BatchNorm statistics).

A model is cut into ordered "units" (stem, stages, head), and the units into a few contiguous
"layer groups" (fastai's word). `layer_groups(model, n_groups)` returns a `LayerGroups`: a list of
groups (each a list of modules, input to output) that also knows its model and its groups' names, and
is checked once when made: every parameter of the model in exactly one group, none from another
model. Pass it on: `freeze_to(model, n, groups)`, `param_groups(groups, lr)`, `GradientRecorder`,
`update_ratios`, `freeze_audit` and `trainable_summary` take it as it is and never cut the model again.
You can write groups by hand (`LayerGroups(m, [[m.conv1, m.bn1, m.layer1], [m.layer2, m.layer3, m.layer4],
[m.fc]])`, or the plain lists); every function that takes groups checks them against its model.

Words used everywhere: `n_groups` is a count of groups; `n` is the index of the first trainable group
(`freeze_to(model, n)`: groups before index n frozen, as fastai's `freeze_to(n)`).
"""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision import models as tvm

from .bn import bn_stats_frozen, freeze_bn_stats, unfreeze_bn_stats
from .inputs import require_int
from .tables import Table

__all__ = [
    "N_GROUPS", "SUPPORTED_ARCHITECTURES", "LayerGroups", "group_problems", "model_units", "layer_groups",
    "group_label", "short_group_names", "freeze", "unfreeze", "freeze_to", "is_frozen", "trainable_summary",
    "flatten_modules", "params_of", "unit_groups", "unit_names",
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


# ---------------------------------------------------------------- the layer groups of one model
def group_problems(model: nn.Module, groups, trainable_only: bool = False) -> list[str]:
    """What keeps `groups` from being layer groups of `model`: foreign, duplicated or missing parameters; [] if none.

    The one check every function that takes groups relies on. `trainable_only`: only trainable parameters must
    be in a group (what an optimizer needs: `param_groups` on part of a model whose other groups are frozen).
    """
    names = {id(p): n for n, p in model.named_parameters()}
    owner: dict[int, int] = {}
    for i, group in enumerate(groups):
        for p in params_of(group):
            if id(p) not in names:
                return [f"group {i} holds a parameter of shape {tuple(p.shape)} that is not in this "
                        f"{type(model).__name__} (groups of another model, or of an old head?): build the groups "
                        "from this model, e.g. ftcourse.layer_groups(model)"]
            if owner.setdefault(id(p), i) != i:
                return [f"{names[id(p)]} is in groups {owner[id(p)]} and {i}: each module must be in exactly one group"]
    missing = [n for n, p in model.named_parameters() if id(p) not in owner and (p.requires_grad or not trainable_only)]
    if missing and trainable_only:
        return [f"{len(missing)} trainable parameter(s) of the model are in no group, e.g. {missing[:3]}: add their "
                "modules to a group, or freeze them first (ftcourse.freeze_to / freeze)"]
    if missing:
        return [f"{len(missing)} parameter tensor(s) of the {type(model).__name__} are in no group, "
                f"e.g. {missing[:3]}: "
                "they would stay trainable and get no rate of their own; add their modules to a group "
                "(ftcourse.layer_groups(model) covers every parameter)"]
    return []


class LayerGroups(list):
    """The layer groups of one model: a list of groups (lists of modules, input to output), with `.model` and `.names`.

    Made by `layer_groups(model, n_groups)` or by hand, `LayerGroups(model, [[m.conv1, ...], [m.fc]])`;
    checked when made (every parameter of the model in exactly one group, none from another model: a
    ValueError names the fix). It is a list, so indexing, `len` and slicing work as on the plain lists;
    a slice is a plain list (part of the model, for `param_groups(groups[1:], ...)`).
    `names`: one short name per group ('stem-layer2', 'layer3-layer4', 'head' for a ResNet in three).
    """

    def __init__(self, model: nn.Module, groups, names: list[str] | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(groups, nn.Module) or isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
            raise TypeError("groups must be a list of groups, each a list of modules, e.g. "
                            "[[m.conv1, m.bn1, m.layer1], [m.layer2, m.layer3, m.layer4], [m.fc]]")
        super().__init__(flatten_modules(g) for g in groups)
        if not self:
            raise ValueError("groups is empty: pass the model's layer groups, e.g. ftcourse.layer_groups(model)")
        problems = group_problems(model, self)
        if problems:
            raise ValueError(problems[0])
        if names is not None and len(names) != len(self):
            raise ValueError(f"names has {len(names)} entries but there are {len(self)} groups")
        self.model = model
        self._names = list(names) if names is not None else None

    @property
    def names(self) -> list[str]:
        """One short name per group, made from the model's units the first time it is asked for."""
        if self._names is None:
            self._names = _default_names(self.model, self)
        return self._names

    @classmethod
    def of(cls, model: nn.Module, groups=None) -> "LayerGroups":
        """`groups` checked against `model` (plain lists or a LayerGroups); `layer_groups(model)` when None."""
        if groups is None:
            return layer_groups(model)
        if isinstance(groups, LayerGroups) and groups.model is model and not group_problems(model, groups):
            return groups
        return cls(model, groups, names=groups._names if isinstance(groups, LayerGroups) else None)

    def labels(self, max_names: int = 6) -> list[str]:
        """Each group's modules by their names in the model (`group_label`)."""
        return [group_label(g, self.model, max_names) for g in self]

    def __repr__(self) -> str:
        return f"LayerGroups({type(self.model).__name__}, {len(self)} groups: {', '.join(self.names)})"


def _default_names(model: nn.Module, groups: list[list[nn.Module]]) -> list[str]:
    """Short names from the model's units where the groups follow them, else the modules' names."""
    try:
        names = short_group_names(model, groups)
    except (TypeError, ValueError):  # an architecture without known units
        names = ["?"] * len(groups)
    return [n if n != "?" else group_label(g, model, max_names=3) for n, g in zip(names, groups)]



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


def layer_groups(model: nn.Module, n_groups: int = N_GROUPS) -> LayerGroups:
    """`n_groups` contiguous groups of modules, input to output: the head alone last, the body split evenly before it.

    ResNet with n_groups=3: [[conv1, bn1, relu, maxpool, layer1, layer2], [layer3, layer4], [avgpool, fc]]
    (fastai's split). Earlier groups take the extra units when the body does not split evenly.
    """
    units = model_units(model)
    n = require_int("n_groups", n_groups, low=1, high=len(units),
                    expected=f"an int from 1 to {len(units)} for this {type(model).__name__}",
                    hint=f"{len(units)} units: stem/stages and head")
    return LayerGroups(model, _cut(units, n))


def _cut(units: list[list[nn.Module]], n_groups: int) -> list[list[nn.Module]]:
    """Units into n_groups contiguous groups: the head alone last, the body split evenly, earlier groups larger."""
    if n_groups == 1:
        return [[m for unit in units for m in unit]]
    body, head = units[:-1], units[-1]
    size, extra = divmod(len(body), n_groups - 1)
    groups, start = [], 0
    for i in range(n_groups - 1):
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


def freeze_to(model: nn.Module, n: int, groups=None, train_bn: bool = False) -> LayerGroups:
    """fastai's freeze_to: groups before index n frozen, groups n onward trainable; returns the groups used.

    Negative n counts from the end: `freeze_to(model, -1)` trains the head only; `freeze_to(model, 0)`
    trains everything. `groups` defaults to `layer_groups(model)` (N_GROUPS groups); given, they are
    checked against the model (every parameter in one group, none from another model). Pass the returned
    `LayerGroups` on to `param_groups`, `GradientRecorder`, `update_ratios` and `trainable_summary`.
    """
    groups = LayerGroups.of(model, groups)
    n_groups = len(groups)
    n = require_int("n", n, low=-n_groups, high=n_groups, expected=f"an int from {-n_groups} to {n_groups} for "
                    f"{n_groups} groups", hint=f"0 = all trainable, -1 = last group only, {n_groups} = all frozen")
    first = n % n_groups if n < 0 else n  # index of the first trainable group
    for group in groups[first:]:
        unfreeze(group)
    for group in groups[:first]:
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


def trainable_summary(model: nn.Module, groups=None) -> Table:
    """One row per group (or per top-level child): parameters, trainable parameters, BN layers and their mode.

    `groups` (a LayerGroups or plain lists) are checked against the model: every parameter in one group.
    """
    if groups is None:
        rows = [_summary_row(name, child, type(child).__name__) for name, child in model.named_children()]
        own = list(model.parameters(recurse=False))
        if own:
            n = sum(p.numel() for p in own)
            rows.append({"group": "(own)", "modules": "parameters of the model itself", "params": n,
                         "trainable": sum(p.numel() for p in own if p.requires_grad)})
    else:
        groups = LayerGroups.of(model, groups)
        rows = [_summary_row(str(i), g, label) for i, (g, label) in enumerate(zip(groups, groups.labels()))]
    rows.append(_summary_row("total", model, type(model).__name__))
    return Table(rows, [], title=f"{type(model).__name__}: trainable parameters and BN layers")


def unit_groups(model: nn.Module) -> LayerGroups:
    """One layer group per natural unit (ResNet: stem, layer1 .. layer4, head): the finest freeze points.

    Their `names` are the units' short names (`unit_names`).
    """
    units = model_units(model)
    return LayerGroups(model, units, names=_unit_names(model, units))


def _unit_names(model: nn.Module, units: list[list[nn.Module]]) -> list[str]:
    """The first module's name in each unit ('conv1' is called 'stem', the last unit 'head')."""
    names = [group_label(u, model).split(",")[0] for u in units]
    if names and names[0] == "conv1":
        names[0] = "stem"
    return names[:-1] + ["head"]


def unit_names(model: nn.Module) -> list[str]:
    """Short names of unit_groups: ['stem', 'layer1', 'layer2', 'layer3', 'layer4', 'head'] for a ResNet."""
    return _unit_names(model, model_units(model))


def short_group_names(model: nn.Module, groups) -> list[str]:
    """Short names of layer groups from their units: ['stem-layer2', 'layer3-layer4', 'head'] for a ResNet in 3.

    A group that does not start at a unit is called '?'.
    """
    units = model_units(model)
    first = {id(u[0]): name for u, name in zip(units, _unit_names(model, units))}
    out = []
    for group in groups:
        names = [first[id(m)] for m in flatten_modules(group) if id(m) in first]
        out.append(names[0] if len(names) == 1 else f"{names[0]}-{names[-1]}" if names else "?")
    return out
