"""Nothing lost on write: atomic writes (files), atomic checkpoints (models), pretrain never clobbers by default."""
import json
import os
import stat

import pytest
import torch

import ftcourse.pretrain as pretrain_module
from ftcourse.files import atomic_path, atomic_write_bytes, sha256_file
from ftcourse.models import load_checkpoint, save_checkpoint
from ftcourse.pretrain import pretrain


class Crash(RuntimeError):
    """The failure a test injects half-way through a write."""


def replace_fails(src, dst):
    """os.replace on a full disk."""
    raise OSError("disk full")


def test_atomic_write_creates_and_replaces_leaving_no_temp_file(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert os.listdir(tmp_path) == ["a.bin"]


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_atomic_write_keeps_the_targets_permissions(tmp_path):
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write_bytes(target, b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_bytes() == b"new"


def test_failure_mid_write_keeps_the_old_content(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old content")
    with pytest.raises(Crash):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of the new")
            raise Crash("the process dies half-way")
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_failure_at_the_rename_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old content")
    monkeypatch.setattr(os, "replace", replace_fails)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    digest = save_checkpoint(state, path)
    assert digest == sha256_file(path) and os.listdir(tmp_path) == ["ckpt.pt"]
    real_save = torch.save

    def save_half_then_die(obj, f, *args, **kwargs):
        real_save({"w": torch.zeros(1)}, f)  # a partial file lands on disk...
        raise Crash("killed during torch.save")  # ...and the process dies

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(Crash):
        save_checkpoint({"w": torch.ones(2, 3)}, path)
    assert sha256_file(path) == digest and os.listdir(tmp_path) == ["ckpt.pt"]
    assert torch.equal(load_checkpoint(path, sha256=digest)["w"], state["w"])


@pytest.fixture
def no_training(monkeypatch):
    """pretrain's training loop, replaced by one that fails the test if it is ever reached."""
    def fit(*args, **kwargs):
        raise AssertionError("pretrain started training before refusing to overwrite")
    monkeypatch.setattr(pretrain_module, "fit", fit)


def test_pretrain_refuses_an_existing_out_before_training(tmp_path, no_training):
    out = tmp_path / "b.pt"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True") as info:
        pretrain(out=out, epochs=1, progress=False)
    assert "--force" in str(info.value) and "--out" in str(info.value) and str(out) in str(info.value)
    assert out.read_bytes() == b"precious"


def test_pretrain_refuses_the_shipped_backbone_without_overwrite(tmp_path, monkeypatch, no_training):
    monkeypatch.setenv("FTCOURSE_DATA", str(tmp_path))  # even a bug could not touch the real data/
    with pytest.raises(FileExistsError, match="shipped backbone"):
        pretrain(epochs=1, progress=False)
    assert os.listdir(tmp_path) == []


def test_pretrain_with_overwrite_replaces_the_file(tmp_path, monkeypatch):
    calls = []
    # a stand-in for the real epoch (about 35 s here): this test is about the file, not the training
    monkeypatch.setattr(pretrain_module, "fit", lambda *args, **kwargs: calls.append(kwargs["epochs"]))
    out = tmp_path / "b.pt"
    out.write_bytes(b"old")
    summary = pretrain(out=out, epochs=1, progress=False, overwrite=True)
    assert calls == [1]
    assert summary["sha256"] == sha256_file(out) and os.listdir(tmp_path) == ["b.pt"]
    assert "fc.weight" in load_checkpoint(out, sha256=summary["sha256"])


def test_manifest_update_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("FTCOURSE_DATA", str(tmp_path))
    monkeypatch.setattr(pretrain_module, "source_stats", lambda: ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6)))
    manifest = tmp_path / "MANIFEST.json"
    manifest.write_text(json.dumps({"files": {}}) + "\n")
    ckpt = tmp_path / "backbone.pt"
    ckpt.write_bytes(b"weights")
    summary = {"sha256": "ab" * 32, "source_test_accuracy": 0.9, "train_seconds": 1.0, "torch": "x", "machine": "y"}
    pretrain_module._update_manifest(ckpt, summary, {"epochs": 1}, 5)
    written = json.loads(manifest.read_text())
    assert written["files"]["backbone.pt"]["size"] == 7 and written["backbone"]["input_std"] == [0.4, 0.5, 0.6]
    assert sorted(os.listdir(tmp_path)) == ["MANIFEST.json", "backbone.pt"]

    old = manifest.read_bytes()
    monkeypatch.setattr(os, "replace", replace_fails)
    with pytest.raises(OSError, match="disk full"):
        pretrain_module._update_manifest(ckpt, dict(summary, sha256="cd" * 32), {"epochs": 1}, 5)
    assert manifest.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["MANIFEST.json", "backbone.pt"]
