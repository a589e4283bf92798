"""claim_seeds: which seeds the claim tests train, and what a lesson trains live instead (no training here)."""
import ast
from pathlib import Path

import nbformat
import pytest

import claim_seeds
from ftcourse.lab import shipped

LESSONS = Path(__file__).resolve().parents[2] / "lessons"


@pytest.mark.parametrize("value, seeds", [(None, (0,)), ("0,1,2,3,4,5", (0, 1, 2, 3, 4, 5)), (" 4, 3,3", (3, 4))])
def test_fresh_seeds_come_from_the_environment(monkeypatch, value, seeds):
    if value is None:
        monkeypatch.delenv("FTCOURSE_CLAIM_SEEDS", raising=False)
    else:
        monkeypatch.setenv("FTCOURSE_CLAIM_SEEDS", value)
    assert claim_seeds.fresh_seeds() == seeds
    assert claim_seeds.seeds_to_check() == sorted(set(claim_seeds.BASE_SEEDS) | set(seeds))
    assert claim_seeds.seeds_to_check(study="bn_policy") == sorted(set(shipped.STUDY_SEEDS["bn_policy"]) | set(seeds))
    assert claim_seeds.seed_ids([0, 1], fresh=(0,)) == ["0-fresh", "1-shipped"]


@pytest.mark.parametrize("value", ["", "a,b", "-1", "1.5"])
def test_bad_fresh_seeds_name_the_fix(monkeypatch, value):
    monkeypatch.setenv("FTCOURSE_CLAIM_SEEDS", value)
    with pytest.raises(ValueError, match="unset it to re-run seed 0 only"):
        claim_seeds.fresh_seeds()


def test_results_per_seed_trains_the_fresh_seeds_and_reads_the_others():
    trained = []

    def study(seed):
        trained.append(seed)
        return {"fresh": float(seed)}

    out = claim_seeds.results_per_seed("rates", study, [0, 1, 2, 4], fresh=(0, 4))
    stored = shipped.read_results("rates")["seeds"]
    assert trained == [0, 4] and out[0] == {"fresh": 0.0} and out[4] == {"fresh": 4.0}
    assert out[1] == stored["1"] and out[2] == stored["2"]
    with pytest.raises(ValueError, match="add it to FTCOURSE_CLAIM_SEEDS"):
        claim_seeds.results_per_seed("rates", study, [7], fresh=(0,))


def test_lesson_aware_trains_only_the_rest_of_seed_0_when_its_lesson_runs_in_the_session():
    calls = []

    def study(seed):
        calls.append(("whole", seed))
        return {"whole": 1.0}

    def rest(seed, part, done):
        calls.append(("rest", seed, part))
        return done | {"rest": 2.0}

    alone = claim_seeds.lesson_aware("bn_policy", study, {"01_where_backprop_stops.ipynb"}, rest)
    assert alone is study  # lesson 04 is not in the session: seed 0 is trained in full
    aware = claim_seeds.lesson_aware("bn_policy", study, {"04_batchnorm_when_fine_tuning.ipynb"}, rest)
    shipped0 = shipped.read_results("bn_policy")["seeds"]["0"]
    assert aware(0) == shipped0 | {"rest": 2.0} and aware(3) == {"whole": 1.0}
    assert calls == [("rest", 0, (2, 32)), ("whole", 3)]


def _compared_studies(notebook: Path) -> set[str]:
    """Study names a notebook's code passes to shipped.differences_from_shipped(name, 0, ...) (parsed, not grepped)."""
    found = set()
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "differences_from_shipped" and node.args
                    and isinstance(node.args[0], ast.Constant) and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant) and node.args[1].value == 0):
                found.add(node.args[0].value)
    return found


def test_each_lesson_named_in_in_lessons_compares_its_live_runs_with_the_file():
    for name, (notebook, _) in claim_seeds.IN_LESSONS.items():
        assert name in shipped.STUDY_NAMES
        assert name in _compared_studies(LESSONS / notebook), f"{notebook} never compares its {name} runs"


def test_verdict_pairs_two_quantities_over_every_seed():
    per_seed = {s: {"a": 0.80 + 0.01 * s, "b": 0.70 + 0.012 * s} for s in range(5)}
    assert claim_seeds.verdict(per_seed, "a", "b") == "ahead"
    assert claim_seeds.verdict(per_seed, "b", "a") == "behind"
