"""Optimizer parameter groups: one learning rate per layer group (discriminative rates), checked.

`param_groups(model, lr=np.array([1e-4, 1e-3, 1e-2]))` builds the list of dicts `torch.optim` takes:
three layer groups, input to output, each with its own rate; frozen parameters left out.
`describe_param_groups(optimizer, model)` shows what an optimizer really holds and warns about
frozen, duplicated and forgotten parameters.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .groups import SummaryTable, group_params, group_label, layer_groups

__all__ = ["even_mults", "param_groups", "layerwise_lrs", "ulmfit_lrs", "describe_param_groups"]

_NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)


# ---------------------------------------------------------------- learning rates
def even_mults(start: float, stop: float, n: int) -> list[float]:
    """n rates from start to stop, each a constant factor above the last (fastai's even_mults)."""
    if n == 1:
        return [float(stop)]
    step = (stop / start) ** (1 / (n - 1))
    return [start * step**i for i in range(n)]


def layerwise_lrs(n_groups: int, top_lr: float, decay: float) -> list[float]:
    """Layer-wise decay, input to output: the last group gets top_lr, the k-th group below it top_lr * decay**k."""
    if n_groups < 1 or decay <= 0:
        raise ValueError(f"need n_groups >= 1 and decay > 0, got n_groups={n_groups}, decay={decay}")
    return [top_lr * decay ** (n_groups - 1 - i) for i in range(n_groups)]


def ulmfit_lrs(n_groups: int, top_lr: float, factor: float = 2.6) -> list[float]:
    """ULMFiT's rates (Howard & Ruder 2018): each group `factor` times lower than the one above it."""
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    return layerwise_lrs(n_groups, top_lr, 1 / factor)


def _slice_lrs(lr: slice, n: int) -> list[float]:
    """fastai's slice: slice(lo, hi) spreads geometrically; slice(None, hi) is hi/10 for all but the last group."""
    if lr.step is not None or lr.stop is None:
        raise ValueError(f"use slice(lo, hi) or slice(None, hi) (slice(hi) works too), got {lr}")
    if lr.start is None:
        return [lr.stop / 10] * (n - 1) + [float(lr.stop)]
    if lr.start <= 0:
        raise ValueError(f"slice(lo, hi) needs lo > 0 for a geometric spread, got {lr}")
    return even_mults(lr.start, lr.stop, n)


def _lrs_for(lr, groups: list[list[nn.Module]], labels: list[str]) -> list[float]:
    """One learning rate per group from a float, a sequence/array, or a slice."""
    n = len(groups)
    if isinstance(lr, slice):
        rates = _slice_lrs(lr, n)
    elif isinstance(lr, numbers.Real) and not isinstance(lr, bool):
        rates = [float(lr)] * n
    elif isinstance(lr, (list, tuple, np.ndarray, torch.Tensor)):
        rates = [float(x) for x in np.asarray(lr, dtype=float).reshape(-1)]
        if len(rates) != n:
            listing = "; ".join(f"{i}: {label}" for i, label in enumerate(labels))
            raise ValueError(f"lr has {len(rates)} values but there are {n} groups ({listing}); "
                             f"give {n} rates, one float, or slice(lo, hi)")
    else:
        raise TypeError(f"lr must be a float, a list/array of floats or a slice, got {type(lr).__name__}")
    if any(not np.isfinite(r) or r < 0 for r in rates):
        raise ValueError(f"learning rates must be finite and >= 0, got {rates}")
    return rates


# ---------------------------------------------------------------- param groups
def _resolve_groups(model_or_groups, lr, groups_n):
    """(groups, model or None): layer_groups of a model (n from lr or groups_n), or the groups given."""
    if not isinstance(model_or_groups, nn.Module):
        if groups_n is not None:
            raise ValueError("groups_n is for a model; you passed the groups themselves")
        return [list(g) if not isinstance(g, nn.Module) else [g] for g in model_or_groups], None
    model = model_or_groups
    if groups_n is None:
        is_seq = isinstance(lr, (list, tuple, np.ndarray, torch.Tensor))
        groups_n = int(np.asarray(lr).size) if is_seq else 3 if isinstance(lr, slice) else 1
    try:
        return layer_groups(model, groups_n), model
    except ValueError as exc:
        raise ValueError(f"cannot make {groups_n} layer groups (one per learning rate): {exc}") from None


def _no_decay_ids(group: list[nn.Module]) -> set[int]:
    """ids of normalisation-layer weights and of every bias in the group (commonly not decayed)."""
    ids = set()
    for module in group:
        for m in module.modules():
            for name, p in m.named_parameters(recurse=False):
                if isinstance(m, _NORMS) or name == "bias":
                    ids.add(id(p))
    return ids


def param_groups(model_or_groups, lr, weight_decay: float = 0.0, groups_n: int | None = None,
                 bn_weight_decay: float | None = None, model: nn.Module | None = None) -> list[dict]:
    """Parameter groups for torch.optim, one learning rate per layer group; frozen parameters left out.

    model_or_groups: a model (cut with layer_groups into len(lr) groups, 3 for a slice, 1 for a float,
    or `groups_n`) or your own list of groups (lists of modules, input to output; pass `model` to get
    readable names). lr: a float, one rate per group (list / np.ndarray), or fastai's slice(lo, hi).
    Groups with nothing trainable are dropped; the "name" keeps the original group index.
    bn_weight_decay: if given, normalisation weights and all biases go in extra dicts with this decay.
    """
    groups, found_model = _resolve_groups(model_or_groups, lr, groups_n)
    model = model or found_model
    labels = [group_label(g, model) for g in groups]
    rates = _lrs_for(lr, groups, labels)
    out, seen = [], set()
    for i, (group, rate, label) in enumerate(zip(groups, rates, labels)):
        params = [p for p in group_params(group) if p.requires_grad and id(p) not in seen]
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
    return out


# ---------------------------------------------------------------- describing an optimizer
def _tensor_name(p: torch.Tensor, names: dict[int, str]) -> str:
    return names.get(id(p), f"tensor{tuple(p.shape)}")


def _group_params(group: dict) -> list[torch.Tensor]:
    ps = group["params"]
    return [ps] if isinstance(ps, torch.Tensor) else list(ps)


def describe_param_groups(optimizer, model: nn.Module | None = None) -> SummaryTable:
    """What an optimizer (or a list of param-group dicts) holds, group by group, with warnings.

    Per group: name, current lr, weight decay, tensors, scalars, BN tensors ("?" without the model)
    and frozen tensors. Warns about frozen parameters held, parameters held twice, and (with the
    model) trainable parameters held by no group or tensors that are not the model's.
    """
    groups = optimizer.param_groups if hasattr(optimizer, "param_groups") else list(optimizer)
    names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)] if model is not None else []
    bn_ids = {id(p) for m in bns for p in m.parameters()}
    rows, warnings, where = [], [], {}
    for i, g in enumerate(groups):
        params = _group_params(g)
        frozen = [p for p in params if not p.requires_grad]
        for p in params:
            where.setdefault(id(p), (p, []))[1].append(i)
        lr = g.get("lr", "default")
        rows.append({"group": i, "name": g.get("name", ""), "lr": float(lr) if not isinstance(lr, str) else lr,
                     "weight_decay": float(g.get("weight_decay", 0.0)), "tensors": len(params),
                     "scalars": sum(p.numel() for p in params),
                     "bn_tensors": sum(id(p) in bn_ids for p in params) if model is not None else "?",
                     "frozen": len(frozen)})
        if frozen:
            eg = ", ".join(_tensor_name(p, names) for p in frozen[:3])
            warnings.append(f"group {i} holds {len(frozen)} frozen tensor(s) (requires_grad=False), e.g. {eg}: "
                            "leave them out (a zeroed, not None, grad lets weight decay and momentum move them)")
    twice = [(p, gs) for p, gs in where.values() if len(gs) > 1]
    if twice:
        eg = ", ".join(f"{_tensor_name(p, names)} in groups {gs}" for p, gs in twice[:3])
        warnings.append(f"{len(twice)} tensor(s) held more than once, e.g. {eg}: each would be updated twice per step")
    if model is not None:
        missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in where]
        if missing:
            warnings.append(f"{len(missing)} trainable tensor(s) of the model are in no group, e.g. {missing[:3]}: "
                            "they get gradients but are never updated (head replaced after the optimizer was built?)")
        foreign = [p for p, _ in where.values() if id(p) not in names]
        if foreign:
            warnings.append(f"{len(foreign)} tensor(s) held are not parameters of this model "
                            "(an old head, or an optimizer built for another copy of the model?)")
    kind = type(optimizer).__name__ if hasattr(optimizer, "param_groups") else "param groups"
    title = f"{kind}: {len(groups)} group(s)"
    return SummaryTable(rows, warnings, title)
