"""What a training step costs: backward graph size, time per step against a forward pass, CUDA memory.

- `backward_graph_size`: how much backward work autograd recorded for a loss.
- `step_cost`: one training step against an inference forward pass (time, graph size, CUDA peak).
- `time_call`, `time_steps`, `forward_ms`: timers that wait for queued CUDA work (`sync_device`).
"""
from __future__ import annotations

import contextlib
import gc
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["backward_graph_size", "sync_device", "time_call", "time_steps", "forward_ms", "step_cost",
           "ring_allreduce_seconds"]


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


def forward_ms(models: list[nn.Module], x: torch.Tensor, reps: int = 11, warmup: int = 1) -> list[float]:
    """Median inference time (ms) of each model on x (no_grad, after warm-up calls); the models are timed in turns."""
    times: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for _ in range(warmup):
            for m in models:
                m(x)
        for _ in range(reps):
            for t, m in zip(times, models):
                t.append(time_call(lambda: m(x), x.device))
    return [1e3 * statistics.median(t) for t in times]


def _autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when asked, else nothing (the CPU runs float32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else contextlib.nullcontext()


def step_cost(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int = 7, warmup: int = 2,
              loss_fn: Callable = F.cross_entropy, amp: bool = False) -> dict:
    """What one training step costs: backward graph nodes, median step and forward times (ms), CUDA peak MiB.

    A step is what a training loop does (train mode, zero_grad, forward, loss, backward, SGD step);
    the reference is an inference forward pass (eval mode, no_grad). Steps and forwards are timed in
    turns so both see the same machine load. SGD with lr=0, so the model's weights do not change
    (BN running statistics of layers in train mode do: pass a copy if that matters). `amp`: bf16
    autocast on CUDA.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0) if params else None
    device = x.device
    was_training = model.training
    model.train()
    with _autocast(device, amp):
        nodes = backward_graph_size(loss_fn(model(x), y))

    def forward():
        model.eval()
        with torch.no_grad(), _autocast(device, amp):
            model(x)

    def step():
        model.train()
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            loss = loss_fn(model(x), y)
        if loss.requires_grad:
            loss.backward()
        if opt is not None:
            opt.step()

    for _ in range(warmup):
        forward()
        step()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
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


def ring_allreduce_seconds(n_bytes: float, world_size: int, bandwidth_bytes_per_s: float) -> float:
    """Time a ring all-reduce of `n_bytes` needs on `world_size` workers (bandwidth term only).

    Each worker sends and receives 2 (N - 1) / N of the buffer (reduce-scatter, then all-gather); latency
    and overlap with the backward pass are left out, so this is the lower bound a frozen prefix scales.
    """
    if world_size < 1 or bandwidth_bytes_per_s <= 0:
        raise ValueError("world_size must be >= 1 and bandwidth > 0")
    return 2 * (world_size - 1) / world_size * n_bytes / bandwidth_bytes_per_s
