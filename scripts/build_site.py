"""Build the course site (`make site`): a static HTML book of the lessons as committed, in build/site/.

    python scripts/build_site.py [--out build/site]

Assembles a Sphinx source folder in build/site-src (site/conf.py, a front page made from the README's lesson
table, the lessons, docs/INSTRUCTORS.md, an API page generated from the docstrings) and builds it with myst-nb
(no cell is executed: the outputs and figures are the committed ones) and the furo theme, offline: furo bundles
its assets and MathJax 3 comes from npm (`make site` installs it into build/site-assets; no CDN at build or read
time). In the site's copy of each lesson, progress bars are dropped (a static page cannot show their progress)
and an interactive explorer's output is replaced by a line saying it runs in JupyterLab; the lessons themselves
are not touched. Publish by copying build/site/ to any static host (GitHub Pages, an S3 bucket, a web server).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"
MATHJAX = ROOT / "build" / "site-assets" / "node_modules" / "mathjax" / "es5"
# the toolkit's modules, in the order a learner meets them (ftcourse.lab is the course's own lab, not API)
API_MODULES = ("data", "models", "groups", "train", "recipes", "optim", "grads", "audit", "features", "bn",
               "autopilot", "fastai_style", "ddp_finetune", "compare", "tables", "cost", "distributed", "explore", "widgets", "plots",
               "check", "runtime", "files", "workspace", "cli")


def static_lesson(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The site's copy of a lesson: progress bars dropped, explorers replaced by a note; everything else kept."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET not in data:
                kept.append(out)
            elif not re.search(r"\d+%\|", data.get("text/plain", "")):  # not a tqdm bar: an explorer
                kept.append(nbformat.v4.new_output("stream", name="stdout", text=(
                    "[an interactive explorer: its controls work when the lesson runs in JupyterLab]\n")))
        cell.outputs = kept
    nb.metadata.pop("widgets", None)  # no widget state: the site loads no widget JavaScript
    return nb


def front_page(readme: str) -> str:
    """index.md: the README's opening paragraph and its lesson table, each lesson linked to its page."""
    intro = readme.split("\n## ")[0].split("\n", 1)[1].strip()
    table = readme.split("\n## Lessons\n", 1)[1].split("\n## ", 1)[0].strip()
    table = re.sub(r"^\| `(\d\d_\w+)` \|", lambda m: f"| [{m.group(1)}](lessons/{m.group(1)}.ipynb) |", table,
                   flags=re.M)
    lessons = sorted(p.stem for p in (ROOT / "lessons").glob("*.ipynb"))
    toctree = "\n".join(f"lessons/{name}" for name in lessons)
    return (f"# ftcourse: fine-tuning a pretrained CNN, from the gradient up\n\n{intro}\n\n## Lessons\n\n{table}\n\n"
            "To run the lessons (they are JupyterLab notebooks; this site shows them as last run, outputs and figures "
            "included), see the README's set-up: `make lab` in a clone of the repository.\n\n"
            f"```{{toctree}}\n:caption: Lessons\n:maxdepth: 1\n\n{toctree}\n```\n\n"
            "```{toctree}\n:caption: For teachers and practitioners\n:maxdepth: 1\n\ninstructors\napi\n```\n")


def api_page() -> str:
    parts = ["# The helpers' API\n", "Generated from the docstrings of `ftcourse`, the toolkit the lessons import "
             "(`import ftcourse`). The course's own experiments (`ftcourse.lab`) are not part of it.\n"]
    for name in API_MODULES:
        parts.append(f"## ftcourse.{name}\n\n```{{eval-rst}}\n.. automodule:: ftcourse.{name}\n```\n")
    return "\n".join(parts)


def assemble(src: Path) -> int:
    """Write the Sphinx source folder; returns the number of pages."""
    if src.exists():
        shutil.rmtree(src)
    (src / "lessons").mkdir(parents=True)
    shutil.copy(ROOT / "site" / "conf.py", src / "conf.py")
    (src / "index.md").write_text(front_page((ROOT / "README.md").read_text()))
    (src / "api.md").write_text(api_page())
    shutil.copy(ROOT / "docs" / "INSTRUCTORS.md", src / "instructors.md")
    lessons = sorted((ROOT / "lessons").glob("*.ipynb"))
    for path in lessons:
        nbformat.write(static_lesson(nbformat.read(path, as_version=4)), src / "lessons" / path.name)
    if not (MATHJAX / "tex-chtml.js").exists():
        sys.exit(f"MathJax 3 not found in {MATHJAX}: run `make site` (it runs npm install --prefix build/site-assets "
                 "mathjax@3), or that npm command yourself")
    shutil.copytree(MATHJAX, src / "_static" / "mathjax", ignore=shutil.ignore_patterns("sre"))
    return len(lessons) + 3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    src = ROOT / "build" / "site-src"
    pages = assemble(src)
    if args.out.exists():
        shutil.rmtree(args.out)
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "auto", str(src), str(args.out)],
                   check=True)
    print(f"site: {pages} pages in {args.out} ({time.perf_counter() - t0:.0f} s); open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
