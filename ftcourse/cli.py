"""The `ftcourse` command: `doctor` (is everything here and intact?), `lessons` (learner copies of the
notebooks) and `pretrain` (rebuild the backbone)."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import sys
import tomllib
from pathlib import Path
from typing import Callable

__all__ = ["main", "doctor"]

WIDGET_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
_DEVICE_FIX = "unset FTCOURSE_DEVICE or set it to cpu"
_OPS = {">=": lambda v, b: v >= b, ">": lambda v, b: v > b, "<=": lambda v, b: v <= b,
        "<": lambda v, b: v < b, "==": lambda v, b: v == b, "!=": lambda v, b: v != b,
        "~=": lambda v, b: v >= b}


# ---------------------------------------------------------------- doctor: package versions

def _requirements() -> list[str]:
    """ftcourse's runtime requirements ('torch>=2.1', ...): installed metadata, else pyproject.toml."""
    try:
        reqs = importlib.metadata.requires("ftcourse") or []
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        reqs = tomllib.loads(pyproject.read_text())["project"]["dependencies"] if pyproject.exists() else []
    return [r for r in reqs if "extra" not in r.partition(";")[2]]


def _split_requirement(req: str) -> tuple[str, str]:
    """('torch', '>=2.1') from 'torch>=2.1' (markers dropped)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)", req)
    return m.group(1), m.group(2).replace(" ", "")


def _installed_version(dist: str) -> str | None:
    """The installed version of distribution `dist`, or None if it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    """(2, 1, 0) from '2.1.0+cu121': the leading numeric release, for the fallback compare."""
    release = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(x) for x in release.group(0).split(".")) if release else ()


