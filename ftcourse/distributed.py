"""More than one process: start `torch.distributed` workers from a notebook, collect what they return, clean up.

    results = ftcourse.distributed.launch(worker, world_size=2, args=(seed,))

`launch` starts `world_size` processes (spawned: each a fresh Python), joins them into one process group
(gloo on the CPU, nccl on GPUs), calls `worker(rank, world_size, *args)` in each and returns the list of
what the ranks returned. It always cleans up: every process is joined or killed and the process group
destroyed, also when a worker raises (its traceback reaches you in a `WorkerError`) or hangs (a
`WorkerTimeout` after `timeout` seconds: a hang is nearly always a collective that not every rank
called). The worker must be importable (defined in a module, not in the notebook): a spawned process
imports it by name, and a function defined in a notebook has no module to be imported from.

`ByteCounter` is a DDP communication hook: it all-reduces exactly as DDP's default does and counts the
bytes of every bucket, so you can see what a frozen prefix saves. The workers that measure DDP with
frozen layers, per-group rates and BatchNorm are at the end of this module.
"""
from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import pickle
import queue as queue_module
import socket
import time
import traceback
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .bn import freeze_bn_stats
from .data import target_task
from .groups import freeze_to, unfreeze, unit_groups
from .models import fresh_model
from .optim import param_groups

__all__ = ["launch", "leftovers", "WorkerError", "WorkerTimeout", "ByteCounter", "free_port", "default_backend",
           "ring_allreduce_seconds", "global_batch", "frozen_prefix_worker", "single_process_gradients",
           "freeze_change_worker", "group_lr_worker", "single_process_training", "batchnorm_worker"]


class WorkerError(RuntimeError):
    """A worker process raised, or died without a result; the message holds its rank and traceback."""


class WorkerTimeout(WorkerError):
    """The workers did not all finish in time; they were stopped."""


_LAST: dict[str, Any] = {"port": None, "processes": []}


def leftovers() -> dict:
    """What the last `launch` left behind: its worker processes still alive, and whether its port is still in use."""
    alive = [p.pid for p in _LAST["processes"] if p.is_alive()]
    in_use = False
    if _LAST["port"] is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # closed connections (TIME_WAIT) do not count
            try:
                s.bind(("127.0.0.1", _LAST["port"]))
            except OSError:
                in_use = True
    return {"processes alive": alive, "port": _LAST["port"], "port in use": in_use}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_backend(device: str | torch.device = "cpu") -> str:
    """nccl for CUDA devices, gloo otherwise (gloo runs everywhere, nccl only between GPUs)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def _check_importable(fn: Callable) -> None:
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not callable(fn):
        raise TypeError(f"worker must be a function worker(rank, world_size, *args), got {type(fn).__name__}")
    if module in (None, "__main__") or "<" in name:
        raise TypeError(f"worker {name or fn!r} is defined in {module or 'no module'} (a notebook or a script): spawned "
                        "processes can only run a function they can import; put it in a .py module and import it "
                        "from there (lambdas and nested functions cannot be used either)")


def _entry(rank: int, world_size: int, port: int, backend: str, fn: Callable, args: tuple,
           results: Any, threads: int, timeout: float) -> None:
    """What each process runs: join the group, call the worker, report, always leave the group."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
            torch.backends.cuda.matmul.allow_tf32 = False   # float32 as on the CPU: the lesson compares them
            torch.backends.cudnn.allow_tf32 = False
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout))
        value = fn(rank, world_size, *args)
        results.put((rank, "ok", pickle.dumps(value)))
    except BaseException:  # noqa: BLE001 - everything a worker raises goes back to the launcher
        results.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def launch(fn: Callable, world_size: int = 2, args: tuple = (), backend: str | None = None,
           timeout: float = 120.0, threads: int = 1, progress: bool = False) -> list:
    """Run `fn(rank, world_size, *args)` in `world_size` new processes joined by torch.distributed.

    Returns the ranks' return values, in rank order (they travel by pickle: return tensors, numbers,
    dicts, not modules holding process groups). backend: "gloo" (default; CPU) or "nccl" (one GPU per
    rank). threads: torch threads per process (1: two processes share a 2-core CPU without fighting).
    Raises WorkerError with the worker's traceback if a rank raises or dies, WorkerTimeout if the ranks
    have not all returned after `timeout` seconds. No process is left running either way.
    progress: a tqdm bar that counts the ranks as they return (starting the processes takes seconds).
    """
    _check_importable(fn)
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    backend = backend or "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' (CPU) or 'nccl' (GPUs), got {backend!r}")
    if backend == "nccl" and torch.cuda.device_count() < 1:
        raise ValueError("backend 'nccl' needs CUDA GPUs and none is visible; use backend='gloo' on the CPU")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    _LAST["port"], _LAST["processes"] = port, []
    procs = [ctx.Process(target=_entry, args=(rank, world_size, port, backend, fn, tuple(args), results, threads,
                                              timeout), daemon=True, name=f"ftcourse-rank{rank}")
             for rank in range(world_size)]
    done: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=world_size, desc=f"{getattr(fn, '__name__', 'worker')}: ranks done")
    try:
        for p in procs:
            p.start()
            _LAST["processes"].append(p)
        while len(done) < world_size:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [r for r in range(world_size) if r not in done]
                raise WorkerTimeout(f"rank(s) {missing} of {world_size} did not finish in {timeout:g} s and were "
                                    "stopped. A hang is nearly always a collective (all_reduce, a DDP backward, a "
                                    "barrier) that not every rank called; raise timeout if the work is just slow")
            try:
                rank, status, payload = results.get(timeout=min(left, 0.2))
            except queue_module.Empty:
                dead = [r for r, p in enumerate(procs) if r not in done and p.exitcode not in (None, 0)]
                if dead:
                    raise WorkerError(f"rank {dead[0]} died with exit code {procs[dead[0]].exitcode} "
                                      "without a result (killed, out of memory, or a crash in native code)") from None
                continue
            if status == "error":
                raise WorkerError(f"rank {rank} of {world_size} raised:\n{payload}")
            done[rank] = pickle.loads(payload)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        for p in procs:
            if p.pid is not None:
                p.join(timeout=10 if len(done) == world_size else 0.5)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        results.cancel_join_thread()
        results.close()
    return [done[r] for r in range(world_size)]


