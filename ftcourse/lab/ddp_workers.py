"""Lesson 06's workers: what `ftcourse.distributed.launch` runs to show DDP with frozen layers, rates and BatchNorm.

Each is importable (a new process imports its worker by name). The first few show how `launch`
behaves when things go wrong (errors, hangs, a dying rank); the others measure DDP with frozen layers,
per-group learning rates and BatchNorm against one process on the same global batch.
"""
from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..bn import freeze_bn_stats
from ..data import target_task
from ..distributed import ByteCounter
from ..groups import freeze_to, unfreeze, unit_groups
from ..models import fresh_model
from ..optim import param_groups

__all__ = ["rank_sum_worker", "raising_worker", "unmatched_collective_worker", "exiting_worker", "global_batch",
           "frozen_prefix_worker", "step_time_worker",
           "single_process_gradients", "freeze_change_worker", "group_lr_worker",
           "single_process_training", "sync_batch_stats", "batchnorm_worker", "claims_worker"]

# ---------------------------------------------------------------------------------------------
# Small workers that show how launch behaves (and what goes wrong: errors, hangs, dying ranks)
# ---------------------------------------------------------------------------------------------

def rank_sum_worker(rank: int, world_size: int) -> dict:
    """Each rank contributes rank + 1 to an all_reduce: every rank gets 1 + 2 + ... + world_size."""
    total = torch.tensor([rank + 1.0], device=_device(dist.get_backend()))
    dist.all_reduce(total)
    return {"rank": rank, "world size": world_size, "backend": dist.get_backend(), "sum": int(total.item()),
            "pid": os.getpid()}


def raising_worker(rank: int, world_size: int, bad_rank: int = 1) -> int:
    """Rank `bad_rank` raises a ValueError (the others return their rank)."""
    if rank == bad_rank:
        raise ValueError(f"rank {rank} found a bad batch")
    return rank


def unmatched_collective_worker(rank: int, world_size: int) -> int:
    """Rank 0 all-reduces, the others never do (busy elsewhere, e.g. in an `if rank == 0:` branch's
    mirror image): rank 0 waits for them forever, a hang."""
    if rank == 0:
        dist.all_reduce(torch.ones(1, device=_device(dist.get_backend())))
    else:
        time.sleep(3600)
    return rank


def exiting_worker(rank: int, world_size: int) -> int:
    """Rank 1 leaves without a word (os._exit), as a process killed by the OOM killer would."""
    if rank == 1:
        os._exit(3)
    return rank


# ---------------------------------------------------------------------------------------------
# Workers that measure DDP with frozen layers, per-group rates and BatchNorm (importable, so that
# new processes can run them). Every rank builds
# the same model from the same seed; rank r gets the r-th slice of one global batch of target images.
# BN layers are pinned to their running statistics (ftcourse.freeze_bn_stats) where a result is
# compared with one process on the global batch: with batch statistics each rank would normalise by
# its own slice, which is the BatchNorm experiment's subject, not these.
# ---------------------------------------------------------------------------------------------

