"""More than one process: start `torch.distributed` workers from a notebook, collect what they return, clean up.

    results = ftcourse.distributed.launch(worker, world_size=2, args=(seed,))

`launch` starts `world_size` processes (each a fresh Python, forked from a server process that imported torch
and ftcourse once, Python's "forkserver": a launch starts in about a second, not the 5 s of importing torch
in every process; "spawn" where there is no forkserver), joins them into one process group
(gloo on the CPU, nccl on GPUs), calls `worker(rank, world_size, *args)` in each and returns the list of
what the ranks returned. It always cleans up: every process is joined or killed and the process group
destroyed, also when a worker raises (its traceback reaches you in a `WorkerError`) or hangs (a
`WorkerTimeout` after `timeout` seconds: a hang is nearly always a collective that not every rank
called). The worker must be importable (defined in a module, not in the notebook): a new process
imports it by name, and a function defined in a notebook has no module to be imported from.

`ByteCounter` is a DDP communication hook: it all-reduces exactly as DDP's default does and counts the
bytes of every bucket, so you can see what a frozen prefix saves. This module imports only `ftcourse.inputs` of
ftcourse; the course's DDP workers (frozen layers, per-group rates and BatchNorm under DDP) are in
`ftcourse.lab.ddp_workers`.
"""
from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import pickle
import queue as queue_module
import socket
import sys
import time
import traceback
import warnings
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from .inputs import require_int

__all__ = ["launch", "leftovers", "WorkerError", "WorkerTimeout", "ByteCounter", "free_port", "default_backend"]


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
        raise TypeError(f"worker {name or fn!r} is defined in {module or 'no module'} "
                        "(a notebook or a script): new "
                        "processes can only run a function they can import; put it in a .py module and import it "
                        "from there (lambdas and nested functions cannot be used either)")


def _entry(rank: int, world_size: int, port: int, backend: str, fn: Callable, args: tuple,
           results: Any, threads: int, timeout: float, environ: dict, leave: Any) -> None:
    """What each process runs: join the group, call the worker, report, wait until the launcher says every rank
    has reported (`leave`), leave the group. A rank that closed its connections as soon as it was done could cut
    off a slower rank still reading that rank's last message of a collective: a hang or a "connection closed"."""
    os.environ.clear()
    os.environ.update(environ)  # the launcher's environment now, not the forkserver's when it started
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
        leave.wait(timeout)
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    results.close()
    results.join_thread()  # the result has left this process...
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # ...so skip the interpreter's teardown of torch (about 1.5 s a launch)


def _check_launch(world_size, timeout, backend) -> str:
    """The backend to use; bad arguments -> an error that names the fix."""
    require_int("world_size", world_size, low=1, expected="an int >= 1")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    backend = backend or "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' (CPU) or 'nccl' (GPUs), got {backend!r}")
    if backend == "nccl" and torch.cuda.device_count() < 1:
        raise ValueError("backend 'nccl' needs CUDA GPUs and none is visible; use backend='gloo' on the CPU")
    return backend


def _dead(procs: list, done: dict[int, Any], wait: float = 0.0) -> int | None:
    """The first rank that exited with an error code without a result (looking for up to `wait` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        dead = [r for r, p in enumerate(procs) if r not in done and p.exitcode not in (None, 0)]
        if dead or time.monotonic() >= deadline:
            return dead[0] if dead else None
        time.sleep(0.05)


def _collect(procs: list, results: Any, timeout: float, done: dict[int, Any], bar) -> None:
    """Fill `done` with each rank's value as it arrives; raise on an error, a dead rank or the deadline."""
    world_size, deadline = len(procs), time.monotonic() + timeout
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
            dead = _dead(procs, done)
            if dead is not None:
                raise WorkerError(f"rank {dead} died with exit code {procs[dead].exitcode} "
                                  "without a result (killed, out of memory, or a crash in native code)") from None
            continue
        if status == "error":
            dead = _dead(procs, done, wait=1.0)  # a rank that died first is the cause; this error, its echo
            if dead is not None and dead != rank:
                raise WorkerError(f"rank {dead} died with exit code {procs[dead].exitcode} without a result "
                                  f"(killed, out of memory, or a crash in native code); then rank {rank} raised: "
                                  f"{payload.strip().splitlines()[-1]}")
            raise WorkerError(f"rank {rank} of {world_size} raised:\n{payload}")
        done[rank] = pickle.loads(payload)
        if bar is not None:
            bar.update(1)


def _reap(procs: list, results: Any, leave: Any, finished: bool) -> None:
    """Let the ranks leave; join every process (briefly if a rank failed), terminate then kill what is still alive,
    close the queue. Every wait is bounded."""
    leave.set()
    for p in procs:
        if p.pid is not None:
            p.join(timeout=10 if finished else 0.5)
    for rank, p in enumerate(procs):
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=10)  # never an unbounded wait: a forkserver that stopped answering would make it one
        if p.is_alive():
            warnings.warn(f"rank {rank} (pid {p.pid}) is still reported alive after SIGKILL; "
                          "ftcourse.distributed.leftovers() lists it", RuntimeWarning, stacklevel=3)
    results.cancel_join_thread()
    results.close()


def _context():
    """Processes forked from Python's forkserver, which imports this module (so torch and ftcourse) once for all
    launches; spawn (a fresh interpreter importing everything) where the platform has no forkserver."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def launch(fn: Callable, world_size: int = 2, args: tuple = (), backend: str | None = None,
           timeout: float = 120.0, threads: int = 1, progress: bool = False) -> list:
    """Run `fn(rank, world_size, *args)` in `world_size` new processes joined by torch.distributed.

    Returns the ranks' return values, in rank order (they travel by pickle: return tensors, numbers,
    dicts, not modules holding process groups). backend: "gloo" (default; CPU) or "nccl" (one GPU per
    rank). threads: torch threads per process (1: two processes share a 2-core CPU without fighting).
    Raises WorkerError with the worker's traceback if a rank raises or dies, WorkerTimeout if the ranks
    have not all returned after `timeout` seconds. No process is left running either way.
    progress: a tqdm bar that counts the ranks as they return (the first launch takes seconds: the forkserver
    imports torch).
    """
    _check_importable(fn)
    backend = _check_launch(world_size, timeout, backend)
    ctx = _context()
    results, leave = ctx.Queue(), ctx.Event()
    port = free_port()
    _LAST["port"], _LAST["processes"] = port, []
    procs = [ctx.Process(target=_entry, args=(rank, world_size, port, backend, fn, tuple(args), results, threads,
                                              timeout, dict(os.environ), leave),
                         daemon=True, name=f"ftcourse-rank{rank}") for rank in range(world_size)]
    done: dict[int, Any] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=world_size, desc=f"{getattr(fn, '__name__', 'worker')}: ranks done")
    try:
        for p in procs:
            p.start()
            _LAST["processes"].append(p)
        _collect(procs, results, timeout, done, bar)
    finally:
        if bar is not None:
            bar.close()
        _reap(procs, results, leave, finished=len(done) == world_size)
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
