"""Watching gradients and updates: per-group gradient norms (via hooks), update sizes, feature drift, graph size.

- `GradientRecorder`: the L2 norm of each layer group's gradient at every optimisation step, recorded
  by hooks on the parameters; frozen groups record NaN (the plot greys them).
- `snapshot` + `update_ratios`: the relative update ||dW|| / ||W|| of each group.
- `feature_drift` and `linear_cka`: how far the body's features moved between two models.
- `backward_graph_size`: how much backward work autograd recorded for a loss.
- `step_cost`: what one training step costs against a forward pass (time, graph size, CUDA memory).
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import groups as _groups
from .models import find_head, split_head

__all__ = ["GradientRecorder", "snapshot", "update_ratios", "feature_drift", "linear_cka", "representation_change",
           "body_gradient", "backward_graph_size", "step_cost", "sync_device", "time_call", "time_steps"]


# ---------------------------------------------------------------- gradient norms per group
class GradientRecorder:
    """Per-step gradient L2 norm of each layer group, recorded by hooks on the parameters.

    A hook (`Tensor.register_post_accumulate_grad_hook`) fires each time backward has written a
    parameter's `.grad` and keeps its squared norm (the latest wins, so gradient accumulation over
    several backward passes records the accumulated gradient). `step()` closes the step: it appends
    one norm per group to `history`. Call it once per optimisation step, after backward; or pass
    `optimizer=` and it is called after every `optimizer.step()`. A group that received no gradient
    in a step (frozen) records NaN.

        with GradientRecorder(model) as rec:
            for x, y in loader:
                opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step(); rec.step()
        rec.as_array()   # (steps, groups)
    """

    def __init__(self, model: nn.Module, groups: list | None = None, names: list[str] | None = None,
                 optimizer: torch.optim.Optimizer | None = None):
        self.groups = _groups.layer_groups(model, 3) if groups is None else list(groups)
        if names is not None and len(names) != len(self.groups):
            raise ValueError(f"names has {len(names)} entries but there are {len(self.groups)} groups")
        self.group_names = list(names) if names is not None else [
            f"{i}: {_groups.group_label(g, model, max_names=3)}" for i, g in enumerate(self.groups)]
        self.group_params = [_groups.group_params(g) for g in self.groups]
        self.history: list[list[float]] = []
        self._current: dict[int, torch.Tensor] = {}  # id(param) -> squared grad norm this step
        self._handles: dict[int, object] = {}
        self._opt_handle = optimizer.register_step_post_hook(lambda *_: self.step()) if optimizer else None
        self._attach()

    def _attach(self) -> None:
        """Hook every trainable parameter not hooked yet (frozen ones cannot take a hook; re-run after unfreezing)."""
        for params in self.group_params:
            for p in params:
                if p.requires_grad and id(p) not in self._handles:
                    self._handles[id(p)] = p.register_post_accumulate_grad_hook(self._hook)

    def _hook(self, p: torch.Tensor) -> None:
        self._current[id(p)] = torch.linalg.vector_norm(p.grad.detach()).double() ** 2

    def step(self) -> list[float]:
        """Close this step: append one gradient norm per group (NaN if the group got none); return it."""
        row = []
        for params in self.group_params:
            sq = [self._current[id(p)] for p in params if id(p) in self._current]
            row.append(math.sqrt(float(torch.stack(sq).sum())) if sq else math.nan)
        self.history.append(row)
        self._current.clear()
        self._attach()  # parameters unfrozen since the last step get their hook now
        return row

    record = step  # the same thing, for readers who think of it as "record this step"

    @property
    def frozen(self) -> list[bool]:
        """Per group: True if none of its parameters is trainable right now."""
        return [not any(p.requires_grad for p in params) for params in self.group_params]

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
                  groups: list | None = None) -> list[float]:
    """Relative update ||W_after - W_before|| / ||W_before|| of each group's parameters (buffers ignored)."""
    groups = _groups.layer_groups(after_model, 3) if groups is None else groups
    names = {id(p): n for n, p in after_model.named_parameters()}
    ratios = []
    for g in groups:
        delta = norm = 0.0
        for p in _groups.group_params(g):
            if id(p) not in names:
                raise ValueError("a group holds a parameter that is not in after_model; build groups from after_model")
            old = before_state[names[id(p)]].to(p.device, torch.float64)
            delta += float((p.detach().double() - old).pow(2).sum())
            norm += float(old.pow(2).sum())
        ratios.append(math.sqrt(delta) / math.sqrt(norm) if norm > 0 else math.nan)
    return ratios


# ---------------------------------------------------------------- feature drift
@torch.no_grad()
def _features(model: nn.Module, x: torch.Tensor, layer: str | None) -> torch.Tensor:
    """Penultimate features (or the output of `layer`), eval mode, on a copy: the model is untouched."""
    if layer is None:
        body, _ = split_head(model)
    else:
        body = copy.deepcopy(model)
    body.eval()
    x = x.to(next(body.parameters()).device)
    if layer is None:
        return body(x).flatten(1)
    out = []
    handle = body.get_submodule(layer).register_forward_hook(lambda m, i, o: out.append(o))
    try:
        body(x)
    finally:
        handle.remove()
    return out[0].flatten(1)