class ByteCounter:
    """A DDP communication hook: all-reduces each gradient bucket as DDP's default does, and counts it.

        counter = ByteCounter().attach(ddp_model)   # before the first backward
        ...; counter.bytes, counter.buckets          # sent so far, by this rank

    Only parameters that require grad when DDP is built are in buckets; a frozen prefix sends nothing.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self.buckets = 0

    def attach(self, model: nn.parallel.DistributedDataParallel) -> "ByteCounter":
        if not isinstance(model, nn.parallel.DistributedDataParallel):
            raise TypeError(f"attach to a DistributedDataParallel model, got {type(model).__name__}; "
                            "wrap it first: DistributedDataParallel(model)")
        model.register_comm_hook(self, ByteCounter._hook)
        return self

    @staticmethod
    def _hook(state, bucket):  # no annotations: DDP checks them, and this module's are strings
        """(state, dist.GradBucket) -> torch.futures.Future: count the bucket, then all-reduce it."""
        buffer = bucket.buffer()
        state.bytes += buffer.numel() * buffer.element_size()
        state.buckets += 1
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        return default_hooks.allreduce_hook(None, bucket)


def ring_allreduce_seconds(n_bytes: float, world_size: int, bandwidth_bytes_per_s: float) -> float:
    """Time a ring all-reduce of `n_bytes` needs on `world_size` workers (bandwidth term only).

    Each worker sends and receives 2 (N - 1) / N of the buffer (reduce-scatter, then all-gather); latency
    and overlap with the backward pass are left out, so this is the lower bound a frozen prefix scales.
    """
    if world_size < 1 or bandwidth_bytes_per_s <= 0:
        raise ValueError("world_size must be >= 1 and bandwidth > 0")
    return 2 * (world_size - 1) / world_size * n_bytes / bandwidth_bytes_per_s


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
# spawned processes can run them). Every rank builds
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


def frozen_prefix_worker(rank: int, world_size: int, seed: int, freeze_points: list[int], per_rank: int = 8) -> list[dict]:
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


def single_process_gradients(seed: int, freeze_point: int, world_size: int, per_rank: int = 8) -> dict:
    """The gradients one process gets on the whole global batch (what DDP's averaged gradients should equal)."""
    model = _model(seed, freeze_point, torch.device("cpu"))
    x, y = global_batch(seed, world_size, per_rank)
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def freeze_change_worker(rank: int, world_size: int, seed: int, per_rank: int = 8) -> dict:
    """What happens when the frozen set changes after DDP is built, and the right ways to change it."""
    device = _device(dist.get_backend())
    x, y = global_batch(seed, world_size, per_rank)
    xl, yl = _local(x, rank, world_size).to(device), _local(y, rank, world_size).to(device)
    out: dict = {}

    # 1. wrap with the head trainable, then unfreeze layer4 (stage two of the recipe) without re-wrapping
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

    # 2. the right way: build DDP again after the change
    ddp = nn.parallel.DistributedDataParallel(model)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(ddp(xl), yl).backward()
    out["re-wrapped: layer4 gradients equal on every rank"] = all(
        _same_on_every_rank(p.grad) for p in model.layer4.parameters())

    # 3. wrap with layer4 trainable, then freeze it again
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

    # 4. find_unused_parameters=True tolerates it (DDP then walks the autograd graph after every forward)
    model = _model(seed, -2, device)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    counter = ByteCounter().attach(ddp)
    freeze_to(model, -1, groups=unit_groups(model))
    freeze_bn_stats(model)
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(ddp(xl), yl).backward()
    out["find_unused_parameters=True: steps after freezing run"] = True
    out["find_unused_parameters=True: head gradients equal on every rank"] = _same_on_every_rank(model.fc.weight.grad)
    out["find_unused_parameters=True: bytes per step after freezing"] = counter.bytes // 2
    out["find_unused_parameters=True: 4 x trainable parameters after freezing"] = 4 * sum(
        p.numel() for p in model.parameters() if p.requires_grad)
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


def single_process_training(seed: int, world_size: int, lr=slice(1e-3, 1e-1), steps: int = 4, per_rank: int = 8) -> dict:
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
    """BN statistics of `layer4[0].bn1` (4x4 feature maps: few values per channel and image): each rank's own
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
