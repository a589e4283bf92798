"""`ftcourse lessons`: learner copies are cleared, never overwritten, and reset only after a backup."""
import os
from datetime import datetime

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ftcourse import workspace
from ftcourse.cli import main
from ftcourse.workspace import UnknownLessonError, WorkspaceError

NAMES = ["00_welcome_and_setup.ipynb", "01_where_backprop_stops.ipynb", "02_warming_up_the_head.ipynb"]
NOON = datetime(2024, 5, 17, 12, 0, 0)


def _lesson(title: str) -> nbformat.NotebookNode:
    """A small lesson as the course stores it: outputs, counts, tags, slideshow, one solution."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        new_markdown_cell(f"# {title}", metadata={"slideshow": {"slide_type": "slide"}, "tags": ["intro"]}),
        new_code_cell("x = 1\nprint(x)", execution_count=3, metadata={"tags": ["setup"], "deletable": False},
                      outputs=[new_output("stream", name="stdout", text="1\n")]),
        new_code_cell("# Exercise\nanswer = ...", execution_count=4),
        new_code_cell("# Solution\nanswer = 42\nanswer", execution_count=5, metadata={"jupyter": {"source_hidden": True}},
                      outputs=[new_output("execute_result", data={"text/plain": "42"}, execution_count=5)]),
        new_code_cell("check(answer)", execution_count=6, outputs=[new_output("stream", name="stdout", text="ok\n")]),
    ]
    return nb


@pytest.fixture
def source(tmp_path, monkeypatch):
    """A stand-in lessons/ folder (the real lessons are never touched); FTCOURSE_LESSONS points at it."""
    folder = tmp_path / "lessons"
    folder.mkdir()
    for name in NAMES:
        nbformat.write(_lesson(name), folder / name)
    monkeypatch.setenv("FTCOURSE_LESSONS", str(folder))
    return folder


@pytest.fixture
def dest(tmp_path):
    """The learner's folder (not created yet)."""
    return tmp_path / "mine"


def _read(path):
    return nbformat.read(path, as_version=4)


def _solutions(nb):
    return [c for c in nb.cells if workspace.is_solution(c)]


