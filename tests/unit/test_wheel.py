"""The wheel works outside the checkout: built from a copy of the repository, installed into a fresh venv that
shares this environment's big packages (torch, jupyterlab: a .pth file, no download), then `ftcourse doctor`,
`ftcourse lessons DIR` and `load_pretrained()` run from another folder with no FTCOURSE_* variable."""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd, cwd, env, timeout=600):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy of what the repository tracks for the package: the checkout is never built in
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("ftcourse", "data", "lessons"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTCOURSE_")}
    # the shared packages' JupyterLab extensions (the widget manager doctor looks for) live under this prefix
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "share" / "jupyter"),
                                                        env.get("JUPYTER_PATH")]))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", src],
         tmp, env)
    wheel = next((tmp / "dist").glob("ftcourse-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).strip())
    (site / "_shared_big_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         tmp, env)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return wheel, venv, elsewhere, env


def test_the_wheel_carries_the_lab_the_lessons_and_the_data_with_their_manifest(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    lessons = sorted(p.name for p in (ROOT / "lessons").glob("*.ipynb"))
    data = [p.relative_to(ROOT / "data").as_posix() for p in (ROOT / "data").rglob("*") if p.is_file()]
    assert "ftcourse/lab/studies.py" in names and "ftcourse/cli.py" in names
    assert {f"ftcourse/course_lessons/{n}" for n in lessons} <= names and len(lessons) >= 7
    assert {f"ftcourse/course_data/{n}" for n in data} <= names and "ftcourse/course_data/MANIFEST.json" in names


def test_doctor_lessons_and_the_backbone_work_from_the_installed_wheel(installed):
    _, venv, elsewhere, env = installed
    python, ftcourse = venv / "bin" / "python", venv / "bin" / "ftcourse"
    where = _run([python, "-c", "import ftcourse, ftcourse.files as f, ftcourse.workspace as w; "
                  "m = ftcourse.load_pretrained(); print(ftcourse.__file__); print(f.data_dir()); "
                  "print(w.lessons_source()); print(type(m).__name__, m.fc.out_features)"], elsewhere, env).split("\n")
    assert all(Path(p).is_relative_to(venv) for p in where[:3]), where  # the wheel's files, not the checkout's
    assert where[1].endswith("course_data") and where[2].endswith("course_lessons")
    assert where[3] == "ResNet 5"
    report = _run([ftcourse, "doctor"], elsewhere, env)
    assert "doctor: all good" in report and "backbone.pt (sha256 " in report
    assert f"data         {venv}" in report  # the checksums were verified on the wheel's copy
    _run([ftcourse, "lessons", "mine"], elsewhere, env)
    copied = sorted(p.name for p in (elsewhere / "mine").glob("*.ipynb"))
    assert copied == sorted(p.name for p in (ROOT / "lessons").glob("*.ipynb"))
