"""fit / evaluate / precompute_features, and the CLI."""
import math

import numpy as np
import pytest
import torch

import ftcourse as fc
from ftcourse.cli import main


def _tiny_task():
    return fc.target_task(shots=4, seed=0)


def test_fit_records_history_and_learns():
    fc.seed_everything(0)
    task = _tiny_task()
    model = fc.load_pretrained(num_classes=5)
    before = fc.evaluate(model, (task.x_train, task.y_train))
    hist = fc.fit(model, fc.make_loader(task.x_train, task.y_train, 10, shuffle=True), epochs=4, lr=0.01,
                  val=(task.x_train, task.y_train), progress=False)
    assert len(hist.loss) == len(hist.val_acc) == len(hist.seconds) == 4
    assert hist.val_acc[-1] > before
    assert "History(epochs=4" in repr(hist)


def test_fit_errors_are_clear():
    model = fc.course_backbone()
    for p in model.parameters():
        p.requires_grad_(False)
    loader = fc.make_loader(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="no trainable parameters"):
        fc.fit(model, loader, epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fc.fit(fc.course_backbone(), loader, epochs=0, progress=False)
    with pytest.raises(TypeError, match="DataLoader"):
        fc.evaluate(model, [torch.zeros(1)])
    with pytest.raises(ValueError, match="items"):
        fc.make_loader(torch.zeros(2), torch.zeros(3))


def test_evaluate_restores_mode():
    model = fc.course_backbone()
    model.train()
    fc.evaluate(model, (torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)))
    assert model.training


def test_head_on_cached_features_equals_head_on_frozen_body():
    """The cached-feature shortcut trains the same head as a frozen body in eval mode."""
    task = _tiny_task()
    model = fc.load_pretrained()
    fc.replace_head(model, 5, seed=0)
    twin = fc.load_pretrained()
    fc.replace_head(twin, 5, seed=0)
    fc.freeze_to(twin, -1)
    fc.seed_everything(0)
    fc.fit(twin, fc.make_loader(task.x_train, task.y_train, 8, shuffle=True, seed=3), epochs=3, lr=0.05,
           progress=False)
    feats, labels = fc.precompute_features(model, (task.x_train, task.y_train))
    fc.seed_everything(0)
    fc.fit(model.fc, fc.make_loader(feats, labels, 8, shuffle=True, seed=3), epochs=3, lr=0.05, progress=False)
    assert torch.allclose(model.fc.weight, twin.fc.weight, atol=1e-5)


def test_fine_tune_takes_per_group_rates_and_lp_ft_starts_from_the_probe():
    task = fc.target_task(shots=2, seed=0)
    model, acc = fc.fine_tune(task, seed=0, steps=2, lr=np.array([0.0, 0.0, 0.01]))
    pretrained = fc.load_pretrained()
    assert torch.equal(model.conv1.weight, pretrained.conv1.weight)  # groups 0 and 1 at rate 0 did not move
    assert torch.equal(model.layer4[0].conv1.weight, pretrained.layer4[0].conv1.weight)
    assert 0.0 <= acc <= 1.0
    with pytest.raises(TypeError, match="lr must be"):
        fc.fine_tune(task, seed=0, steps=1, lr="fast")
    probe, _ = fc.linear_probe(task, seed=0, steps=5)
    lpft, _ = fc.lp_ft(task, seed=0, steps=5, lr=0.0)  # lr 0: the second stage changes no weight
    assert torch.allclose(lpft.fc.weight, probe.fc.weight)


def test_gradual_unfreeze_trains_the_head_first_and_everything_at_the_end():
    task = fc.target_task(shots=2, seed=0)
    model, acc = fc.gradual_unfreeze(task, seed=0, steps=3, lr=slice(0.001, 0.01))
    pretrained = fc.load_pretrained()
    assert not torch.equal(model.conv1.weight, pretrained.conv1.weight)  # the last stage trains group 0
    assert all(p.requires_grad for p in model.parameters())
    assert 0.0 <= acc <= 1.0


def test_shifted_accuracy_reports_each_shift_and_the_mean():
    task = fc.target_task(shots=2, seed=0)
    model = fc.load_pretrained(5)
    accs = fc.shifted_accuracy(model, task, shifts=("blur", "noise"))
    assert set(accs) == {"blur", "noise", "mean"}
    assert math.isclose(accs["mean"], (accs["blur"] + accs["noise"]) / 2)


def test_seed_everything_and_device(monkeypatch):
    g1 = fc.seed_everything(5)
    a = torch.rand(3)
    fc.seed_everything(5)
    assert torch.equal(a, torch.rand(3)) and isinstance(g1, torch.Generator)
    with pytest.raises(ValueError):
        fc.seed_everything(-1)
    monkeypatch.setenv("FTCOURSE_DEVICE", "cpu")
    assert fc.get_device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            fc.get_device("cuda")


def test_doctor_reports_ok(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "OK    backbone.pt" in out and "OK    mnist5k.npy.gz" in out and "doctor: all good" in out


def test_doctor_fails_on_corrupted_data(tmp_path, monkeypatch, capsys):
    import shutil

    for f in fc.data_dir().iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "mnist5k.npy.gz").write_bytes(b"corrupted")
    monkeypatch.setenv("FTCOURSE_DATA", str(tmp_path))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "mnist5k.npy.gz" in out and "problems found" in out


def test_pretrain_cli_runs_to_a_side_file(tmp_path, capsys):
    """`ftcourse pretrain` reproduces the recipe; one epoch here, the full run is in benchmarks/."""
    out = tmp_path / "bb.pt"
    assert main(["pretrain", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "source_test_accuracy" in text and out.exists()
    state = fc.load_checkpoint(out)
    model = fc.course_backbone()
    model.load_state_dict(state)
    assert fc.read_manifest()["files"]["backbone.pt"]["sha256"] != fc.sha256_file(out)