def feature_drift(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, layer: str | None = None) -> float:
    """How far the features moved from model_a to model_b: ||f_a - f_b|| / ||f_a|| on the batch x.

    Features are the penultimate ones (the body's output, head removed), or the output of the
    module named `layer`; both models are evaluated in eval mode on copies.
    """
    fa, fb = _features(model_a, x, layer), _features(model_b, x, layer)
    if fa.shape != fb.shape:
        raise ValueError(f"the two models give features of different shapes {tuple(fa.shape)} and {tuple(fb.shape)}")
    return float((fa - fb).norm() / fa.norm().clamp_min(1e-12))


def _matrix(a) -> torch.Tensor:
    """A tensor or array as a float64 CPU matrix: one row per example."""
    return torch.as_tensor(a if isinstance(a, torch.Tensor) else np.asarray(a)).detach().double().flatten(1).cpu()


def linear_cka(X, Y) -> float:
    """Linear CKA of two feature matrices (rows = examples; Kornblith et al. 2019); 1 = equal up to rotation/scale."""
    X, Y = _matrix(X), _matrix(Y)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y need the same number of rows (examples), got {X.shape[0]} and {Y.shape[0]}")
    X, Y = X - X.mean(0), Y - Y.mean(0)
    cross = (Y.T @ X).norm() ** 2
    denom = (X.T @ X).norm() * (Y.T @ Y).norm()
    return float(cross / denom) if denom > 0 else math.nan


def representation_change(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """How much the penultimate features changed from model_a to model_b on x: relative change and 1 - linear CKA.

    "relative" is ||f_b - f_a|| / ||f_a|| (sensitive to scale); "1 - CKA" ignores rotation and scale
    and asks whether the examples are arranged differently (0 = the same representation).
    """
    fa, fb = _features(model_a, x, None), _features(model_b, x, None)
    if fa.shape != fb.shape:
        raise ValueError(f"the two models give features of different shapes {tuple(fa.shape)} and {tuple(fb.shape)}")
    return {"relative": float((fa - fb).norm() / fa.norm().clamp_min(1e-12)), "1 - CKA": 1.0 - linear_cka(fa, fb)}


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


# ---------------------------------------------------------------- backward work
def backward_graph_size(loss: torch.Tensor) -> int:
    """Number of nodes in the autograd graph behind `loss` (its grad_fn and everything reachable from it).

    Backward runs each node once, so this counts the backward work autograd recorded; nothing is
    recorded below the lowest trainable layer. 0 if the loss needs no gradient at all.
    """
    if loss.grad_fn is None:
        return 0
    seen, stack = {loss.grad_fn}, [loss.grad_fn]
    while stack:
        for nxt, _ in stack.pop().next_functions:
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return len(seen)


def sync_device(device: torch.device) -> None:
    """Wait for queued CUDA work on `device` (no-op on the CPU), so timers measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds one call of fn() takes (CUDA work waited for)."""
    sync_device(device)
    t0 = time.perf_counter()
    fn()
    sync_device(device)
    return time.perf_counter() - t0


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, reps: int = 10,
               warmup: int = 2, loss_fn: Callable = F.cross_entropy) -> list[float]:
    """Seconds of each of `reps` training steps (zero_grad, forward, backward, optimizer.step) on one batch."""
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    return [time_call(step, x.device) for _ in range(reps)]


def step_cost(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int = 7, warmup: int = 2,
              loss_fn: Callable = F.cross_entropy) -> dict:
    """What one training step costs: backward graph nodes, median step and forward times (ms), CUDA peak MiB.

    A step is what a training loop does (train mode, zero_grad, forward, loss, backward, SGD step);
    the reference is an inference forward pass (eval mode, no_grad). Steps and forwards are timed in
    turns so both see the same machine load. SGD with lr=0, so the model's weights do not change
    (BN running statistics of layers in train mode do: pass a copy if that matters).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0) if params else None
    device = x.device
    was_training = model.training
    model.train()
    nodes = backward_graph_size(loss_fn(model(x), y))

    def forward():
        model.eval()
        with torch.no_grad():
            model(x)

    def step():
        model.train()
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if loss.requires_grad:
            loss.backward()
        if opt is not None:
            opt.step()

    for _ in range(warmup):
        forward()
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fwd, stp = [], []
    for _ in range(reps):
        fwd.append(time_call(forward, device))
        stp.append(time_call(step, device))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {"nodes": nodes, "step_ms": 1e3 * statistics.median(stp), "forward_ms": 1e3 * statistics.median(fwd),
            "peak_mib": peak}
