"""ftcourse.distributed: real processes (gloo on the CPU), their errors and hangs, and nothing left behind."""
import multiprocessing
import socket
import time
from unittest import mock

import psutil  # installed with ipykernel (nbval needs it)
import pytest
import torch
import torch.distributed as dist
from torch import nn

import ftcourse.cost
from ftcourse import distributed
from ftcourse.lab import ddp_workers

pytestmark = pytest.mark.slow  # each launch spawns fresh Python processes (a few seconds)


def _workers_left():
    """Child processes of this test process still alive, but multiprocessing's own helpers: the resource
    tracker and the forkserver (each started once, they live as long as the parent; not workers). The workers
    themselves are the forkserver's children, with its command line, so only direct children can be helpers)."""
    me, left = psutil.Process(), []
    for child in me.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            helper = child.ppid() == me.pid and ("multiprocessing.resource_tracker" in cmd
                                                  or "multiprocessing.forkserver" in cmd)
            if child.status() != psutil.STATUS_ZOMBIE and not helper:
                left.append(child)
        except psutil.NoSuchProcess:
            pass
    return left + multiprocessing.active_children()


@pytest.fixture(autouse=True)
def nothing_left_behind():
    before = {p.pid for p in _workers_left()}  # a process an earlier module left (an nbval kernel closing) is not ours
    yield
    assert not [p for p in _workers_left() if p.pid not in before], "a worker process outlived its launch"


def test_launch_runs_every_rank_in_one_group_and_returns_in_rank_order():
    results = distributed.launch(ddp_workers.rank_sum_worker, 2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["sum"] == 3 and r["world size"] == 2 and r["backend"] == "gloo" for r in results)
    assert all(not psutil.pid_exists(r["pid"]) or psutil.Process(r["pid"]).status() == psutil.STATUS_ZOMBIE
               for r in results)


def test_a_worker_defined_outside_a_module_is_refused_before_anything_starts():
    def nested(rank, world_size):
        return rank

    for fn in (nested, lambda rank, world_size: rank):
        with pytest.raises(TypeError, match="put it in a .py module"):
            distributed.launch(fn, 2)
    main_fn = type(nested)(nested.__code__, {"__name__": "__main__"}, "in_main")
    main_fn.__module__ = "__main__"
    with pytest.raises(TypeError, match="__main__"):
        distributed.launch(main_fn, 2)


def test_a_raising_worker_reaches_the_caller_with_rank_and_traceback():
    with pytest.raises(distributed.WorkerError) as info:
        distributed.launch(ddp_workers.raising_worker, 2)
    text = str(info.value)
    assert "rank 1 of 2 raised" in text and "ValueError: rank 1 found a bad batch" in text
    assert "Traceback" in text and "raising_worker" in text


def test_a_hang_ends_at_the_timeout_and_frees_the_port():
    before = {p.pid for p in _workers_left()}
    t0 = time.monotonic()
    with pytest.raises(distributed.WorkerTimeout, match="collective"):
        distributed.launch(ddp_workers.unmatched_collective_worker, 2, timeout=4)
    assert time.monotonic() - t0 < 4 + 15  # the timeout, plus starting and stopping the processes
    assert not [p for p in _workers_left() if p.pid not in before]
    port = distributed.free_port()
    with socket.socket() as s:  # nothing listens on a fresh port; binding works
        s.bind(("127.0.0.1", port))


def test_a_worker_that_dies_without_a_result_is_reported():
    with pytest.raises(distributed.WorkerError, match="rank 1 died with exit code 3"):
        distributed.launch(ddp_workers.exiting_worker, 2, timeout=60)


def test_the_clean_up_never_waits_forever_on_a_process_that_stays_alive():
    # a process SIGKILL does not end, or whose forkserver no longer reports its exit
    stuck = mock.Mock(pid=4242, **{"is_alive.return_value": True})
    with pytest.warns(RuntimeWarning, match=r"rank 0 \(pid 4242\) is still reported alive after SIGKILL"):
        distributed._reap([stuck], mock.Mock(), multiprocessing.Event(), finished=True)
    timeouts = [c.kwargs.get("timeout", c.args[0] if c.args else None) for c in stuck.join.call_args_list]
    assert len(timeouts) == 3 and None not in timeouts  # every join had a timeout


@pytest.mark.parametrize("kwargs, error, match", [
    ({"world_size": 0}, ValueError, "world_size must be an int >= 1"),
    ({"world_size": True}, ValueError, "world_size"),
    ({"backend": "mpi"}, ValueError, "'gloo' \\(CPU\\) or 'nccl'"),
    ({"timeout": 0}, ValueError, "timeout must be > 0"),
])
def test_bad_arguments_are_refused_with_the_fix(kwargs, error, match):
    with pytest.raises(error, match=match):
        distributed.launch(ddp_workers.rank_sum_worker, **kwargs)


def test_nccl_without_a_gpu_names_gloo(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="use backend='gloo'"):
        distributed.launch(ddp_workers.rank_sum_worker, 2, backend="nccl")


def test_byte_counter_needs_a_ddp_model():
    with pytest.raises(TypeError, match="wrap it first"):
        distributed.ByteCounter().attach(nn.Linear(2, 2))


def test_byte_counter_counts_what_ddp_sends_in_one_process(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        model = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 3))
        model[0].requires_grad_(False)  # frozen before wrapping: never all-reduced
        ddp = nn.parallel.DistributedDataParallel(model)
        counter = distributed.ByteCounter().attach(ddp)
        ddp(torch.randn(4, 10)).sum().backward()
        assert counter.bytes == 4 * (5 * 3 + 3) and counter.buckets == 1
        assert model[0].weight.grad is None
    finally:
        dist.destroy_process_group()


def test_ring_allreduce_seconds():
    assert ftcourse.cost.ring_allreduce_seconds(1e9, 1, 1e9) == 0
    assert ftcourse.cost.ring_allreduce_seconds(1e9, 2, 1e9) == pytest.approx(1.0)
    assert ftcourse.cost.ring_allreduce_seconds(1e9, 64, 10e9) == pytest.approx(2 * 63 / 64 / 10)
    with pytest.raises(ValueError):
        ftcourse.cost.ring_allreduce_seconds(1e9, 8, 0)


def test_default_backend():
    assert distributed.default_backend("cpu") == "gloo" and distributed.default_backend("cuda") == "nccl"
