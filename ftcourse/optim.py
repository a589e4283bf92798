"""Optimizer parameter groups: one learning rate per layer group (discriminative rates), checked.

`param_groups(model, lr=np.array([1e-4, 1e-3, 1e-2]))` builds the list of dicts `torch.optim` takes:
three layer groups, input to output, each with its own rate; frozen parameters left out. A rate spec
(a float, one rate per group, or fastai's `slice(lo, hi)`) is read in one place: `rate_count(lr)` says
how many groups it asks for, `lrs_for(lr, n_groups)` turns it into one float per group.
`make_optimizer` turns a model or those dicts into SGD with momentum. `describe_param_groups(optimizer,
model)` shows what an optimizer really holds; `param_group_problems` is the one check behind its
warnings and behind the exercise checker `ftcourse.check.param_groups_match`: frozen, duplicated,
forgotten and foreign parameters.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .groups import N_GROUPS, LayerGroups, group_label, group_problems, layer_groups, params_of
from .inputs import is_int
from .tables import Table

__all__ = ["even_mults", "rate_count", "lrs_for", "param_groups", "layerwise_lrs", "ulmfit_lrs", "make_optimizer",
           "param_group_problems", "describe_param_groups"]

_NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)


# ---------------------------------------------------------------- learning rates
def even_mults(start: float, stop: float, n_groups: int) -> list[float]:
    """n_groups rates from start to stop, each a constant factor above the last (fastai's even_mults)."""
    if n_groups == 1:
        return [float(stop)]
    step = (stop / start) ** (1 / (n_groups - 1))
    return [start * step**i for i in range(n_groups)]


def _is_number(x) -> bool:
    """A real number (int, float, numpy scalar), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def layerwise_lrs(n_groups: int, top_lr: float, decay: float) -> list[float]:
    """Layer-wise decay, input to output: the last group gets top_lr, the k-th group below it top_lr * decay**k."""
    if not is_int(n_groups) or n_groups < 1 or not _is_number(decay) or not math.isfinite(decay) or decay <= 0:
        raise ValueError(f"need n_groups >= 1 and decay > 0, got n_groups={n_groups!r}, decay={decay!r}")
    if not _is_number(top_lr) or not math.isfinite(top_lr) or top_lr <= 0:
        raise ValueError(f"top_lr must be a finite number > 0 (the head's rate, e.g. 1e-2), got {top_lr!r}")
    return [top_lr * decay ** (n_groups - 1 - i) for i in range(n_groups)]


def ulmfit_lrs(n_groups: int, top_lr: float, factor: float = 2.6) -> list[float]:
    """ULMFiT's rates (Howard & Ruder 2018): each group `factor` times lower than the one above it."""
    if not _is_number(factor) or not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    return layerwise_lrs(n_groups, top_lr, 1 / factor)


def _slice_lrs(lr: slice, n_groups: int) -> list[float]:
    """fastai's slice: slice(lo, hi) spreads geometrically; slice(None, hi) is hi/10 for all but the last group."""
    if lr.step is not None or lr.stop is None:
        raise ValueError(f"use slice(lo, hi) or slice(None, hi) (slice(hi) works too), got {lr}")
    if not all(v is None or _is_number(v) for v in (lr.start, lr.stop)):
        raise TypeError(f"slice(lo, hi) takes two numbers, e.g. slice(1e-4, 1e-2), got {lr}")
    if lr.start is None:
        return [lr.stop / 10] * (n_groups - 1) + [float(lr.stop)]
    if lr.start <= 0:
        raise ValueError(f"slice(lo, hi) needs lo > 0 for a geometric spread, got {lr}")
    if lr.start > lr.stop:
        raise ValueError(f"slice(lo, hi) needs lo <= hi (rates rise from input to output), got {lr}; "
                         f"did you mean slice({lr.stop}, {lr.start})?")
    return even_mults(lr.start, lr.stop, n_groups)


def rate_count(lr) -> int | None:
    """How many layer groups a rate spec asks for: one per value of a list/array, N_GROUPS for a slice
    (fastai's default split), None for one number (it fits any count)."""
    if isinstance(lr, slice):
        return N_GROUPS
    if isinstance(lr, torch.Tensor):
        return lr.numel()
    if isinstance(lr, (list, tuple, np.ndarray)):
        return int(np.size(lr))
    return None


def lrs_for(lr, n_groups, labels: list[str] | None = None) -> list[float]:
    """One learning rate per group from a rate spec: a float (the same for all), one value per group
    (list / array / tensor, input to output) or fastai's slice(lo, hi) (geometric from lo to hi;
    slice(hi): hi/10 for all groups but the last). `n_groups`: a count or the groups themselves.

        lrs_for(slice(1e-4, 1e-2), 3)  ->  [1e-4, 1e-3, 1e-2]
    """
    if is_int(n_groups):  # a count (a bool is not one)
        groups, n = None, int(n_groups)
    elif isinstance(n_groups, (list, tuple)):  # the groups themselves (a LayerGroups is a list)
        groups, n = n_groups, len(n_groups)
    else:
        raise TypeError(f"n_groups must be a count (an int) or the layer groups, got {n_groups!r}")
    if n < 1:
        raise ValueError(f"n_groups must be a count >= 1 or the layer groups, got {n_groups!r}")
    if isinstance(lr, slice):
        rates = _slice_lrs(lr, n)
    elif isinstance(lr, numbers.Real) and not isinstance(lr, bool):
        rates = [float(lr)] * n
    elif isinstance(lr, (list, tuple, np.ndarray, torch.Tensor)):
        if isinstance(lr, torch.Tensor):
            lr = lr.detach().cpu()
        try:
            rates = [float(x) for x in np.asarray(lr, dtype=float).reshape(-1)]
        except (TypeError, ValueError):
            raise TypeError(f"lr must be a float, a list/array of floats or a slice, got {lr!r}") from None
        if len(rates) != n:
            labels = labels or (groups.names if isinstance(groups, LayerGroups) else None)
            listing = f" ({'; '.join(f'{i}: {label}' for i, label in enumerate(labels))})" if labels else ""
            raise ValueError(f"lr has {len(rates)} values but there are {n} groups{listing}; "
                             f"give {n} rates, one float, or slice(lo, hi)")
    else:
        raise TypeError(f"lr must be a float, a list/array of floats or a slice, got {type(lr).__name__}")
    if any(not np.isfinite(r) or r < 0 for r in rates):
        raise ValueError(f"learning rates must be finite and >= 0, got {rates}: give numbers like 1e-3 "
                         "(no NaN or inf, no negative rate)")
    return rates


# ---------------------------------------------------------------- param groups
def _resolve_groups(model_or_groups, lr, n_groups):
    """(groups, model or None): layer_groups of a model (n_groups from lr, or as given), or the groups given."""
    if not isinstance(model_or_groups, nn.Module):
        if n_groups is not None:
            raise ValueError("n_groups is for a model; you passed the groups themselves")
        if isinstance(model_or_groups, LayerGroups):
            return model_or_groups, model_or_groups.model
        return [list(g) if not isinstance(g, nn.Module) else [g] for g in model_or_groups], None
    model = model_or_groups
    if n_groups is None:
        n_groups = rate_count(lr) or 1
    try:
        return layer_groups(model, n_groups), model
    except ValueError as exc:
        raise ValueError(f"cannot make {n_groups} layer groups (one per learning rate): {exc}") from None


def _no_decay_ids(group: list[nn.Module]) -> set[int]:
    """ids of normalisation-layer weights and of every bias in the group (commonly not decayed)."""
    ids = set()
    for module in group:
        for m in module.modules():
            for name, p in m.named_parameters(recurse=False):
                if isinstance(m, _NORMS) or name == "bias":
                    ids.add(id(p))
    return ids


def param_groups(model_or_groups, lr, weight_decay: float = 0.0, n_groups: int | None = None,
                 bn_weight_decay: float | None = None, model: nn.Module | None = None) -> list[dict]:
    """Parameter groups for torch.optim, one learning rate per layer group; frozen parameters left out.

    model_or_groups: a model (cut with layer_groups into len(lr) groups, N_GROUPS for a slice, 1 for a
    float, or `n_groups`) or the layer groups themselves (from freeze_to or layer_groups, or your own
    lists of modules, input to output; pass `model` to get readable names). lr: a float, one rate per
    group (list / np.ndarray), or fastai's slice(lo, hi).
    Groups with nothing trainable are dropped; the "name" keeps the original group index.
    Rates must be finite and >= 0; 0 is allowed for some groups (they stay where they are), not for
    all of them: lr 0 everywhere trains nothing (freeze with freeze_to instead). With groups and
    `model`, the groups are checked against the model: each trainable parameter in exactly one group,
    none from another model.
    bn_weight_decay: if given, normalisation weights and all biases go in extra dicts with this decay.
    """
    groups, found_model = _resolve_groups(model_or_groups, lr, n_groups)
    if model is not None and found_model is not None and model is not found_model:
        raise ValueError("model= is not the model these layer groups were made from: build the groups from this "
                         "model, e.g. ftcourse.layer_groups(model)")
    model = model or found_model
    labels = [group_label(g, model) for g in groups]
    rates = lrs_for(lr, len(groups), labels)
    problems = group_problems(model, groups, trainable_only=True) if model is not None else []
    if problems:  # layer groups of this model, or hand-made ones given with model=
        raise ValueError(problems[0])
    out, seen = [], set()
    for i, (group, rate, label) in enumerate(zip(groups, rates, labels)):
        params = [p for p in params_of(group) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        name = f"group {i} (of {len(groups)}): {label}"
        if bn_weight_decay is None:
            split = [(params, weight_decay, name)]
        else:
            no_decay = _no_decay_ids(group)
            split = [([p for p in params if id(p) not in no_decay], weight_decay, name),
                     ([p for p in params if id(p) in no_decay], bn_weight_decay, name + " [norm weights, biases]")]
        out += [{"params": ps, "lr": rate, "weight_decay": wd, "name": nm} for ps, wd, nm in split if ps]
    if not out:
        raise ValueError("no trainable parameters in any group: unfreeze something first (e.g. freeze_to(model, -1))")
    if all(g["lr"] == 0 for g in out):
        raise ValueError("every trainable group has lr 0, and lr 0 trains nothing: to keep a group fixed, freeze it "
                         "instead (ftcourse.freeze_to(model, n)) and give the groups you train a rate > 0")
    return out


# ---------------------------------------------------------------- describing an optimizer
def _tensor_name(p: torch.Tensor, names: dict[int, str]) -> str:
    return names.get(id(p), f"tensor{tuple(p.shape)}")


def _tensors_held(group: dict) -> list[torch.Tensor]:
    ps = group["params"]
    return [ps] if isinstance(ps, torch.Tensor) else list(ps)


def make_optimizer(model_or_param_groups, lr=0.01, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.SGD:
    """SGD with momentum over a model's trainable parameters, or over param-group dicts (from param_groups)."""
    for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if isinstance(value, torch.Tensor):
            continue  # torch checks tensor rates itself
        if not _is_number(value):
            raise TypeError(f"{name} must be a number, e.g. 0.01, got {type(value).__name__} {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if isinstance(model_or_param_groups, nn.Module):
        params = [p for p in model_or_param_groups.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters (everything is frozen): "
                             "unfreeze something first, e.g. ftcourse.freeze_to(model, -1)")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    groups = list(model_or_param_groups)
    if not groups:
        raise ValueError("no parameters to optimise (an empty list): pass a model, or the dicts of "
                         "ftcourse.param_groups(model, lr)")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _dicts_of(optimizer) -> list[dict]:
    """The param-group dicts of an optimizer, or the list of dicts itself."""
    if hasattr(optimizer, "param_groups"):
        return optimizer.param_groups
    groups = list(optimizer) if isinstance(optimizer, (list, tuple)) else None
    if groups is None or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise TypeError("expected a torch optimizer or a list of param-group dicts ({'params': [...], 'lr': ...}), "
                        f"e.g. ftcourse.param_groups(model, lr); got {type(optimizer).__name__}")
    return groups


def param_group_problems(optimizer, model: nn.Module | None = None) -> list[str]:
    """What is wrong with what an optimizer (or a list of param-group dicts) holds; [] if nothing.

    Frozen tensors held (a zeroed, not None, grad lets weight decay and momentum move them), tensors
    held twice and, with the model, trainable tensors in no group or tensors that are not the model's.
    """
    names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
    where: dict[int, tuple[torch.Tensor, list[int]]] = {}
    problems = []
    for i, g in enumerate(_dicts_of(optimizer)):
        params = _tensors_held(g)
        for p in params:
            where.setdefault(id(p), (p, []))[1].append(i)
        frozen = [p for p in params if not p.requires_grad]
        if frozen:
            eg = ", ".join(_tensor_name(p, names) for p in frozen[:3])
            problems.append(f"group {i} holds {len(frozen)} frozen tensor(s) (requires_grad=False), e.g. {eg}: "
                            "leave them out (a zeroed, not None, grad lets weight decay and momentum move them)")
    twice = [(p, gs) for p, gs in where.values() if len(gs) > 1]
    if twice:
        eg = ", ".join(f"{_tensor_name(p, names)} in groups {gs}" for p, gs in twice[:3])
        problems.append(f"{len(twice)} tensor(s) held more than once, e.g. {eg}: each would be updated twice per "
                        "step; put each module in exactly one group")
    if model is not None:  # foreign tensors first: they explain the missing ones when groups come from another copy
        foreign = [p for p, _ in where.values() if id(p) not in names]
        if foreign:
            problems.append(f"{len(foreign)} tensor(s) held are not parameters of this model (an old head, or an "
                            "optimizer built for another copy of the model?): build the groups from this model")
        missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in where]
        if missing:
            problems.append(f"{len(missing)} trainable tensor(s) of the model are in no group, e.g. {missing[:3]}: "
                            "they get gradients but are never updated (head replaced after the optimizer was built?)")
    return problems


def describe_param_groups(optimizer, model: nn.Module | None = None) -> Table:
    """What an optimizer (or a list of param-group dicts) holds, group by group, with warnings.

    Per group: name, current lr, weight decay, tensors, scalars, BN tensors ("?" without the model)
    and frozen tensors. The warnings are `param_group_problems(optimizer, model)`.
    """
    groups = _dicts_of(optimizer)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)] if model is not None else []
    bn_ids = {id(p) for m in bns for p in m.parameters()}
    rows = []
    for i, g in enumerate(groups):
        params = _tensors_held(g)
        lr = g.get("lr", "default")
        rows.append({"group": i, "name": g.get("name", ""), "lr": float(lr) if not isinstance(lr, str) else lr,
                     "weight_decay": float(g.get("weight_decay", 0.0)), "tensors": len(params),
                     "scalars": sum(p.numel() for p in params),
                     "bn_tensors": sum(id(p) in bn_ids for p in params) if model is not None else "?",
                     "frozen": sum(not p.requires_grad for p in params)})
    kind = type(optimizer).__name__ if hasattr(optimizer, "param_groups") else "param groups"
    return Table(rows, param_group_problems(optimizer, model), title=f"{kind}: {len(groups)} group(s)")