def _pad(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Pad two release tuples with zeros to the same length."""
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))


def _in_range(version: str, spec: str) -> bool:
    """True if `version` satisfies `spec` ('>=2.1,<3'); packaging if importable, else a tuple compare."""
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion
    except ImportError:
        for clause in filter(None, spec.split(",")):
            op, bound = re.match(r"(~=|==|!=|<=|>=|<|>)(.*)", clause).groups()
            if not _OPS[op](*_pad(_version_tuple(version), _version_tuple(bound))):
                return False
        return True
    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidVersion:
        return False


def _too_old(version: str, spec: str) -> bool:
    """True if `version` is below one of the lower bounds (>=, >, ~=) in `spec`."""
    for op, bound in re.findall(r"(~=|>=|>)([^,]+)", spec):
        lo = _pad(_version_tuple(version), _version_tuple(bound))
        if not (lo[0] > lo[1] if op == ">" else lo[0] >= lo[1]):
            return True
    return False


def _package_problem(dist: str, spec: str, version: str | None) -> str | None:
    """Why the installed `dist` is unusable (missing, too old, out of range, not importable), or None."""
    wanted = f"{dist}{spec}"
    if version is None:
        return f"{dist} is not installed; install it: pip install '{wanted}' (or pip install -e . in the course)"
    if spec and not _in_range(version, spec):
        if _too_old(version, spec):
            return f"{dist} {version} is older than the supported {spec}; upgrade: pip install -U '{wanted}'"
        return f"{dist} {version} is outside the supported {spec}; install a supported one: pip install '{wanted}'"
    module = dist.lower().replace("-", "_")
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken install can raise anything on import
        return (f"{dist} {version} is installed but `import {module}` fails ({exc}); "
                f"reinstall: pip install --force-reinstall '{wanted}'")
    return None


def _check_packages(out: Callable[[str], None]) -> list[str]:
    """Check each runtime requirement of ftcourse; print OK/FAIL lines; return the problems."""
    problems = []
    out("packages     (supported ranges from ftcourse's requirements)")
    for name, spec in map(_split_requirement, _requirements()):
        version = _installed_version(name)
        problem = _package_problem(name, spec, version)
        if problem:
            problems.append(problem)
            out(f"  FAIL  {problem}")
        else:
            out(f"  OK    {name} {version} (supported {spec or 'any'})")
    return problems


# ---------------------------------------------------------------- doctor: device

def _device_problem(name: str) -> str | None:
    """Why FTCOURSE_DEVICE=`name` cannot be used by the course, or None if it can."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        return f"FTCOURSE_DEVICE={name!r} is not a device torch knows (try cpu or cuda); {_DEVICE_FIX}"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return (f"FTCOURSE_DEVICE={name!r} but CUDA is not available here (torch.cuda.is_available() is False, "
                    f"torch built for CUDA {torch.version.cuda}); {_DEVICE_FIX}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return (f"FTCOURSE_DEVICE={name!r} but only {torch.cuda.device_count()} GPU(s) are visible; "
                    f"use cuda:0, or {_DEVICE_FIX}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            return f"FTCOURSE_DEVICE={name!r} but MPS is not available here; {_DEVICE_FIX}"
    elif dev.type != "cpu":
        return f"FTCOURSE_DEVICE={name!r}: the course runs on cpu or cuda only; {_DEVICE_FIX}"
    return None


def _check_device(out: Callable[[str], None]) -> list[str]:
    """Print the device line and check FTCOURSE_DEVICE; return the problems."""
    try:
        import torch
    except ImportError:
        out("device       not checked (torch is not importable, see above)")
        return []
    cuda = torch.cuda.is_available()
    gpu = f", GPU: {torch.cuda.get_device_name(0)}" if cuda else ""
    name = os.environ.get("FTCOURSE_DEVICE")
    out(f"device       FTCOURSE_DEVICE={'cpu (default)' if name is None else name}; "
        f"cuda available: {cuda}{gpu}; CPU threads: {torch.get_num_threads()}")
    problem = None if name is None else _device_problem(name)
    if problem:
        out(f"  FAIL  {problem}")
        return [problem]
    out(f"  OK    lessons will run on {name or 'cpu'}")
    return []


# ---------------------------------------------------------------- doctor: JupyterLab widgets

def _labextension_dirs() -> list[Path]:
    """Where JupyterLab looks for prebuilt extensions (as `jupyter labextension list` does)."""
    try:
        from jupyter_core.paths import jupyter_path
    except ImportError:
        return [Path(sys.prefix) / "share" / "jupyter" / "labextensions"]
    return [Path(p) for p in jupyter_path("labextensions")]


def _widgets_importable() -> bool:
    """True if the jupyterlab_widgets package can be imported."""
    return importlib.util.find_spec("jupyterlab_widgets") is not None


def _widget_extension() -> Path | None:
    """The folder of the installed JupyterLab widget extension, or None if there is none."""
    if not _widgets_importable():
        return None
    for folder in _labextension_dirs():
        path = folder / WIDGET_EXTENSION
        if (path / "package.json").is_file():
            return path
    return None


def _check_widgets(out: Callable[[str], None]) -> list[str]:
    """Check that JupyterLab can render ipywidgets (progress bars); return the problems."""
    out(f"widgets      JupyterLab extension {WIDGET_EXTENSION} (progress bars, interactive plots)")
    found = _widget_extension()
    if found is None:
        problem = ("widgets and progress bars will not render in JupyterLab: "
                   "pip install 'ipywidgets>=8.1' jupyterlab_widgets")
        out(f"  FAIL  {problem}")
        return [problem]
    out(f"  OK    installed in {found}")
    return []


# ---------------------------------------------------------------- doctor: data

def _check_data(out: Callable[[str], None], torch_ok: bool) -> list[str]:
    """Check every file in data/MANIFEST.json, then that the backbone loads; return the problems."""
    from .files import ChecksumError, data_dir, read_manifest, verified_path

    out(f"data         {data_dir()}")
    try:
        files = read_manifest()["files"]
    except ChecksumError as exc:
        out(f"  FAIL  {exc}")
        return [str(exc)]
    problems = []
    for name in files:
        if not (data_dir() / name).exists():
            problem = (f"{name} is missing from {data_dir()}; restore it with `git checkout -- data/` "
                       "(or point FTCOURSE_DATA at the course's data/ folder)")
        else:
            try:
                verified_path(name)
                out(f"  OK    {name} (sha256 {files[name]['sha256'][:12]}...)")
                continue
            except ChecksumError as exc:
                problem = str(exc)
        problems.append(problem)
        out(f"  FAIL  {problem}")
    if problems or not torch_ok:
        out("  SKIP  pretrained backbone load (fix the problems above first)")
        return problems
    try:
        from .models import load_pretrained

        load_pretrained()
        out("  OK    pretrained backbone loads (weights_only=True)")
    except Exception as exc:  # report, do not crash: the doctor's job is to list problems
        problem = f"the pretrained backbone does not load ({type(exc).__name__}: {exc})"
        problems.append(problem)
        out(f"  FAIL  {problem}")
    return problems


def doctor(out: Callable[[str], None] = print) -> bool:
    """Check packages, device, JupyterLab widgets and data; print every problem found; True if none."""
    out(f"python       {platform.python_version()} ({sys.executable})")
    problems = _check_packages(out)
    problems += _check_device(out)
    problems += _check_widgets(out)
    torch_ok = importlib.util.find_spec("torch") is not None
    problems += _check_data(out, torch_ok)
    n = len(problems)
    out("doctor: all good (0 problems)" if not n else
        f"doctor: {n} problem{'s' if n > 1 else ''} found (see the FAIL lines above)")
    return not n


# ---------------------------------------------------------------- lessons and pretrain

def _lessons(args: argparse.Namespace) -> int:
    """`ftcourse lessons [--reset NAME] [--no-solutions] [DIR]`."""
    from .workspace import UnknownLessonError, WorkspaceError, copy_lessons, reset_lesson

    try:
        if args.reset is not None:
            reset_lesson(args.reset, args.dir, solutions=not args.no_solutions)
        else:
            copy_lessons(args.dir, solutions=not args.no_solutions)
    except UnknownLessonError as exc:
        print(f"ftcourse lessons: {exc}", file=sys.stderr)
        return 2
    except WorkspaceError as exc:
        print(f"ftcourse lessons: {exc}", file=sys.stderr)
        return 1
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    """`ftcourse pretrain [--out FILE] [--epochs N] [--quiet] [--force]`."""
    from .files import data_dir, read_manifest
    from .pretrain import pretrain

    force = {"overwrite": True} if args.force else {}  # without it pretrain's default (never overwrite) holds
    try:
        summary = pretrain(out=args.out, epochs=args.epochs, progress=not args.quiet, **force)
    except FileExistsError as exc:
        where = exc.filename or args.out or data_dir() / "backbone.pt"
        print(f"ftcourse pretrain: {where} already exists and was left as it is; "
              "pass --force to overwrite it, or --out OTHER.pt to write elsewhere", file=sys.stderr)
        return 1
    for k, v in summary.items():
        print(f"{k:<22} {v}")
    if args.out:
        shipped = read_manifest().get("backbone", {})
        print(f"shipped backbone: source accuracy {shipped.get('source_test_accuracy')}, "
              f"sha256 {read_manifest()['files'][shipped['file']]['sha256'][:12]}...")
    return 0


def _parser() -> argparse.ArgumentParser:
    """The argument parser of the `ftcourse` command."""
    from .workspace import DEFAULT_DIR

    parser = argparse.ArgumentParser(prog="ftcourse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check packages, device, JupyterLab widgets and data checksums; "
                                  "exit 1 if anything is wrong")
    p = sub.add_parser("lessons", help="copy the lessons into a folder of your own (never overwrites your copies)")
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR, metavar="DIR",
                   help=f"where your copies go (default: ./{DEFAULT_DIR})")
    p.add_argument("--reset", metavar="NAME",
                   help="replace your copy of lesson NAME (e.g. 01) with a fresh one, after backing it up")
    p.add_argument("--no-solutions", action="store_true", help="leave the solution cells out")
    p = sub.add_parser("pretrain", help="retrain the course backbone on the source task (about 1 min on 2 cores)")
    p.add_argument("--out", help="write the checkpoint here instead of data/backbone.pt (manifest untouched)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (for a quick try)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="overwrite the checkpoint if it already exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `ftcourse` command with `argv` (default: sys.argv[1:]); return the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        return 0 if doctor() else 1
    if args.command == "lessons":
        return _lessons(args)
    return _pretrain(args)


if __name__ == "__main__":
    sys.exit(main())
