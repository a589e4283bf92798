"""The lessons as slides: the structure a lecture deck follows, and how tall each slide projects.

A lesson projects with `make slides` (`jupyter nbconvert --to slides`, reveal.js at 1280x720) or live
with RISE. The cell metadata `slideshow.slide_type` decides what goes on which slide; the rules:

- a title or section heading (a markdown cell starting with `# ` or `## `: an experiment, the summary,
  the exercises) starts a slide, and nothing else does;
- a finding ("**What it showed**") is a markdown cell of its own, a sub-slide right after the output
  it discusses, never in the same cell as the next heading;
- a `###` heading and each exercise start a sub-slide; the other cells follow on the current
  (sub-)slide until it would project taller than the screen, then a sub-slide starts;
- executed solutions (code cells marked `# Solution`, `ftcourse.workspace.is_solution`) are skipped: they would
  print the answers;
- a plotting cell too tall with its code gets the tag `hide-input`: the deck shows its figure only
  (`make slides` removes the input of tagged cells; JupyterLab shows every cell's code as usual).

`estimated_height` measures a cell as `make slides` renders it at 1280x720 (fitted on the rendered
lessons: 22.5 px per source or output line, printed lines are not wrapped, images at their pixel
height); `assign_slide_types` applies the rules, `problems` lists what breaks them.
"""
from __future__ import annotations

import base64
import re
import struct
import uuid
from typing import Any

from ..workspace import is_solution

# A (sub-)slide is estimated at most this tall. Measured in Chromium, the rendered height of the
# lessons' slides (offline deck) is within -110/+55 px of the estimate, so this keeps every slide on a
# 720-px screen.
MAX_SLIDE_PX = 640
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}
FINDINGS = "**What it showed"
HIDE_INPUT = "hide-input"

_HEADING = re.compile(r"^#{1,2} ")
_LIST_OR_BLOCK = re.compile(r"^(#|>|- |\* |\d+\. |\|)")
_LIST_ITEM = re.compile(r"^(- |\* |\d+\. )")
_OUTPUT_WIDTH_CHARS = 140    # printed text keeps its lines (the deck's template) up to about this width
_IMAGE_WIDTH_PX = 1090       # wider images are scaled down to the output area


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def slide_type(cell: dict[str, Any]) -> str:
    """The cell's `slideshow.slide_type`, "-" (continue the current slide) when unset."""
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


def is_heading(cell: dict[str, Any]) -> bool:
    """A markdown cell that opens with a title (`# `) or a section heading (`## `)."""
    return cell["cell_type"] == "markdown" and bool(_HEADING.match(_source(cell).lstrip()))


def is_findings(cell: dict[str, Any]) -> bool:
    return cell["cell_type"] == "markdown" and _source(cell).lstrip().startswith(FINDINGS)


def _starts_subslide(cell: dict[str, Any]) -> bool:
    text = _source(cell).lstrip()
    return cell["cell_type"] == "markdown" and (text.startswith("### ") or text.startswith("**Exercise"))


def _png_height(b64: str) -> int:
    raw = base64.b64decode(b64[:64])
    width, height = struct.unpack(">II", raw[16:24])
    return round(height * min(1.0, _IMAGE_WIDTH_PX / max(width, 1)))