def global_batch(seed: int, world_size: int, per_rank: int, step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The `step`-th global batch (world_size * per_rank target images, class-interleaved), the same on every rank."""
    task = target_task(shots=50, seed=seed)
    n = world_size * per_rank
    if n * (step + 1) > len(task.y_train):
        raise ValueError(f"{n * (step + 1)} images needed, the task has {len(task.y_train)}")
    return task.x_train[n * step:n * (step + 1)], task.y_train[n * step:n * (step + 1)]


def _local(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    per = len(x) // world_size
    return x[rank * per:(rank + 1) * per]


def _device(backend: str) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def _model(seed: int, freeze_point: int, device: torch.device) -> nn.Module:
    model = fresh_model(seed=seed)
    freeze_to(model, freeze_point, groups=unit_groups(model))
    freeze_bn_stats(model)   # after freeze_to, which unpins the BN layers of the trainable units
    return model.to(device)


def _same_on_every_rank(t: torch.Tensor) -> bool:
    gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, t.contiguous())
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def frozen_prefix_worker(rank: int, world_size: int, seed: int, freeze_points: list[int],
                         per_rank: int = 8) -> list[dict]:
    """One DDP step per freeze point (units frozen from the input): bytes all-reduced, gradients, frozen grads.

    Rank 0 also returns the averaged gradients (name -> tensor) to compare with one process on the global batch.
    """
    device = _device(dist.get_backend())
    x, y = global_batch(seed, world_size, per_rank)
    xl, yl = _local(x, rank, world_size).to(device), _local(y, rank, world_size).to(device)
    rows = []
    for point in freeze_points:
        model = _model(seed, point, device)
        ddp = nn.parallel.DistributedDataParallel(model)
        counter = ByteCounter().attach(ddp)
        F.cross_entropy(ddp(xl), yl).backward()
        params = dict(model.named_parameters())
        rows.append({
            "freeze point": point,
            "trainable parameters": sum(p.numel() for p in params.values() if p.requires_grad),
            "bytes all-reduced": counter.bytes,
            "buckets": counter.buckets,
            "frozen tensors with a gradient": sum(p.grad is not None for p in params.values() if not p.requires_grad),
            "gradients equal on every rank": all(_same_on_every_rank(p.grad) for p in params.values()
                                                 if p.grad is not None),
            "grads": {n: p.grad.cpu() for n, p in params.items() if p.grad is not None} if rank == 0 else None,
        })
    return rows


def step_time_worker(rank: int, world_size: int, seed: int, freeze_points: list[int], per_rank: int = 8,
                     reps: int = 7) -> list[dict]:
    """Seconds per DDP training step (forward, backward with its all-reduce, SGD step) at each freeze point, and
    for fastai's freeze (`train_bn=True`: the frozen units' BN weights and biases still train) at the last point.

    The configurations are timed side by side: `reps` rounds, each one step of every configuration in turn (after
    one untimed step each), so that a machine that slows down slows them all; every rank times the same steps
    (a barrier before each); rank 0 returns the median per configuration with the bytes one step all-reduced.
    BN layers of trainable units use batch statistics (training as it is done); frozen units' BN are pinned.
    """
    device = _device(dist.get_backend())
    x, y = global_batch(seed, world_size, per_rank)
    xl, yl = _local(x, rank, world_size).to(device), _local(y, rank, world_size).to(device)
    configs = [(p, False) for p in freeze_points] + [(freeze_points[-1], True)]
    runs = []
    for point, train_bn in configs:
        model = fresh_model(seed=seed).to(device)
        freeze_to(model, point, groups=unit_groups(model), train_bn=train_bn)
        ddp = nn.parallel.DistributedDataParallel(model)
        counter = ByteCounter().attach(ddp)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        runs.append({"model": model, "ddp": ddp, "counter": counter, "opt": opt, "times": [],
                     "freeze point": point, "train_bn": train_bn,
                     "trainable parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)})

    def step(run):
        run["opt"].zero_grad(set_to_none=True)
        F.cross_entropy(run["ddp"](xl), yl).backward()
        run["opt"].step()

    for run in runs:  # warm-up: allocations, DDP's first-iteration bookkeeping
        step(run)
        run["bytes per step"] = run["counter"].bytes
    for _ in range(reps):
        for run in runs:
            dist.barrier()
            t0 = time.perf_counter()
            step(run)
            if device.type == "cuda":
                torch.cuda.synchronize()
            run["times"].append(time.perf_counter() - t0)
    if rank != 0:
        return []
    return [{"freeze point": r["freeze point"], "train_bn": r["train_bn"],
             "trainable parameters": r["trainable parameters"], "bytes per step": r["bytes per step"],
             "median seconds": sorted(r["times"])[len(r["times"]) // 2], "times": r["times"]} for r in runs]


def single_process_gradients(seed: int, freeze_point: int, world_size: int, per_rank: int = 8) -> dict:
    """The gradients one process gets on the whole global batch (what DDP's averaged gradients should equal)."""
    model = _model(seed, freeze_point, torch.device("cpu"))
    x, y = global_batch(seed, world_size, per_rank)
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def _unfreeze_then_rewrap(seed: int, device: torch.device, xl: torch.Tensor, yl: torch.Tensor) -> dict:
    """Wrap with the head trainable, unfreeze layer4 (stage two of a recipe) without re-wrapping; then re-wrap."""
    out = {}
    model = _model(seed, -1, device)
    ddp = nn.parallel.DistributedDataParallel(model)
    F.cross_entropy(ddp(xl), yl).backward()
    unfreeze([model.layer4])
    model.zero_grad(set_to_none=True)
    F.cross_entropy(ddp(xl), yl).backward()
    out["unfreeze after wrapping: head gradients equal on every rank"] = _same_on_every_rank(model.fc.weight.grad)
    out["unfreeze after wrapping: layer4 gradients equal on every rank"] = all(
        _same_on_every_rank(p.grad) for p in model.layer4.parameters())
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    out["unfreeze after wrapping: layer4 weights equal on every rank after a step"] = all(
        _same_on_every_rank(p.detach()) for p in model.layer4.parameters())
    ddp = nn.parallel.DistributedDataParallel(model)  # the right way: build DDP again after the change
    model.zero_grad(set_to_none=True)
    F.cross_entropy(ddp(xl), yl).backward()
    out["re-wrapped: layer4 gradients equal on every rank"] = all(
        _same_on_every_rank(p.grad) for p in model.layer4.parameters())
    return out


def _freeze_after_wrapping(seed: int, device: torch.device, xl: torch.Tensor, yl: torch.Tensor) -> dict:
    """Wrap with layer4 trainable, then freeze it again: what the next two steps do."""
    out = {}
    model = _model(seed, -2, device)
    ddp = nn.parallel.DistributedDataParallel(model)
    F.cross_entropy(ddp(xl), yl).backward()
    freeze_to(model, -1, groups=unit_groups(model))
    errors = []
    for step in range(2):
        model.zero_grad(set_to_none=True)
        try:
            F.cross_entropy(ddp(xl), yl).backward()
            errors.append(None)
            if step == 0:
                out["freeze after wrapping: head gradients averaged at the step without an error"] = \
                    _same_on_every_rank(model.fc.weight.grad)
        except RuntimeError as exc:
            errors.append(str(exc).splitlines()[0][:200])
    out["freeze after wrapping: error at each of the next two steps"] = errors
    return out


def _find_unused_parameters(seed: int, device: torch.device, xl: torch.Tensor, yl: torch.Tensor) -> dict:
    """find_unused_parameters=True tolerates a freeze after wrapping (DDP walks the autograd graph every forward)."""
    model = _model(seed, -2, device)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    counter = ByteCounter().attach(ddp)
    freeze_to(model, -1, groups=unit_groups(model))
    freeze_bn_stats(model)
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(ddp(xl), yl).backward()
    return {"find_unused_parameters=True: steps after freezing run": True,
            "find_unused_parameters=True: head gradients equal on every rank":
                _same_on_every_rank(model.fc.weight.grad),
            "find_unused_parameters=True: bytes per step after freezing": counter.bytes // 2,
            "find_unused_parameters=True: 4 x trainable parameters after freezing": 4 * sum(
                p.numel() for p in model.parameters() if p.requires_grad)}


def freeze_change_worker(rank: int, world_size: int, seed: int, per_rank: int = 8) -> dict:
    """What happens when the frozen set changes after DDP is built, and the right ways to change it (four scenarios)."""
    device = _device(dist.get_backend())
    x, y = global_batch(seed, world_size, per_rank)
    xl, yl = _local(x, rank, world_size).to(device), _local(y, rank, world_size).to(device)
    out: dict = {}
    for scenario in (_unfreeze_then_rewrap, _freeze_after_wrapping, _find_unused_parameters):
        out |= scenario(seed, device, xl, yl)
    return out


def group_lr_worker(rank: int, world_size: int, seed: int, lr=slice(1e-3, 1e-1), steps: int = 4,
                    per_rank: int = 8) -> dict:
    """A few SGD steps with per-group rates (ftcourse.param_groups on ddp.module), as written for one process."""
    device = _device(dist.get_backend())
    model = _model(seed, 0, device)
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(param_groups(ddp.module, lr), momentum=0.9)
    for step in range(steps):
        x, y = global_batch(seed, world_size, per_rank, step)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(ddp(_local(x, rank, world_size).to(device)), _local(y, rank, world_size).to(device)).backward()
        optimizer.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {"rates": [g["lr"] for g in optimizer.param_groups],
            "weights equal on every rank": _same_on_every_rank(flat),
            "weights": {n: p.detach().cpu() for n, p in model.named_parameters()} if rank == 0 else None}


def single_process_training(seed: int, world_size: int, lr=slice(1e-3, 1e-1), steps: int = 4,
                            per_rank: int = 8) -> dict:
    """The same steps in one process on the global batches (the weights group_lr_worker's ranks should hold)."""
    model = _model(seed, 0, torch.device("cpu"))
    optimizer = torch.optim.SGD(param_groups(model, lr), momentum=0.9)
    for step in range(steps):
        x, y = global_batch(seed, world_size, per_rank, step)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return {n: p.detach() for n, p in model.named_parameters()}


def sync_batch_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance of `z` over ALL ranks' batches: what SyncBatchNorm computes.

    Each rank all-reduces its count, sum and sum of squares; every rank gets the global statistics.
    """
    dims = [d for d in range(z.dim()) if d != 1]
    stats = torch.stack([torch.full((z.shape[1],), z.numel() / z.shape[1], dtype=z.dtype, device=z.device),
                         z.sum(dims), (z * z).sum(dims)])
    dist.all_reduce(stats)
    count, total, squares = stats
    mean = total / count
    return mean, squares / count - mean * mean


def batchnorm_worker(rank: int, world_size: int, seed: int, per_rank: int = 2) -> dict:
    """BN statistics of `layer4[0].bn1` (2x2 feature maps: few values per channel and image): each rank's own
    batch, the synchronised ones, and the global batch's."""
    device = _device(dist.get_backend())
    model = fresh_model(seed=seed).to(device).eval()
    layer = model.layer4[0].bn1
    seen = {}
    hook = layer.register_forward_hook(lambda module, inputs, output: seen.update(z=inputs[0]))
    x, _ = global_batch(seed, world_size, per_rank)
    with torch.no_grad():
        model(x.to(device))   # what the layer sees, for the global batch
    hook.remove()
    z_all = seen["z"]
    z = _local(z_all, rank, world_size)
    dims = (0, 2, 3)
    out = {"local mean": z.mean(dims).cpu(), "local var": z.var(dims, unbiased=False).cpu(),
           "global mean": z_all.mean(dims).cpu(), "global var": z_all.var(dims, unbiased=False).cpu(),
           "channels": z.shape[1], "global batch": len(z_all), "feature map": tuple(z.shape[2:])}
    mean, var = sync_batch_stats(z)
    out |= {"synced mean": mean.cpu(), "synced var": var.cpu()}
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(layer)).to(device)[0]
    sync.reset_running_stats()
    sync.momentum = 1.0   # running mean := this batch's mean
    sync.train()
    try:
        sync(z)
        out["SyncBatchNorm running mean"] = sync.running_mean.cpu()
    except ValueError as exc:   # on the CPU: SyncBatchNorm refuses CPU tensors in training
        out["SyncBatchNorm error"] = str(exc).splitlines()[0]
    return out


def claims_worker(rank: int, world_size: int, seeds: list[int]) -> dict:
    """The measured DDP claims (frozen prefix, per-group rates, BatchNorm) for several seeds in one process group."""
    out = {}
    for seed in seeds:
        out[seed] = {"frozen prefix": frozen_prefix_worker(rank, world_size, seed, [0, 3, 5]),
                     "group rates": group_lr_worker(rank, world_size, seed),
                     "batchnorm": batchnorm_worker(rank, world_size, seed)}
    return out
