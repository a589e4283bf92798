"""Learner copies of the lessons (`ftcourse lessons`): cleared, never overwritten, reset with a backup.

Bottom layer: imports only `ftcourse.files` (its atomic writes) and never imports torch.
"""
from __future__ import annotations

import itertools
import os
from datetime import datetime
from pathlib import Path
from typing import Callable

import nbformat

from .files import atomic_write_text, course_folder

__all__ = ["WorkspaceError", "UnknownLessonError", "DEFAULT_DIR", "lessons_source", "lesson_names",
           "resolve_lesson", "is_solution", "learner_copy", "copy_lessons", "reset_lesson"]

DEFAULT_DIR = "ftcourse-lessons"


class WorkspaceError(RuntimeError):
    """A learner copy could not be made; the message says why and what to do."""


class UnknownLessonError(WorkspaceError):
    """A lesson name matched no lesson, or more than one."""


def lessons_source() -> Path:
    """The course's lessons: $FTCOURSE_LESSONS if set, else `lessons/` of the checkout, else the installed
    package's copy (ftcourse/course_lessons, in a wheel)."""
    env = os.environ.get("FTCOURSE_LESSONS")
    path = Path(env) if env else course_folder("lessons", "course_lessons", "*.ipynb")
    if not path.is_dir() or not any(path.glob("*.ipynb")):
        raise WorkspaceError(
            f"no lesson notebooks found in {path}: reinstall ftcourse (pip install ftcourse from the course's "
            "repository or its git URL; the wheel carries the lessons) or set FTCOURSE_LESSONS to a lessons/ folder")
    return path


def lesson_names(source: Path | None = None) -> list[str]:
    """File names of the course's notebooks, in lesson order."""
    return sorted(p.name for p in (source or lessons_source()).glob("*.ipynb"))


