"""The `ftcourse` command: doctor (every problem in one run, exit code), pretrain (--force)."""
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import torch

import ftcourse
from ftcourse import cli
from ftcourse.cli import main


@pytest.fixture
def healthy(monkeypatch):
    """A clean environment for the doctor: no FTCOURSE_DEVICE, the real data folder."""
    monkeypatch.delenv("FTCOURSE_DEVICE", raising=False)
    monkeypatch.delenv("FTCOURSE_DATA", raising=False)


@pytest.fixture
def data_copy(tmp_path, monkeypatch, healthy):
    """A copy of data/ that FTCOURSE_DATA points at, free to damage."""
    folder = tmp_path / "data"
    folder.mkdir()
    for f in ftcourse.files.data_dir().iterdir():
        if f.is_file():  # data/ may also hold a results/ folder of study outputs
            shutil.copy(f, folder / f.name)
    monkeypatch.setenv("FTCOURSE_DATA", str(folder))
    return folder


def _doctor(capsys):
    """Run the doctor; return (its verdict, its output lines)."""
    ok = cli.doctor()
    return ok, capsys.readouterr().out.splitlines()


def _fails(lines):
    """The FAIL lines of a doctor report."""
    return [line for line in lines if line.strip().startswith("FAIL")]


def test_doctor_reports_ok(healthy, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "OK    backbone.pt" in out and "OK    mnist5k.npy.gz" in out and "FAIL" not in out
    assert "OK    torch" in out and "OK    lessons will run on cpu" in out
    assert out.splitlines()[-1] == "doctor: all good (0 problems)"


def test_doctor_fails_on_corrupted_data(data_copy, capsys):
    (data_copy / "mnist5k.npy.gz").write_bytes(b"corrupted")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "mnist5k.npy.gz" in out
    assert out.splitlines()[-1] == "doctor: 1 problem found (see the FAIL lines above)"


def test_doctor_reports_two_tampered_files_in_one_run(data_copy, capsys):
    (data_copy / "mnist5k.npy.gz").write_bytes(b"corrupted")
    (data_copy / "backbone.pt").write_bytes(b"also corrupted")
    ok, lines = _doctor(capsys)
    fails = _fails(lines)
    assert not ok and len(fails) == 2
    assert "mnist5k.npy.gz" in fails[0] and "backbone.pt" in fails[1]
    assert all("git checkout -- data/" in f for f in fails)
    assert any("SKIP  pretrained backbone load" in line for line in lines)
    assert lines[-1] == "doctor: 2 problems found (see the FAIL lines above)"


def test_doctor_reports_a_missing_file(data_copy, capsys):
    (data_copy / "backbone.pt").unlink()
    ok, lines = _doctor(capsys)
    assert not ok and _fails(lines) == [
        f"  FAIL  backbone.pt is missing from {data_copy}; restore it with `git checkout -- data/` "
        "(or point FTCOURSE_DATA at the course's data/ folder)"]
    assert any("OK    mnist5k.npy.gz" in line for line in lines)


def test_doctor_reports_a_missing_manifest(data_copy, capsys):
    (data_copy / "MANIFEST.json").unlink()
    ok, lines = _doctor(capsys)
    assert not ok and len(_fails(lines)) == 1 and "MANIFEST.json" in _fails(lines)[0]


def test_doctor_reports_an_unknown_device(healthy, monkeypatch, capsys):
    monkeypatch.setenv("FTCOURSE_DEVICE", "gpu")
    ok, lines = _doctor(capsys)
    assert not ok and _fails(lines) == [
        "  FAIL  FTCOURSE_DEVICE='gpu' is not a device torch knows (try cpu or cuda); "
        "unset FTCOURSE_DEVICE or set it to cpu"]


def test_doctor_reports_cuda_without_cuda(healthy, monkeypatch, capsys):
    monkeypatch.setenv("FTCOURSE_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, lines = _doctor(capsys)
    (fail,) = _fails(lines)
    assert not ok and "FTCOURSE_DEVICE='cuda' but CUDA is not available" in fail
    assert fail.endswith("unset FTCOURSE_DEVICE or set it to cpu")


def test_doctor_accepts_an_explicit_cpu(healthy, monkeypatch, capsys):
    monkeypatch.setenv("FTCOURSE_DEVICE", "cpu")
    ok, lines = _doctor(capsys)
    assert ok and not _fails(lines) and "  OK    lessons will run on cpu" in lines


def _pyproject_ranges():
    """The ranges pyproject.toml declares, read without the package (the source of truth)."""
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    deps = tomllib.loads(text)["project"]["dependencies"]
    return dict(cli._split_requirement(d) for d in deps)


def test_doctor_reports_a_too_old_torch(healthy, monkeypatch, capsys):
    real = cli._installed_version
    monkeypatch.setattr(cli, "_installed_version", lambda dist: "2.0.1" if dist == "torch" else real(dist))
    ok, lines = _doctor(capsys)
    lo = _pyproject_ranges()["torch"]
    assert not ok and _fails(lines) == [
        f"  FAIL  torch 2.0.1 is older than the supported {lo}; upgrade: pip install -U 'torch{lo}'"]


def test_doctor_reports_a_missing_package(healthy, monkeypatch, capsys):
    real = cli._installed_version
    monkeypatch.setattr(cli, "_installed_version", lambda dist: None if dist == "tqdm" else real(dist))
    ok, lines = _doctor(capsys)
    (fail,) = _fails(lines)
    assert not ok and "tqdm is not installed" in fail and "pip install 'tqdm>=4.66'" in fail


def test_doctor_reads_the_ranges_from_the_package_metadata():
    reqs = dict(map(cli._split_requirement, cli._requirements()))
    declared = _pyproject_ranges()
    assert reqs["torch"] == declared["torch"] and reqs["torchvision"] == declared["torchvision"]
    assert reqs["torch"].startswith(">=") and reqs["torchvision"].startswith(">=")
    assert "pytest" not in reqs  # test extras are not runtime requirements


@pytest.mark.parametrize("use_packaging", [True, False])
def test_version_ranges_with_and_without_packaging(monkeypatch, use_packaging):
    if not use_packaging:
        monkeypatch.setitem(sys.modules, "packaging.specifiers", None)  # import now raises ImportError
    assert cli._in_range("2.14.1+cu130", ">=2.1") and cli._in_range("2.1", ">=2.1")
    assert not cli._in_range("2.0.1", ">=2.1") and not cli._in_range("1.9", ">=2.1,<3")
    assert not cli._in_range("3.0", ">=2.1,<3") and cli._in_range("2.10", ">=2.9,<3")
    assert cli._too_old("2.0.1", ">=2.1") and not cli._too_old("3.0", ">=2.1,<3")


def test_doctor_reports_the_widget_extension_missing(healthy, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_labextension_dirs", lambda: [tmp_path / "share" / "jupyter" / "labextensions"])
    ok, lines = _doctor(capsys)
    assert not ok and _fails(lines) == [
        "  FAIL  widgets and progress bars will not render in JupyterLab: "
        "pip install 'ipywidgets>=8.1' jupyterlab_widgets"]


def test_doctor_finds_the_widget_extension_in_any_labextension_folder(healthy, monkeypatch, tmp_path, capsys):
    ext = tmp_path / "labextensions" / cli.WIDGET_EXTENSION
    ext.mkdir(parents=True)
    (ext / "package.json").write_text("{}")
    monkeypatch.setattr(cli, "_labextension_dirs", lambda: [tmp_path / "empty", tmp_path / "labextensions"])
    assert cli._widget_extension() == ext
    monkeypatch.setattr(cli, "_widgets_importable", lambda: False)  # folder there, python package gone
    ok, lines = _doctor(capsys)
    assert not ok and "widgets and progress bars will not render" in _fails(lines)[0]


def test_doctor_reports_every_problem_in_one_run(data_copy, monkeypatch, capsys):
    (data_copy / "mnist5k.npy.gz").write_bytes(b"corrupted")
    monkeypatch.setenv("FTCOURSE_DEVICE", "gpu")
    monkeypatch.setattr(cli, "_installed_version", lambda dist: "0.1")
    monkeypatch.setattr(cli, "_labextension_dirs", lambda: [])
    assert main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    n = 8 + 1 + 1 + 1  # every requirement too old, the device, the widgets, one data file
    assert len(_fails(lines)) == n and lines[-1] == f"doctor: {n} problems found (see the FAIL lines above)"


def test_pretrain_cli_runs_to_a_side_file(tmp_path, capsys):
    """`ftcourse pretrain` reproduces the recipe; one epoch here, the full run is in benchmarks/."""
    out = tmp_path / "bb.pt"
    assert main(["pretrain", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "source_test_accuracy" in text and out.exists()
    state = ftcourse.load_checkpoint(out)
    model = ftcourse.course_backbone()
    model.load_state_dict(state)
    assert ftcourse.files.read_manifest()["files"]["backbone.pt"]["sha256"] != ftcourse.files.sha256_file(out)


def _fake_pretrain(calls):
    """A stand-in for ftcourse.pretrain.pretrain that records its keyword arguments."""
    def pretrain(out=None, epochs=None, progress=True, update_manifest=True, overwrite=False):
        calls.append(dict(out=out, epochs=epochs, progress=progress, overwrite=overwrite))
        if not overwrite:
            raise FileExistsError(17, "File exists", str(out))
        return {"file": "bb.pt", "source_test_accuracy": 0.5}
    return pretrain


def test_pretrain_force_is_passed_as_overwrite(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("ftcourse.pretrain.pretrain", _fake_pretrain(calls))
    target = str(tmp_path / "bb.pt")
    assert main(["pretrain", "--out", target, "--epochs", "2", "--quiet", "--force"]) == 0
    assert calls == [dict(out=target, epochs=2, progress=False, overwrite=True)]
    assert "source_test_accuracy   0.5" in capsys.readouterr().out


def test_pretrain_refusing_to_overwrite_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("ftcourse.pretrain.pretrain", _fake_pretrain(calls))
    target = str(tmp_path / "bb.pt")
    assert main(["pretrain", "--out", target, "--quiet"]) == 1
    assert calls[0]["overwrite"] is False
    err = capsys.readouterr().err
    assert err == (f"ftcourse pretrain: {target} already exists and was left as it is; "
                   "pass --force to overwrite it, or --out OTHER.pt to write elsewhere\n")
    assert "Traceback" not in err


def test_device_checks_when_cuda_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cli._device_problem("cuda") is None and cli._device_problem("cuda:0") is None
    assert "only 1 GPU(s) are visible" in cli._device_problem("cuda:3")
    assert "cpu or cuda only" in cli._device_problem("meta")
