"""ftcourse.lab.claims: verdict lines nbval compares, measurements it does not, seed tables."""
import re
from pathlib import Path

import pytest

import ftcourse.lab.claims as claims


def _sanitize(text: str) -> str:
    """Apply tests/nbval_sanitize.cfg the way nbval does (regex/replace pairs, in order)."""
    cfg = (Path(__file__).parents[1] / "nbval_sanitize.cfg").read_text().splitlines()
    pairs = [(a[len("regex: "):], b[len("replace: "):]) for a, b in zip(cfg, cfg[1:])
             if a.startswith("regex: ") and b.startswith("replace: ")]
    for regex, replace in pairs:
        text = re.sub(regex, replace, text)
    return text


def test_claim_prints_a_verdict_and_a_measurement_that_sanitizes_away(capsys):
    assert bool(claims.claim("fine-tuning beats the probe", True, "0.81 vs 0.73")) is True
    a = capsys.readouterr().out
    assert bool(claims.claim("fine-tuning beats the probe", True, "0.79 vs 0.75")) is True
    b = capsys.readouterr().out
    assert a.splitlines()[0] == "CLAIM holds: fine-tuning beats the probe"
    assert a != b and _sanitize(a) == _sanitize(b)  # other digits, same compared text
    assert bool(claims.claim("x", False, "1")) is False
    assert capsys.readouterr().out.startswith("CLAIM DOES NOT HOLD: x")


def test_a_verdict_shows_nothing_as_a_cell_result():
    """A claim is often a cell's last expression: its verdict must not add an "Out[n]: True" under the printed lines."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    data, _ = shell.display_formatter.format(claims.claim("x", True, "1"))
    assert data == {}
    assert repr(claims.Verdict(False)) == "Verdict(holds=False)"


def test_seed_table_has_mean_min_max_and_checks_lengths():
    t = claims.seed_table({"probe": [0.7, 0.8, 0.9]}, [0, 1, 2])
    row = t.rows[0]
    assert row["mean"] == pytest.approx(0.8) and row["min"] == 0.7 and row["max"] == 0.9
    assert "seed 2" in str(t)
    with pytest.raises(ValueError, match="3 seeds"):
        claims.seed_table({"probe": [0.7]}, [0, 1, 2])


def test_seed_table_without_seed_columns_names_the_seeds_and_gives_the_spread():
    t = claims.seed_table({"probe": [0.7, 0.8, 0.9]}, [0, 1, 2], title="accuracy", per_seed=False)
    row = t.rows[0]
    assert "seed 0" not in row and row["sd"] == pytest.approx(0.1) and row["mean"] == pytest.approx(0.8)
    assert str(t).splitlines()[0] == "accuracy (seeds 0-2)"
    assert claims.seed_table({"p": [1.0, 2.0]}, [0, 5], per_seed=False).title == "seeds 0, 5"