def test_copies_every_lesson_with_outputs_cleared_and_solutions_collapsed(source, dest, capsys):
    assert main(["lessons", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == NAMES  # no temp files left
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"copied {n} -> {dest / n} (outputs cleared, 1 solutions collapsed)" for n in NAMES]
    nb = _read(dest / NAMES[1])
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 4 and all(c.outputs == [] and c.execution_count is None for c in code)
    assert nb.cells[0].metadata["slideshow"] == {"slide_type": "slide"} and nb.cells[0].metadata["tags"] == ["intro"]
    assert nb.cells[1].metadata == {"tags": ["setup"], "deletable": False}  # cell metadata kept
    (sol,) = _solutions(nb)
    assert sol.source == "# Solution\nanswer = 42\nanswer"
    assert sol.metadata.jupyter.source_hidden is True and sol.metadata.collapsed is True
    assert nb.metadata.kernelspec.name == "python3"
    assert [c.source for c in nb.cells] == [c.source for c in _read(source / NAMES[1]).cells]


def test_no_solutions_leaves_them_out(source, dest, capsys):
    assert main(["lessons", "--no-solutions", str(dest)]) == 0
    assert "1 solutions left out" in capsys.readouterr().out
    nb = _read(dest / NAMES[0])
    assert not _solutions(nb) and len(nb.cells) == 4
    assert any(c.source.startswith("# Exercise") for c in nb.cells)


def test_an_existing_copy_is_never_overwritten(source, dest, capsys):
    dest.mkdir()
    mine = dest / NAMES[1]
    mine.write_bytes(b"my own work, not even json")
    assert main(["lessons", str(dest)]) == 0
    assert mine.read_bytes() == b"my own work, not even json"
    out = capsys.readouterr().out
    assert (f"kept your copy of {NAMES[1]}; use `ftcourse lessons --reset {NAMES[1]} {dest}` "
            "to get a fresh one") in out.splitlines()
    assert f"copied {NAMES[0]}" in out and f"copied {NAMES[2]}" in out
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert workspace.copy_lessons(dest, out=lambda line: None) == []  # second run: nothing to do
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_the_default_folder_and_its_reset_hint(source, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["lessons"]) == 0
    assert main(["lessons"]) == 0
    assert sorted(p.name for p in (tmp_path / "ftcourse-lessons").iterdir()) == NAMES
    assert f"use `ftcourse lessons --reset {NAMES[0]}` to get a fresh one" in capsys.readouterr().out


def test_reset_backs_up_the_learners_file_first(source, dest, capsys):
    workspace.copy_lessons(dest, out=lambda line: None)
    mine = dest / NAMES[1]
    nb = _read(mine)
    nb.cells[2].source = "# Exercise\nanswer = 41  # my attempt"
    nbformat.write(nb, mine)
    learner_bytes = mine.read_bytes()
    fresh = workspace.reset_lesson("01", dest, now=NOON)
    backup = dest / "01_where_backprop_stops.backup-20240517-120000.ipynb"
    assert fresh == mine and backup.read_bytes() == learner_bytes
    assert "answer = ...\n" not in learner_bytes.decode() and _read(mine).cells[2].source == "# Exercise\nanswer = ..."
    assert capsys.readouterr().out == (f"saved your copy of {NAMES[1]} as {backup.name}; "
                                       f"wrote a fresh {mine}\n")
    assert sorted(p.name for p in dest.iterdir()) == sorted(NAMES + [backup.name])


def test_two_resets_in_the_same_second_keep_both_backups(source, dest, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return NOON

    monkeypatch.setattr(workspace, "datetime", Frozen)
    workspace.copy_lessons(dest, out=lambda line: None)
    mine = dest / NAMES[0]
    mine.write_text("first attempt")
    assert main(["lessons", "--reset", "00", str(dest)]) == 0
    fresh_bytes = mine.read_bytes()
    assert main(["lessons", "--reset", "00", str(dest)]) == 0
    first = dest / "00_welcome_and_setup.backup-20240517-120000.ipynb"
    second = dest / "00_welcome_and_setup.backup-20240517-120000-2.ipynb"
    assert first.read_text() == "first attempt" and second.read_bytes() == fresh_bytes


def test_reset_without_a_copy_just_writes_one(source, dest, capsys):
    assert main(["lessons", "--reset", "02_warming_up_the_head", str(dest)]) == 0
    assert [p.name for p in dest.iterdir()] == [NAMES[2]]
    assert capsys.readouterr().out == f"no copy of {NAMES[2]} to back up; wrote a fresh {dest / NAMES[2]}\n"


@pytest.mark.parametrize("name", ["01", "01_where", "01_where_backprop_stops", "01_where_backprop_stops.ipynb"])
def test_a_lesson_is_named_by_file_name_stem_or_unique_prefix(source, name):
    assert workspace.resolve_lesson(name) == "01_where_backprop_stops.ipynb"


@pytest.mark.parametrize("name, why", [("07", "matches no lesson"), ("", "matches no lesson"),
                                       ("0", "is ambiguous (00_welcome_and_setup.ipynb, "
                                             "01_where_backprop_stops.ipynb, 02_warming_up_the_head.ipynb)")])
def test_unknown_or_ambiguous_names_touch_nothing(source, dest, capsys, name, why):
    dest.mkdir()
    mine = dest / NAMES[0]
    mine.write_text("mine")
    assert main(["lessons", "--reset", name, str(dest)]) == 2
    err = capsys.readouterr().err
    assert err == f"ftcourse lessons: {name!r} {why}; the lessons are: {', '.join(NAMES)}\n"
    assert [p.name for p in dest.iterdir()] == [NAMES[0]] and mine.read_text() == "mine"
    with pytest.raises(UnknownLessonError):
        workspace.resolve_lesson(name)



def _refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


def test_a_failed_reset_leaves_the_learners_file_and_no_temp_or_backup(source, dest, monkeypatch, capsys):
    workspace.copy_lessons(dest, out=lambda line: None)
    mine = dest / NAMES[1]
    mine.write_text("mine")
    monkeypatch.setattr(os, "replace", _refuse)
    assert main(["lessons", "--reset", "01", str(dest)]) == 1
    assert capsys.readouterr().err == (
        f"ftcourse lessons: cannot write to {dest} (Permission denied); none of your files was changed: "
        "choose a folder you can write to (ftcourse lessons OTHER_DIR) or fix its permissions\n")
    assert mine.read_text() == "mine" and sorted(p.name for p in dest.iterdir()) == NAMES


def test_a_failed_copy_leaves_no_partial_file(source, dest, monkeypatch, capsys):
    monkeypatch.setattr(os, "replace", _refuse)
    assert main(["lessons", str(dest)]) == 1
    assert list(dest.iterdir()) == [] and "cannot write to" in capsys.readouterr().err


def test_a_missing_lessons_folder_names_the_fix(source, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FTCOURSE_LESSONS", str(tmp_path / "nowhere"))
    assert main(["lessons", str(tmp_path / "mine")]) == 1
    err = capsys.readouterr().err
    assert f"no lesson notebooks found in {tmp_path / 'nowhere'}" in err and "set FTCOURSE_LESSONS" in err
    assert not (tmp_path / "mine").exists()
    with pytest.raises(WorkspaceError):
        workspace.lessons_source()


def test_dir_that_is_a_file_is_a_clear_error(source, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["lessons", str(tmp_path / "afile")]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err


def test_the_default_source_is_the_course_lessons_folder(monkeypatch):
    """Read only: the real lessons are listed and one is cleared in memory, nothing is written."""
    monkeypatch.delenv("FTCOURSE_LESSONS", raising=False)
    real = workspace.lessons_source()
    names = workspace.lesson_names()
    assert real.name == "lessons" and names[0].startswith("00_") and len(names) >= 5
    nb = workspace.learner_copy(real / names[0])
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    assert _solutions(nb) and all(c.metadata.collapsed for c in _solutions(nb))


def test_a_solution_cell_may_start_with_an_nbval_marker():
    from nbformat.v4 import new_code_cell

    assert workspace.is_solution(new_code_cell("# NBVAL_IGNORE_OUTPUT (digits)\n# Solution\nx = 1"))
    assert not workspace.is_solution(new_code_cell("x = 1\n# Solution"))
    assert workspace.is_solution(new_code_cell("# NBVAL_IGNORE_OUTPUT\n# (why)\n\n# Solution\nx = 1"))  # lesson 05
    assert workspace.is_solution({"cell_type": "code", "metadata": {}, "source": ["# Solution\n", "x = 1"]})  # raw JSON
    assert not workspace.is_solution(new_code_cell("x = 1", metadata={"jupyter": {"source_hidden": True}}))
    assert not workspace.is_solution({"cell_type": "markdown", "metadata": {}, "source": "# Solution"})
