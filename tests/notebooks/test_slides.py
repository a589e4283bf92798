"""The lessons as a lecture deck: the structure rules of `ftcourse.lab.slides`, on every lesson and on small cases.

The estimate is checked against Chromium's rendering in tests/browser (every slide of every deck <= 720 px).
"""
import base64
import json
import struct
import zlib
from pathlib import Path

import pytest

from ftcourse.lab import slides

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def md(text, kind=None):
    meta = {"slideshow": {"slide_type": kind}} if kind else {}
    return {"cell_type": "markdown", "metadata": meta, "source": text}


def code(text, kind=None, outputs=(), hidden=False):
    meta = {"slideshow": {"slide_type": kind}} if kind else {}
    if hidden:
        meta["jupyter"] = {"source_hidden": True}
    return {"cell_type": "code", "metadata": meta, "source": text, "outputs": list(outputs), "execution_count": 1}


def stream(lines):
    return {"output_type": "stream", "name": "stdout", "text": "".join(f"line {i}\n" for i in range(lines))}


def png(width, height):
    """A real PNG header (the estimate reads only the size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk).decode()
    return {"output_type": "display_data", "metadata": {}, "data": {"image/png": data, "text/plain": "<Figure>"}}


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_lesson_follows_the_slide_rules(path):
    cells = _cells(path)
    assert slides.problems(cells) == []
    units = slides.slides(cells)
    headings = [i for i, c in enumerate(cells) if slides.is_heading(c)]
    assert [u[0] for u in units if slides.slide_type(cells[u[0]]) == "slide"] == headings
    for unit in units:  # the cap: nothing projects taller than the screen, by the estimate
        assert sum(slides.estimated_height(cells[i]) for i in unit) <= slides.MAX_SLIDE_PX


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_findings_stand_alone_after_their_output_and_solutions_are_skipped(path):
    cells = _cells(path)
    findings = [i for i, c in enumerate(cells) if slides.is_findings(c)]
    if path.stem != "00_welcome_and_setup":
        assert len(findings) >= 4, f"{path.name}: {len(findings)} findings cells"
    for i in findings:
        assert slides.slide_type(cells[i]) == "subslide"
        assert cells[i - 1]["cell_type"] == "code" and cells[i - 1]["outputs"], f"{path.name} cell {i}"
        assert "\n#" not in "".join(cells[i]["source"]), f"{path.name} cell {i}: a heading inside a finding"
    solutions = [c for c in cells if slides.is_solution(c)]
    assert solutions and all(slides.slide_type(c) == "skip" for c in solutions)


def test_a_finding_and_the_next_heading_become_two_cells():
    cells = [code("x = 1", outputs=[stream(1)]),
             md("**What it showed.** One line.\n\n## Experiment 2: next\n\n**What we test.** More.")]
    split = slides.split_at_headings(cells)
    assert [c["source"] for c in split[1:]] == ["**What it showed.** One line.",
                                               "## Experiment 2: next\n\n**What we test.** More."]
    assert split[2]["id"] and split[2]["metadata"] == {}
    assigned = slides.assign_slide_types([md("# Title"), *split])
    assert [slides.slide_type(c) for c in assigned] == ["slide", "-", "subslide", "slide"]
    assert slides.problems(assigned) == []


def test_assign_skips_solutions_and_starts_a_subslide_when_a_slide_is_full():
    cells = [md("## Experiment"), code("a = 1", outputs=[stream(12)]), code("b = 2", outputs=[stream(12)]),
             md("**Exercise 1.** Do it."), code("answer = None"), code("# Solution\nanswer = 1", hidden=True)]
    kinds = [slides.slide_type(c) for c in slides.assign_slide_types(cells)]
    assert kinds == ["slide", "-", "subslide", "subslide", "-", "skip"]
    assert slides.slides(cells) == [[0, 1], [2], [3, 4]]


def test_problems_name_every_broken_rule():
    cells = [md("## A heading that continues a slide"), code("x = 1", "slide"),
             md("**What it showed.** Not on its own.\n\n## Next"), code("# Solution\nx = 2", hidden=True),
             code("y = 3", "subslide", outputs=[stream(40)])]
    found = "\n".join(slides.problems(cells))
    assert "a heading must start a slide" in found
    assert "only a `#`/`##` heading starts a slide" in found
    assert "a heading inside the cell" in found
    assert "a finding must be its own sub-slide" in found
    assert "an executed solution must be skipped" in found
    assert f"over {slides.MAX_SLIDE_PX} px" in found
    assert "unknown slide_type" in "\n".join(slides.problems([code("x", "bogus")]))


def test_estimated_height_counts_lines_and_image_pixels():
    small, tall = code("x = 1", outputs=[stream(2)]), code("x = 1", outputs=[stream(20)])
    assert slides.estimated_height(tall) - slides.estimated_height(small) == pytest.approx(18 * 22.5)
    plot = code("plt.show()", outputs=[png(750, 420)])
    assert slides.estimated_height(plot) == pytest.approx(47 + 22.5 + 49 + 0.95 * 420)
    wide = code("plt.show()", outputs=[png(2180, 840)])  # scaled down to the 1090-px output area: 420 px
    assert slides.estimated_height(wide) == pytest.approx(slides.estimated_height(plot))


def test_long_markdown_is_split_between_paragraphs():
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 60 for i in range(12))
    parts = slides.split_long_markdown([md(text)])
    assert len(parts) > 1 and "\n\n".join(p["source"] for p in parts) == text
    assert all(slides.estimated_height(p) <= slides.MAX_SLIDE_PX for p in parts)


def test_a_tall_plotting_cell_projects_its_figure_only():
    plot = code("\n".join(f"ax.set(x{i}=1)" for i in range(15)) + "\nplt.show()", outputs=[png(750, 500)])
    table = code("\n".join(f"print({i})" for i in range(5)), outputs=[stream(12)])
    cells = slides.assign_slide_types([md("## Experiment"), plot, table])
    assert slides.input_hidden(plot) and not slides.input_hidden(table)  # only a figure may lose its code
    assert slides.estimated_height(plot) < slides.estimated_height(plot, with_input=True) - 300
    assert slides.problems(cells) == []
    table["metadata"]["tags"] = [slides.HIDE_INPUT]
    assert "hides code that computes" in "\n".join(slides.problems(cells))
