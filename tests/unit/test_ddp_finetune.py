"""The torchrun entry point (`python -m ftcourse.ddp_finetune`): two gloo processes train what one process
trains on the same global batches, a run killed mid-way and resumed ends with the weights of a run never
stopped, and no process is left behind. Each run is a subprocess, as a user starts it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ftcourse
from ftcourse import ddp_finetune

pytestmark = pytest.mark.slow
ENV = os.environ | {"FTCOURSE_THREADS": "1", "OMP_NUM_THREADS": "1"}
COMMON = ["--task", "far", "--shots", "10", "--seed", "0", "--batch-size", "16", "--checkpoint-every", "4"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
ACCURACY_TOL = 0.05  # per-process BN batch statistics (16 images, not 32) make 2 processes differ from 1 a little


def _run(cmd, tmp_path, expect_ok=True):
    out = subprocess.run([str(c) for c in cmd], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    if expect_ok:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _finetune(tmp_path, name, stages, world=2, extra=()):
    start = TORCHRUN if world == 2 else [sys.executable]
    cmd = [*start, "-m", "ftcourse.ddp_finetune", *COMMON, "--stages", stages, "--save", f"{name}.pt",
           "--out", f"{name}.json", *extra]
    _run(cmd, tmp_path)
    return json.loads((tmp_path / f"{name}.json").read_text()), torch.load(tmp_path / f"{name}.pt", weights_only=True)


def _leftovers(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_two_gloo_processes_train_what_one_process_trains_on_the_same_global_batch(tmp_path):
    # the head alone (body frozen, its BN pinned): no batch statistics differ, so the weights agree to rounding
    one, w1 = _finetune(tmp_path, "one", "head:6", world=1)
    two, w2 = _finetune(tmp_path, "two", "head:6", world=2)
    assert (one["world size"], one["backend"], two["world size"], two["backend"]) == (1, "none", 2, "gloo")
    for key in w1:
        assert torch.allclose(w1[key].float(), w2[key].float(), atol=1e-5), key
    # everything trained: each process normalises its 8 images with their own BN statistics; accuracy agrees
    one, _ = _finetune(tmp_path, "one_all", "head:10,all:30", world=1, extra=("--batch-size", "32"))
    two, _ = _finetune(tmp_path, "two_all", "head:10,all:30", world=2, extra=("--batch-size", "32"))
    for split in ("val accuracy", "test accuracy"):
        assert abs(one[split] - two[split]) <= ACCURACY_TOL, (split, one[split], two[split])
        assert one[split] > 0.5  # five textures: chance is 0.2


def test_a_killed_run_resumes_to_the_weights_of_a_run_never_stopped(tmp_path):
    stages = "head:4,all:8"
    full, w_full = _finetune(tmp_path, "full", stages, extra=("--checkpoint", "full_state.pt"))
    marker = str(tmp_path / "killed_state.pt")
    crashed = _run([*TORCHRUN, "-m", "ftcourse.ddp_finetune", *COMMON, "--stages", stages, "--checkpoint", marker,
                    "--crash-after-step", "8"], tmp_path, expect_ok=False)
    assert crashed.returncode != 0 and not (tmp_path / "killed.json").exists()
    state = torch.load(marker, weights_only=True)  # the checkpoint the kill left: complete, tensors only
    assert state["step"] == 8 and state["stage"] == 1
    resumed, w_res = _finetune(tmp_path, "resumed", stages, extra=("--checkpoint", marker, "--resume"))
    assert resumed["resumed from step"] == 8 and resumed["steps"] == full["steps"] == 12
    for key in w_full:
        assert torch.equal(w_full[key], w_res[key]), key
    assert resumed["test accuracy"] == full["test accuracy"]
    assert _leftovers(marker) == [] and _leftovers(str(tmp_path)) == []


def test_bad_stages_and_batches_name_the_fix(tmp_path):
    assert ddp_finetune.parse_stages("head:20,all:100") == [(-1, 20), (0, 100)]
    assert ddp_finetune.parse_stages("2:5") == [(2, 5)]
    with pytest.raises(ValueError, match="FREEZE_TO:STEPS pairs"):
        ddp_finetune.parse_stages("head,all:100")
    args = ddp_finetune._args([*COMMON, "--batch-size", "15"])
    with pytest.raises(SystemExit, match="--batch-size 15 does not split over 2 processes: use a multiple"):
        ddp_finetune._loader(ftcourse.far_task(shots=10), args, rank=0, world=2, epoch=0)
    out = _run([sys.executable, "-m", "ftcourse.ddp_finetune", "--resume"], tmp_path, expect_ok=False)
    assert out.returncode == 2 and "--resume needs --checkpoint PATH" in out.stderr
