"""Watching gradients and updates: per-group gradient norms (via hooks), update sizes, the gradient into the body.

- `GradientRecorder`: the L2 norm of each layer group's gradient at every optimisation step, recorded
  by hooks on the parameters; frozen groups record NaN (the plot greys them). Pass it as `on_step`.
- `snapshot` + `update_ratios`: the relative update ||dW|| / ||W|| of each group.
- `body_gradient`: what the head sends into the body on one batch.

(How far features moved is in `ftcourse.features`; what a step costs in `ftcourse.cost`.)
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import groups as _groups
from .models import find_head

__all__ = ["GradientRecorder", "snapshot", "update_ratios", "body_gradient"]


# ---------------------------------------------------------------- gradient norms per group
class GradientRecorder:
    """Per-step gradient L2 norm of each layer group, recorded by hooks on the parameters.

    A hook (`Tensor.register_post_accumulate_grad_hook`) fires each time backward has written a
    parameter's `.grad` and keeps its squared norm (the latest wins, so gradient accumulation over
    several backward passes records the accumulated gradient). `step()` closes the step: it appends
    one norm per group to `history`. Call it once per optimisation step, after backward; or pass
    `optimizer=` and it is called after every `optimizer.step()`, or pass the recorder itself as
    `fit(..., on_step=rec)` (calling it is `step()`). A group that received no gradient in a step
    (frozen) records NaN; a recorder on a model with nothing trainable is allowed and records NaN
    everywhere (its groups get hooks at the first `step()` after they are unfrozen). The groups must
    be modules of `model` (ValueError otherwise). For example::

        with GradientRecorder(model, groups) as rec:
            ftcourse.fit(model, loader, steps=20, on_step=rec)
        rec.as_array()   # (steps, groups)
    """

    def __init__(self, model: nn.Module, groups: list | None = None, names: list[str] | None = None,
                 optimizer: torch.optim.Optimizer | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.groups = _groups.LayerGroups.of(model, groups)
        if names is not None and len(names) != len(self.groups):
            raise ValueError(f"names has {len(names)} entries but there are {len(self.groups)} groups")
        self.group_names = list(names) if names is not None else self.groups.names
        self.params_by_group = [_groups.params_of(g) for g in self.groups]
        self.history: list[list[float]] = []
        self._current: dict[int, torch.Tensor] = {}  # id(param) -> squared grad norm this step
        self._handles: dict[int, object] = {}
        self._opt_handle = optimizer.register_step_post_hook(lambda *_: self.step()) if optimizer else None
        self._attach()

    def _attach(self) -> None:
        """Hook every trainable parameter not hooked yet (frozen ones cannot take a hook; re-run after unfreezing)."""
        for params in self.params_by_group:
            for p in params:
                if p.requires_grad and id(p) not in self._handles:
                    self._handles[id(p)] = p.register_post_accumulate_grad_hook(self._hook)

    def _hook(self, p: torch.Tensor) -> None:
        self._current[id(p)] = torch.linalg.vector_norm(p.grad.detach()).double() ** 2

    def step(self) -> list[float]:
        """Close this step: append one gradient norm per group (NaN if the group got none); return it."""
        row = []
        for params in self.params_by_group:
            sq = [self._current[id(p)] for p in params if id(p) in self._current]
            row.append(math.sqrt(float(torch.stack(sq).sum())) if sq else math.nan)
        self.history.append(row)
        self._current.clear()
        self._attach()  # parameters unfrozen since the last step get their hook now
        return row

    def __call__(self, *_) -> list[float]:
        """`step()`: so the recorder itself can be fit's `on_step` callback."""
        return self.step()

    @property
    def frozen(self) -> list[bool]:
        """Per group: True if none of its parameters is trainable right now."""
        return [not any(p.requires_grad for p in params) for params in self.params_by_group]

    def as_array(self) -> np.ndarray:
        """The history as an array of shape (steps, groups); NaN where a group got no gradient."""
        return np.array(self.history, dtype=float).reshape(len(self.history), len(self.groups))

    def remove(self) -> None:
        """Remove every hook; the history stays."""
        for h in self._handles.values():
            h.remove()
        self._handles.clear()
        if self._opt_handle is not None:
            self._opt_handle.remove()
            self._opt_handle = None

    def __enter__(self) -> "GradientRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"GradientRecorder({len(self.groups)} groups, {len(self.history)} steps, {len(self._handles)} hooks)"


# ---------------------------------------------------------------- update sizes
def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached clones of every parameter and buffer (the state_dict), to compare with later."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def update_ratios(before_state: dict[str, torch.Tensor], after_model: nn.Module,
                  groups=None) -> list[float]:
    """Relative update ||W_after - W_before|| / ||W_before|| of each group's parameters (buffers ignored).

    `groups`: the LayerGroups of `after_model` (default `layer_groups(after_model)`), checked against it.
    """
    if not isinstance(before_state, dict):
        raise TypeError(f"before_state must be a snapshot dict (before = ftcourse.snapshot(model) before training), "
                        f"got {type(before_state).__name__}")
    groups = _groups.LayerGroups.of(after_model, groups)
    names = {id(p): n for n, p in after_model.named_parameters()}
    ratios = []
    for g in groups:
        delta = norm = 0.0
        for p in _groups.params_of(g):
            old = before_state.get(names[id(p)])
            if not isinstance(old, torch.Tensor) or old.shape != p.shape:
                found = "missing" if old is None else f"of shape {tuple(getattr(old, 'shape', ()))}"
                raise ValueError(f"the snapshot is not of this model ({names[id(p)]}: {found} in the snapshot, "
                                 f"{tuple(p.shape)} in the model): take before = ftcourse.snapshot(model) "
                                 "of the same model before training")
            old = old.to(p.device, torch.float64)
            delta += float((p.detach().double() - old).pow(2).sum())
            norm += float(old.pow(2).sum())
        ratios.append(math.sqrt(delta) / math.sqrt(norm) if norm > 0 else math.nan)
    return ratios


def body_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable = F.cross_entropy) -> dict:
    """What the head sends into the body on one batch: loss, gradient norm of the body's parameters, head weight norm.

    One forward and backward in the model's current mode (train mode for a training step); no
    optimizer step, and the gradients are cleared afterwards. The gradient reaching the features is
    W^T (softmax - onehot) / batch: large errors times a small head, or small errors times a large one.
    """
    _, head = find_head(model)
    head_ids = {id(p) for p in head.parameters()}
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    body = [p.grad for p in model.parameters() if id(p) not in head_ids and p.grad is not None]
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in body)) if body else 0.0
    model.zero_grad(set_to_none=True)
    return {"loss": loss.item(), "body_grad_norm": norm, "head_weight_norm": float(head.weight.detach().norm())}
