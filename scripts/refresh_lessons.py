"""Re-execute lessons top to bottom in a fresh kernel and clean their metadata (maintainers' tool).

    python scripts/refresh_lessons.py lessons/01_where_backprop_stops.ipynb [...]
    python scripts/refresh_lessons.py --clean-only lessons/*.ipynb

Keeps outputs (nbval compares them) and the widget state, keeps only kernelspec/language_info and the cell metadata the
course uses (tags, jupyter.source_hidden, slideshow), renumbers execution counts 1..N, and sets the slide structure
(`ftcourse.lab.slides`: headings start slides, findings and overflow start sub-slides, solutions are skipped). It rewrites
the notebooks in place: run it on committed lessons (git is the backup), not on a learner's copy.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat

from ftcourse.lab import slides

KEEP_CELL_META = ("tags", "jupyter", "slideshow")
KEEP_LANGUAGE_INFO = ("name", "version", "mimetype", "file_extension", "codemirror_mode",
                      "nbconvert_exporter", "pygments_lexer")


def clean(path: Path) -> None:
    """Strip run-specific metadata and renumber execution counts."""
    nb = nbformat.read(path, as_version=4)
    # the saved widget state lets JupyterLab draw the explorers and finished progress bars before a run
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info", "widgets")}
    li = nb.metadata.get("language_info", {})
    nb.metadata["language_info"] = {k: li[k] for k in KEEP_LANGUAGE_INFO if k in li}
    cells = slides.split_long_markdown(slides.split_at_headings([dict(c) for c in nb.cells]))
    nb.cells = [nbformat.from_dict(c) for c in slides.assign_slide_types(cells)]
    n = 0
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_META}
        if cell.cell_type == "code":
            n += 1
            cell.execution_count = n
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = n
                if out.get("output_type") == "stream":
                    out.pop("metadata", None)
    nbformat.write(nb, path)


def execute(path: Path, timeout: int = 600) -> float:
    """Run the notebook in a fresh python3 kernel, in its own folder; return seconds taken."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--clean-only", action="store_true")
    args = ap.parse_args()
    for path in args.notebooks:
        if not args.clean_only:
            print(f"{path.name}: executed in {execute(path):.1f} s")
        clean(path)


if __name__ == "__main__":
    main()
