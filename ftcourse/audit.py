""""Did it really freeze?": one real training step on copies, and what actually changed.

`freeze_audit(model, optimizer, batch)` deep-copies the model and the optimizer, snapshots every
parameter, gradient and BatchNorm buffer, runs ONE ordinary step (forward, loss, backward,
optimizer.step()) with the model in the mode you left it in, and reports what moved. It catches the
traps real fine-tuning code falls into:

- BN running statistics drifting in a "frozen" body because the model is in train mode
  (the official PyTorch transfer-learning tutorial's fixed-feature extractor does this);
- frozen weights moved by weight decay or momentum because their .grad is a zero tensor, not None
  (an optimizer skips a None grad but steps a zero one);
- `module.requires_grad = False`: a plain Python attribute on an nn.Module that freezes nothing;
- fastai's `train_bn=True` freeze: BN affine parameters stay trainable, so backprop still runs
  through the whole body (informational: fastai does it on purpose);
- optimizer and model out of sync (frozen or stale parameters in the optimizer, trainable ones missing).
"""
from __future__ import annotations

import copy
import html
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import groups as _groups
from .tables import Table, TableReport

__all__ = ["AuditReport", "freeze_audit", "twin_copy"]

_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


# ---------------------------------------------------------------- the copies
def twin_copy(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Deep copies of model and optimizer whose param_groups and state point at the *copy's* parameters.

    How: both are deep-copied with one shared `memo`, so each parameter is copied once and the
    optimizer copy (same class, same param_groups hyperparameters, its state tensors copied, keyed
    by the copied parameters) refers to those copies. `Parameter.__deepcopy__` drops `.grad`, so the
    gradients are cloned over by hand: the zero-versus-None grad matters to the audit. Optimizer
    hooks are not copied.
    """
    memo: dict = {}
    model_copy = copy.deepcopy(model, memo)
    opt_copy = copy.deepcopy(optimizer, memo)
    originals = list(model.parameters()) + [p for g in optimizer.param_groups for p in g["params"]]
    for p in originals:
        twin = memo.get(id(p))
        if twin is not None and p.grad is not None:
            twin.grad = p.grad.detach().clone()
    return model_copy, opt_copy


# ---------------------------------------------------------------- report units
def _units(model: nn.Module, groups) -> list[tuple[str, list[nn.Module]]]:
    """(name, modules) of the report's units: the groups if given, else the model's top-level children."""
    if groups is not None:
        return [(f"group {i}: {_groups.group_label(g, model, max_names=3)}", _groups.flatten_modules(g))
                for i, g in enumerate(groups)]
    return [(name, [child]) for name, child in model.named_children()]


def _assign(model: nn.Module, units) -> tuple[dict, dict]:
    """Which unit each parameter name and each BN layer name belongs to (the first unit that holds it)."""
    param_unit, bn_unit = {}, {}
    pid = {id(p): n for n, p in model.named_parameters()}
    mid = {id(m): n for n, m in model.named_modules()}
    for uname, modules in units:
        for m in modules:
            for p in m.parameters():
                param_unit.setdefault(pid[id(p)], uname)
            for sub in m.modules():
                if isinstance(sub, _BatchNorm):
                    bn_unit.setdefault(mid[id(sub)], uname)
    rest = "(rest of the model)"
    for n in pid.values():
        param_unit.setdefault(n, rest)
    for n, m in model.named_modules():
        if isinstance(m, _BatchNorm):
            bn_unit.setdefault(n, rest)
    return param_unit, bn_unit


def _bn_state(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """Clones of every BN layer's running statistics, by layer name."""
    return {n: [getattr(m, b).detach().clone() for b in _BN_BUFFERS if getattr(m, b, None) is not None]
            for n, m in model.named_modules() if isinstance(m, _BatchNorm)}


def _changed(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """True if two optional tensors differ (None vs a tensor counts as different)."""
    if a is None or b is None:
        return (a is None) != (b is None)
    return not torch.equal(a, b)


def _is_zero(g: torch.Tensor | None) -> bool:
    return g is None or not bool(g.count_nonzero())


# ---------------------------------------------------------------- the step
def _to(batch, device):
    """The batch's tensors on the model's device."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def _step(model, optimizer, batch, loss_fn, set_to_none) -> dict[int, torch.Tensor | None]:
    """One ordinary training step; returns each parameter's .grad as the optimizer saw it (by id)."""
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        raise TypeError("batch must be an (inputs, targets) pair, e.g. next(iter(train_loader))")
    device = next(model.parameters()).device
    x, y = _to(batch, device)
    if set_to_none is not None:
        optimizer.zero_grad(set_to_none=set_to_none)
    loss = loss_fn(model(x), y)
    if loss.requires_grad:  # False when nothing is trainable: then there is no backward to run
        loss.backward()
    grads = {id(p): (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()}
    optimizer.step()
    return grads


def _param_rows(model, optimizer, batch, loss_fn, set_to_none, param_unit):
    """Per-parameter facts from one step on the copies; also the BN layers whose statistics moved."""
    in_opt = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    named = list(model.named_parameters())
    w0 = {n: p.detach().clone() for n, p in named}
    g0 = {n: None if p.grad is None else p.grad.detach().clone() for n, p in named}
    bn0 = _bn_state(model)
    g1 = _step(model, optimizer, batch, loss_fn, set_to_none)
    bn_moved = [n for n, old in _bn_state(model).items() if any(_changed(a, b) for a, b in zip(old, bn0[n]))]
    rows = []
    for n, p in named:
        grad = g1[id(p)]
        moved = not torch.equal(p.detach(), w0[n])
        group = in_opt.get(id(p))
        rows.append({
            "name": n, "unit": param_unit[n], "numel": p.numel(), "requires_grad": p.requires_grad,
            "got_grad": _changed(g0[n], grad) and not _is_zero(grad),
            "grad_state": "None" if grad is None else ("zero" if _is_zero(grad) else "nonzero"),
            "in_optimizer": group is not None, "moved": moved,
            "moved_without_grad": moved and _is_zero(grad),
            "rel_change": float((p.detach() - w0[n]).norm() / w0[n].norm().clamp_min(1e-12)),
            "weight_decay": 0.0 if group is None else float(group.get("weight_decay", 0.0) or 0.0),
            "has_opt_state": bool(optimizer.state.get(p)),
        })
    return rows, bn_moved


# ---------------------------------------------------------------- findings
def _frozen_bn_layers(model: nn.Module, unit_frozen_by_bn: dict) -> list[str]:
    """BN layers with no trainable parameter (affine=False layers: those in a unit with none)."""
    out = []
    for n, m in model.named_modules():
        if isinstance(m, _BatchNorm):
            own = list(m.parameters(recurse=False))
            if (own and not any(p.requires_grad for p in own)) or (not own and unit_frozen_by_bn.get(n, False)):
                out.append(n)
    return out


def _bn_trainable_in_frozen_body(model: nn.Module) -> list[str]:
    """BN layers whose affine parameters train although the layer feeding them (the one before) is frozen."""
    out, prev_frozen = [], None
    for n, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if not own:
            continue
        trainable = any(p.requires_grad for p in own)
        if isinstance(m, _BatchNorm):
            if trainable and prev_frozen:
                out.append(n)
        else:
            prev_frozen = not trainable
    return out


def _n(k: int, word: str) -> str:
    """'1 module', '3 modules'."""
    return f"{k} {word}" + ("" if k == 1 else "s")


def _short(names: list[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (f" ... ({len(names)} in all)" if len(names) > k else "")


def _moved_frozen_findings(prows: list[dict]) -> list[str]:
    """Frozen parameters that moved in the step, with the cause."""
    found = []
    moved = [r for r in prows if r["moved"] and not r["requires_grad"]]
    zero = [r for r in moved if r["grad_state"] == "zero"]
    stale = [r for r in moved if r["grad_state"] == "nonzero"]
    if zero:
        causes = []
        if any(r["weight_decay"] > 0 for r in zero):
            causes.append("weight decay")
        if any(r["has_opt_state"] for r in zero):
            causes.append("momentum / running averages in the optimizer state")
        found.append(f"{_n(len(zero), 'frozen parameter')} moved because of {' and '.join(causes) or 'the optimizer'}: "
                     f"their .grad is a zero tensor, not None ({_short([r['name'] for r in zero])}); an optimizer "
                     "skips a None grad but steps a zero one (set grad to None / "
                     "optimizer.zero_grad(set_to_none=True), "
                     "or leave frozen params out of the optimizer)")
    if stale:
        found.append(f"{_n(len(stale), 'frozen parameter')} moved with a stale gradient left from an earlier step "
                     f"({_short([r['name'] for r in stale])}): the optimizer steps every parameter that has a .grad "
                     "(set their .grad to None, e.g. ftcourse.freeze, or leave them out of the optimizer)")
    return found


def _findings(model, optimizer, prows, bn_moved, bn_unit, unit_frozen) -> tuple[list[str], list[str]]:
    """(traps, notes) in plain English."""
    traps, notes = [], []
    frozen_bn = set(_frozen_bn_layers(model, {n: unit_frozen.get(u, False) for n, u in bn_unit.items()}))
    drift = [n for n in bn_moved if n in frozen_bn]
    if drift:
        traps.append(f"BN running statistics changed in {_n(len(drift), 'BN layer')} whose parameters are frozen "
                     f"({_short(drift)}; {'model is' if model.training else 'these layers are'} in train mode: "
                     "call ftcourse.freeze / freeze_bn_stats, "
                     "or put the frozen body in eval mode)")
    traps += _moved_frozen_findings(prows)
    attrs = [n or "(model)" for n, m in model.named_modules() if "requires_grad" in m.__dict__]
    if attrs:
        values = sorted({str(m.__dict__["requires_grad"]) for m in model.modules() if "requires_grad" in m.__dict__})
        fix = f"module.requires_grad_({values[0]})"
        traps.append(f"module.requires_grad = {'/'.join(values)} was set on {_n(len(attrs), 'module')} "
                     f"({_short(attrs)}): "
                     "this is a plain Python attribute on nn.Module and freezes/unfreezes nothing; "
                     f"use {fix} (with the underscore), or ftcourse.freeze / unfreeze")
    in_model = {id(p) for p in model.parameters()}
    strangers = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in in_model]
    if strangers:
        traps.append(f"optimizer holds {_n(len(strangers), 'parameter')} that are not in the model "
                     "(was it built before a layer was replaced?): they can never affect the loss; "
                     "rebuild the optimizer")
    if not any(r["requires_grad"] for r in prows):
        traps.append("no parameter is trainable (requires_grad=False everywhere): the step trains nothing; "
                     "unfreeze the head, e.g. ftcourse.freeze_to(model, -1)")
    missing = [r["name"] for r in prows if r["got_grad"] and not r["in_optimizer"]]
    if missing:
        traps.append(f"{_n(len(missing), 'trainable parameter')} get gradients but are not in the optimizer, "
                     f"so they never move ({_short(missing)}): add them to the optimizer, "
                     "or freeze them to save the backward work")
    bn_train = _bn_trainable_in_frozen_body(model)
    if bn_train:
        notes.append("BN affine parameters are trainable in an otherwise frozen body in "
                     f"{_n(len(bn_train), 'BN layer')} "
                     "(fastai's train_bn=True): backprop runs through the whole body, costing about a full "
                     "backward pass" + (", and their running statistics update (train mode)" if model.training else ""))
    held = [r["name"] for r in prows if r["in_optimizer"] and not r["requires_grad"]]
    moved_names = {r["name"] for r in prows if r["moved"] and not r["requires_grad"]}
    if held and not moved_names:
        notes.append(f"optimizer holds {_n(len(held), 'frozen parameter')} ({_short(held)}): harmless while their "
                     ".grad stays None, but they move as soon as a zero grad appears; leave them out of the optimizer")
    return traps, notes


# ---------------------------------------------------------------- the report
def _unit_rows(prows, units, bn_moved, bn_unit, model) -> list[dict]:
    """One row per unit: counts of parameter tensors in each state."""
    rows = []
    names = [u for u, _ in units] + sorted({r["unit"] for r in prows} - {u for u, _ in units})
    attrs = {id(m) for m in model.modules() if "requires_grad" in m.__dict__}
    mods = dict(units)
    for u in names:
        rs = [r for r in prows if r["unit"] == u]
        bns = [n for n, v in bn_unit.items() if v == u]
        if not rs and not bns:
            continue  # relu, pooling: nothing to freeze
        rows.append({
            "unit": u, "tensors": len(rs), "params": sum(r["numel"] for r in rs),
            "requires_grad": sum(r["requires_grad"] for r in rs), "got_grad": sum(r["got_grad"] for r in rs),
            "moved": sum(r["moved"] for r in rs),
            "moved_without_grad": sum(r["moved_without_grad"] and not r["requires_grad"] for r in rs),
            "bn_layers": len(bns), "bn_stats_moved": sum(n in bn_moved for n in bns),
            "frozen_in_optimizer": sum(r["in_optimizer"] and not r["requires_grad"] for r in rs),
            "requires_grad_attr": any(id(s) in attrs for m in mods.get(u, []) for s in m.modules()),
            "frozen": not any(r["requires_grad"] for r in rs),
        })
    return rows


_COLUMNS = [("unit", "module"), ("requires_grad", "trainable"), ("got_grad", "got grad"), ("moved", "moved"),
            ("moved_without_grad", "frozen moved"), ("bn_stats_moved", "BN stats moved"),
            ("frozen_in_optimizer", "frozen in optim")]


def _cells(row: dict) -> list[str]:
    """The table cells of a unit row: 'k/n' counts out of the unit's parameter tensors or BN layers."""
    out = []
    for key, _ in _COLUMNS:
        if key == "unit":
            out.append(row["unit"] + ("  [.requires_grad attr!]" if row["requires_grad_attr"] else ""))
        elif key == "bn_stats_moved":
            out.append(f"{row[key]}/{row['bn_layers']}" if row["bn_layers"] else "-")
        else:
            out.append(f"{row[key]}/{row['tensors']}" if row["tensors"] else "-")
    return out


@dataclass(repr=False)
class AuditReport(TableReport):
    """What one training step really changed: unit rows, per-parameter rows, traps and notes."""

    rows: list[dict]
    param_rows: list[dict]
    traps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    training_mode: bool = True

    @property
    def findings(self) -> list[str]:
        """Every finding: the traps first, then the informational notes."""
        return self.traps + self.notes

    @property
    def ok(self) -> bool:
        """True if no trap was found (notes are informational)."""
        return not self.traps

    def table(self) -> Table:
        """The unit rows, status and findings as ftcourse's table type."""
        mode = "train" if self.training_mode else "eval"
        rows = [dict(zip((t for _, t in _COLUMNS), _cells(r))) for r in self.rows]
        status = ["OK: no freezing trap found." if self.ok else "TRAPS FOUND:"]
        status += [f"  ! {t}" for t in self.traps] + [f"  note: {n}" for n in self.notes]
        return Table(rows, title=f"Freeze audit: one training step on copies (model in {mode} mode); "
                                 "counts are parameter tensors", notes=status)

    def _repr_html_(self) -> str:
        """Its own HTML, not the table's: frozen rows are greyed out."""
        th = "".join(f"<th>{html.escape(t)}</th>" for _, t in _COLUMNS)
        grey = ' style="color:#999"'
        trs = "".join(f"<tr{grey if r['frozen'] else ''}>"
                      + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in self.rows)
        status = "<p><b>OK:</b> no freezing trap found.</p>" if self.ok else "<p><b>Traps found:</b></p>"
        items = "".join(f"<li>{html.escape(t)}</li>" for t in self.traps)
        items += "".join(f"<li><i>note:</i> {html.escape(n)}</li>" for n in self.notes)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>{status}<ul>{items}</ul>"


def freeze_audit(model: nn.Module, optimizer: torch.optim.Optimizer, batch, loss_fn=F.cross_entropy,
                 groups: list | None = None, set_to_none: bool | None = None) -> AuditReport:
    """Run one real training step on copies of model and optimizer and report what really changed.

    The model stays in the mode you left it in (train mode is the point: BN statistics). Gradients
    are used as you left them; pass `set_to_none=True/False` to start the step with
    `optimizer.zero_grad(set_to_none=...)` as your loop does. Rows are per top-level child, or per
    group if `groups` is given; `report.param_rows` has one row per named parameter. Your model and
    optimizer are not touched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not any(True for _ in model.parameters()):
        raise ValueError("the model has no parameters: there is nothing to freeze or audit")
    m, opt = twin_copy(model, optimizer)
    units = _units(m, None if groups is None else _map_groups(groups, model, m))
    param_unit, bn_unit = _assign(m, units)
    prows, bn_moved = _param_rows(m, opt, batch, loss_fn, set_to_none, param_unit)
    rows = _unit_rows(prows, units, bn_moved, bn_unit, m)
    traps, notes = _findings(m, opt, prows, bn_moved, bn_unit, {r["unit"]: r["frozen"] for r in rows})
    return AuditReport(rows, prows, traps, notes, training_mode=model.training)


def _map_groups(groups, model: nn.Module, twin: nn.Module) -> list[list[nn.Module]]:
    """The user's groups (checked against `model`) as the same modules of the copy, found by name."""
    groups = _groups.LayerGroups.of(model, groups)
    names = {id(mod): n for n, mod in model.named_modules()}
    return [[twin.get_submodule(names[id(mod)]) for mod in g] for g in groups]