def resolve_lesson(name: str, source: Path | None = None) -> str:
    """The one lesson file name that `name` (file name, stem or unique prefix) refers to."""
    names = lesson_names(source)
    exact = [n for n in names if name in (n, n.removesuffix(".ipynb"))]
    matches = exact or [n for n in names if name and n.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    why = "matches no lesson" if not matches else f"is ambiguous ({', '.join(matches)})"
    raise UnknownLessonError(f"{name!r} {why}; the lessons are: {', '.join(names)}")


def is_solution(cell: dict) -> bool:
    """An exercise's solution: a code cell whose opening comment lines include `# Solution`.

    The lessons' one marker of a solution, in the source where it travels with the cell (an nbval marker and
    other comments or blank lines may come first). `learner_copy` collapses or drops these cells and the slides
    skip them; the collapsed input in the lessons is the consequence, not the mark. Takes nbformat cells and
    cells read as plain JSON (source as a list of lines).
    """
    if cell.get("cell_type") != "code":
        return False
    source = cell.get("source", "")
    lines = ("".join(source) if isinstance(source, list) else source).splitlines()
    opening = itertools.takewhile(lambda line: line.startswith("#") or not line.strip(), lines)
    return any(line.startswith("# Solution") for line in opening)


def learner_copy(path: Path, solutions: bool = True) -> nbformat.NotebookNode:
    """A notebook ready for a learner: no outputs, no execution counts, solutions collapsed or left out."""
    nb = nbformat.read(path, as_version=4)
    if not solutions:
        nb.cells = [c for c in nb.cells if not is_solution(c)]
    for cell in nb.cells:  # cell metadata (tags, slideshow) is kept: slides and markers work in the copy
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if is_solution(cell):
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
            cell.metadata["collapsed"] = True
    nb.metadata.pop("widgets", None)  # saved widget state is output too
    return nb


def _notebook_text(nb: nbformat.NotebookNode) -> str:
    """The notebook as nbformat writes it, ending with a newline."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def _cannot_write(dest: Path, exc: OSError) -> WorkspaceError:
    """The error for a folder that cannot be written to."""
    return WorkspaceError(
        f"cannot write to {dest} ({exc.strerror or exc}); none of your files was changed: "
        f"choose a folder you can write to (ftcourse lessons OTHER_DIR) or fix its permissions")


def _reset_hint(name: str, dest: Path) -> str:
    """The command that resets lesson `name` in `dest`."""
    where = "" if dest.resolve() == Path(DEFAULT_DIR).resolve() else f" {dest}"
    return f"ftcourse lessons --reset {name}{where}"


def _prepare(dest: Path) -> None:
    """Create `dest` if needed; a clear error if it is not a folder or cannot be made."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WorkspaceError(f"{dest} exists and is not a folder; choose another folder") from None
    except OSError as exc:
        raise _cannot_write(dest, exc) from None


def copy_lessons(dest: str | os.PathLike = DEFAULT_DIR, solutions: bool = True,
                 source: Path | None = None, out: Callable[[str], None] = print) -> list[Path]:
    """Copy every lesson missing from `dest` as a learner copy; never overwrite; return the files written."""
    source = source or lessons_source()
    dest = Path(dest)
    _prepare(dest)
    written = []
    for name in lesson_names(source):
        target = dest / name
        if target.exists():
            out(f"kept your copy of {name}; use `{_reset_hint(name, dest)}` to get a fresh one")
            continue
        nb = learner_copy(source / name, solutions)
        try:
            atomic_write_text(target, _notebook_text(nb))
        except OSError as exc:
            raise _cannot_write(dest, exc) from None
        written.append(target)
        fate = "collapsed" if solutions else "left out"
        out(f"copied {name} -> {target} (outputs cleared, {_count_solutions(source / name)} solutions {fate})")
    return written


def _count_solutions(path: Path) -> int:
    """How many solution cells the course's notebook at `path` has."""
    return sum(map(is_solution, nbformat.read(path, as_version=4).cells))


def _backup_path(target: Path, now: datetime) -> Path:
    """`NAME.backup-YYYYmmdd-HHMMSS.ipynb` beside `target`, with -2, -3... if that name is taken."""
    stem = f"{target.stem}.backup-{now.strftime('%Y%m%d-%H%M%S')}"
    path, n = target.with_name(f"{stem}.ipynb"), 1
    while path.exists():
        n += 1
        path = target.with_name(f"{stem}-{n}.ipynb")
    return path


def _write_backup(target: Path, now: datetime) -> Path:
    """Copy `target`'s bytes to a new backup file (exclusive create, never overwrites); return its path."""
    data = target.read_bytes()
    while True:
        backup = _backup_path(target, now)
        try:
            f = open(backup, "xb")
        except FileExistsError:  # taken between the check and the open: try the next name
            continue
        try:
            with f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            backup.unlink(missing_ok=True)
            raise
        return backup


def reset_lesson(name: str, dest: str | os.PathLike = DEFAULT_DIR, solutions: bool = True,
                 source: Path | None = None, now: datetime | None = None,
                 out: Callable[[str], None] = print) -> Path:
    """Back up the learner's copy of lesson `name` in `dest`, then write a fresh one; return its path."""
    source = source or lessons_source()
    lesson = resolve_lesson(name, source)
    dest = Path(dest)
    _prepare(dest)
    target = dest / lesson
    text = _notebook_text(learner_copy(source / lesson, solutions))
    backup = None
    try:
        if target.exists():
            backup = _write_backup(target, now or datetime.now())
        atomic_write_text(target, text)
    except OSError as exc:
        if backup is not None:
            backup.unlink(missing_ok=True)  # the learner's file is untouched, so the backup is not needed
        raise _cannot_write(dest, exc) from None
    if backup is not None:
        out(f"saved your copy of {lesson} as {backup.name}; wrote a fresh {target}")
    else:
        out(f"no copy of {lesson} to back up; wrote a fresh {target}")
    return target
