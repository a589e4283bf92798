"""Notebook hygiene: committed executed top to bottom, clean metadata, no installs, downloads or path hacks.

nbval (configured in pyproject.toml) re-runs every lesson and compares outputs; this file checks what
nbval does not: how the notebooks were saved.
"""
import json
import re
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[2] / "lessons").glob("*.ipynb"))
ALLOWED_NB_METADATA = {"kernelspec", "language_info", "widgets"}
ALLOWED_CELL_METADATA = {"tags", "jupyter", "slideshow"}
FORBIDDEN_CODE = [
    (re.compile(r"^\s*[!%]\s*(pip|conda)\b", re.M), "install cell"),
    (re.compile(r"sys\.path\.(append|insert)"), "sys.path hack"),
    (re.compile(r"https?://"), "URL in code (no downloads in tested cells)"),
    (re.compile(r"weights\s*=\s*[\"']DEFAULT|weights\s*=\s*\w+_Weights\."), "downloads pretrained weights"),
]


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_lesson_names_are_ordered_and_descriptive():
    for path in LESSONS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name


def test_lessons_are_present():
    """The course ships exactly its seven lessons; the per-notebook checks below run once for each of them."""
    assert [p.name for p in LESSONS] == [
        "00_welcome_and_setup.ipynb",
        "01_where_backprop_stops.ipynb",
        "02_warming_up_the_head.ipynb",
        "03_differential_learning_rates.ipynb",
        "04_batchnorm_when_fine_tuning.ipynb",
        "05_the_recipe.ipynb",
        "06_beyond_one_process.ipynb",
    ]


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_notebook_is_executed_top_to_bottom(path):
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: run it top to bottom in a fresh kernel"
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{path.name}: committed with an error output"
    assert sum(bool(c["outputs"]) for c in code) >= len(code) // 2, f"{path.name}: most cells show nothing"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_notebook_metadata_is_clean(path):
    nb = _load(path)
    assert set(nb["metadata"]) <= ALLOWED_NB_METADATA, f"{path.name}: extra metadata {set(nb['metadata'])}"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        extra = set(cell.get("metadata", {})) - ALLOWED_CELL_METADATA
        assert not extra, f"{path.name}: cell metadata {extra}"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_notebook_code_has_no_installs_downloads_or_path_hacks(path):
    for cell in _load(path)["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        code = "\n".join(line.split("#")[0] for line in src.splitlines())  # comments may mention them
        for pattern, what in FORBIDDEN_CODE:
            assert not pattern.search(code), f"{path.name}: {what} in\n{src[:200]}"
        text = json.dumps(cell["outputs"])
        assert not re.search(r"at 0x[0-9a-f]{6,}", text) or "NBVAL_IGNORE_OUTPUT" in src, \
            f"{path.name}: memory address in a compared output"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_notebook_opens_with_a_learners_question_and_seeds(path):
    cells = _load(path)["cells"]
    assert cells[0]["cell_type"] == "markdown"
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert "seed_everything" in "".join(first_code["source"]), f"{path.name}: seed in the first code cell"


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_every_saved_widget_view_has_its_saved_state(path):
    """JupyterLab draws a committed widget (explorer, progress bar) from the saved state, not as `VBox(children=...`."""
    nb = _load(path)
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    views = [o["data"][WIDGET_VIEW]["model_id"] for c in nb["cells"] if c["cell_type"] == "code"
             for o in c["outputs"] if WIDGET_VIEW in o.get("data", {})]
    missing = [m for m in views if m not in state]
    assert not missing, f"{path.name}: {len(missing)} of {len(views)} widget views without saved state; re-run scripts/refresh_lessons.py"
