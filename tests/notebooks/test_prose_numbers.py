"""Every number a lesson's prose states comes from a cell of the same notebook, or from the literature.

A number with a decimal point, a percent sign or an "x" (0.81, 23.6 %, 2.3x) in a markdown cell must
appear in an output of the same notebook, or in its code (a setting such as lr 0.01), or in the
allow-list below, kept next to its citation. Inline code and LaTeX are skipped (they are API and
formulas, not results). This turns "every number from a cell" into a check, not a hope.
"""
import json
import re
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[2] / "lessons").glob("*.ipynb"))

LITERATURE = {  # number as written in the prose -> where it comes from
    "23.6": "Wu & He 2018, Group Normalization, Table 2: ResNet-50 ImageNet top-1 error with BN, 32 images/GPU",
    "34.7": "Wu & He 2018, Table 2: the same with 2 images/GPU",
    "59.3": "Kumar et al. 2022, ICLR: fine-tuning, average OOD accuracy over ten datasets",
    "66.2": "Kumar et al. 2022: linear probe, average OOD accuracy",
    "68.9": "Kumar et al. 2022: LP-FT, average OOD accuracy",
    # Howard & Ruder 2018 (ULMFiT), Table 7: validation error (%), IMDb / TREC-6 / AG
    "6.87": "Table 7, 'Full', IMDb",
    "6.86": "Table 7, 'Full' and 'Freez', TREC-6",
    "5.81": "Table 7, 'Full' and 'Freez', AG",
    "5.57": "Table 7, 'Full + discr', IMDb",
    "6.21": "Table 7, 'Full + discr', TREC-6",
    "5.62": "Table 7, 'Full + discr', AG",
    "6.37": "Table 7, 'Freez' (gradual unfreezing), IMDb",
    "5.39": "Table 7, 'Freez + discr', IMDb",
    "5.86": "Table 7, 'Freez + discr', TREC-6",
    "6.04": "Table 7, 'Freez + discr', AG",
    "2.6": "Howard & Ruder 2018: the factor between the rates of adjacent layer groups",
    "0.1": "PyTorch's BatchNorm default momentum",
    "2.0": "the PyTorch release whose zero_grad() defaults to set_to_none=True",
    "0.95": "OneCycleLR's default max_momentum (torch.optim.lr_scheduler)",
    "0.85": "OneCycleLR's default base_momentum",
    "0.3": "OneCycleLR's default pct_start (the warm-up share of the steps)",
    "1.15x": "COURSE_PLAN performance budget: a head-only step <= 1.15x a forward pass",
}
NUMBER = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*\.\d+|\d+(?:\.\d+)?(?=\s?%)|\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?x)(?![\w])")


def _prose(cell) -> str:
    text = "".join(cell["source"])
    text = re.sub(r"`[^`]*`", " ", text)  # inline code
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", text, flags=re.S)  # formulas
    return text


def _evidence(nb) -> str:
    parts = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        parts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            data = out.get("data", {})
            parts += ["".join(data.get(k, "")) for k in ("text/plain", "text/html")]
    return "\n".join(parts)


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_every_number_in_the_prose_comes_from_a_cell_or_the_literature(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    evidence = _evidence(nb)
    missing = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for number in NUMBER.findall(_prose(cell)):
            bare = number.rstrip("x")
            if number in LITERATURE or bare in evidence or number in evidence:
                continue
            missing.append(number)
    assert not missing, f"{path.name}: prose numbers no cell prints (and not in the literature list): {missing}"


def test_the_number_pattern_finds_results_not_settings():
    found = NUMBER.findall("accuracy 0.81 and 23.6 % error, 2.3x less, 10-100x, 1,000 images, lesson 03, 200 steps")
    assert found == ["0.81", "23.6", "2.3x", "10-100x"]