def _text_lines(text: str, width: int) -> int:
    return sum(max(1, -(-len(line) // width)) for line in text.rstrip("\n").split("\n"))


def _markdown_height(text: str) -> float:
    px = 13.0
    for block in re.split(r"\n\s*\n", text.strip()):
        px += 26.0 + (50.0 if block.lstrip().startswith(">") else 0.0)   # a quote block has its own margins
        lines: list[str] = []
        for raw in block.splitlines():
            s = raw.strip()
            if lines and not _LIST_OR_BLOCK.match(s) and not lines[-1].startswith("#"):
                lines[-1] += " " + s   # a soft-wrapped line of the same paragraph or list item
            else:
                lines.append(s)
        for s in lines:
            if s.startswith("# "):
                px += 47.0 * -(-len(s) // 30)
            elif s.startswith("### "):
                px += 28.5 * -(-len(s) // 70)
            elif s.startswith("#"):
                px += 48.0 * -(-len(s) // 60)
            elif s.startswith(">"):   # quotes: larger, italic, narrower
                px += 27.0 * max(1, -(-len(s) // 60))
            elif _LIST_ITEM.match(s):
                px += 3.6 + 21.5 * max(1, -(-len(s) // 75))
            else:
                px += 22.0 * max(1, -(-len(s) // 95))
    return px


def _output_height(out: dict[str, Any]) -> float:
    if out.get("output_type") == "stream":
        return 22.5 * _text_lines("".join(out.get("text", "")), _OUTPUT_WIDTH_CHARS)
    if out.get("output_type") == "error":
        return 22.5 * _text_lines("\n".join(out.get("traceback", [])), _OUTPUT_WIDTH_CHARS)
    data = out.get("data", {})
    if "image/png" in data:
        return 49 + 0.95 * _png_height("".join(data["image/png"]))
    if "application/vnd.jupyter.widget-view+json" in data:
        return 60.0   # the static deck shows a placeholder line, not the widget
    if "text/html" in data:
        return 30.0 * max(1, "".join(data["text/html"]).count("<tr"))
    if "text/plain" in data:
        return 22.5 * _text_lines("".join(data["text/plain"]), _OUTPUT_WIDTH_CHARS)
    return 0.0


def _has_figure(cell: dict[str, Any]) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def input_hidden(cell: dict[str, Any]) -> bool:
    """Whether the deck shows only this cell's output (the `hide-input` tag)."""
    return HIDE_INPUT in cell.get("metadata", {}).get("tags", [])


def estimated_height(cell: dict[str, Any], with_input: bool | None = None) -> float:
    """About how many pixels the cell projects at 1280x720 in the `make slides` deck."""
    if cell["cell_type"] == "markdown":
        return _markdown_height(_source(cell))
    if cell["cell_type"] != "code":
        return 0.0
    if with_input is None:
        with_input = not input_hidden(cell)
    src = 47.0 + 22.5 * len(_source(cell).splitlines()) if with_input else 20.0
    return src + sum(_output_height(o) for o in cell.get("outputs", []))


def slides(cells: list[dict[str, Any]]) -> list[list[int]]:
    """The indices of the cells each slide or sub-slide shows, in order (skipped cells left out)."""
    units: list[list[int]] = []
    for i, cell in enumerate(cells):
        kind = slide_type(cell)
        if kind in ("skip", "notes"):
            continue
        if kind in ("slide", "subslide") or not units:
            units.append([])
        units[-1].append(i)
    return units


def split_at_headings(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Markdown cells split so that a `#`/`##`/`###` heading always opens its own cell.

    A finding followed by the next experiment's heading in one cell becomes two cells; the part from
    the heading on gets a new cell id.
    """
    out: list[dict[str, Any]] = []
    for cell in cells:
        text = _source(cell)
        if cell["cell_type"] != "markdown":
            out.append(cell)
            continue
        parts = re.split(r"\n\s*\n(?=#{1,3} )", text)
        for k, part in enumerate(parts):
            if k == 0:
                new = dict(cell, source=part.rstrip("\n"))
            else:
                new = {"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {}, "source": part.rstrip("\n")}
            out.append(new)
    return out


def split_long_markdown(cells: list[dict[str, Any]], max_px: float = MAX_SLIDE_PX) -> list[dict[str, Any]]:
    """Markdown cells taller than a slide split between paragraphs, each part as tall as fits."""
    out: list[dict[str, Any]] = []
    for cell in cells:
        if cell["cell_type"] != "markdown" or estimated_height(cell) <= max_px:
            out.append(cell)
            continue
        parts: list[str] = []
        for block in re.split(r"\n\s*\n", _source(cell).strip("\n")):
            if parts and _markdown_height(parts[-1] + "\n\n" + block) <= max_px:
                parts[-1] += "\n\n" + block
            else:
                parts.append(block)
        out.append(dict(cell, source=parts[0]))
        out += [{"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {}, "source": p} for p in parts[1:]]
    return out


def assign_slide_types(cells: list[dict[str, Any]], max_px: float = MAX_SLIDE_PX) -> list[dict[str, Any]]:
    """Set every cell's `slideshow.slide_type` by the rules of this module (returns the same cells)."""
    height = 0.0
    for cell in cells:
        if cell["cell_type"] == "code":
            tags = [t for t in cell.get("metadata", {}).get("tags", []) if t != HIDE_INPUT]
            if _has_figure(cell) and estimated_height(cell, with_input=True) > max_px:
                tags.append(HIDE_INPUT)
            if tags:
                cell.setdefault("metadata", {})["tags"] = tags
            else:
                cell.get("metadata", {}).pop("tags", None)
        if is_solution(cell):
            kind = "skip"
        elif is_heading(cell):
            kind = "slide"
        elif is_findings(cell) or _starts_subslide(cell):
            kind = "subslide"
        elif height + estimated_height(cell) > max_px:
            kind = "subslide"
        else:
            kind = "-"
        if kind in ("slide", "subslide"):
            height = 0.0
        if kind != "skip":
            height += estimated_height(cell)
        meta = cell.setdefault("metadata", {})
        if kind == "-":
            meta.pop("slideshow", None)
        else:
            meta["slideshow"] = {"slide_type": kind}
    return cells


def problems(cells: list[dict[str, Any]], max_px: float = MAX_SLIDE_PX) -> list[str]:
    """Every place the cells break a rule of this module, as readable lines (empty: a good deck)."""
    found: list[str] = []
    shown = [i for i, c in enumerate(cells) if slide_type(c) not in ("skip", "notes")]
    for i, cell in enumerate(cells):
        kind, text = slide_type(cell), _source(cell).lstrip()
        first = text.splitlines()[0][:60] if text else ""
        if kind not in SLIDE_TYPES:
            found.append(f"cell {i}: unknown slide_type {kind!r}")
        if is_heading(cell) and kind != "slide":
            found.append(f"cell {i} ({first!r}): a heading must start a slide, it is {kind!r}")
        if kind == "slide" and not is_heading(cell):
            found.append(f"cell {i} ({first!r}): only a `#`/`##` heading starts a slide")
        if cell["cell_type"] == "markdown" and re.search(r"\n\s*\n#{1,3} ", text):
            found.append(f"cell {i} ({first!r}): a heading inside the cell; split it into its own cell")
        if is_findings(cell):
            before = [j for j in shown if j < i]
            if kind != "subslide":
                found.append(f"cell {i}: a finding must be its own sub-slide, it is {kind!r}")
            if not before or cells[before[-1]]["cell_type"] != "code":
                found.append(f"cell {i}: a finding must come right after the output it discusses")
        if input_hidden(cell) and not _has_figure(cell):
            found.append(f"cell {i} ({first!r}): `{HIDE_INPUT}` on a cell without a figure hides code that computes")
        if is_solution(cell) and kind != "skip":
            found.append(f"cell {i}: an executed solution must be skipped in the slides (it prints the answer)")
    for unit in slides(cells):
        px = sum(estimated_height(cells[j]) for j in unit)
        if px > max_px:
            found.append(f"cells {unit[0]}-{unit[-1]}: estimated {px:.0f} px tall, over {max_px} px: "
                         "start a sub-slide or split a cell")
    return found
