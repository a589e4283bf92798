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
        claim_seeds.results_per_seed("rates", study, [12], fresh=(0,))


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


def test_quick_trains_a_part_of_seed_0_in_make_test_and_every_part_in_make_claims(monkeypatch):
    calls = []

    def study(seed, **part):
        calls.append((seed, part))
        return {"val clean no adaptation": -1.0}

    monkeypatch.setattr(claim_seeds, "QUICK", True)
    run = claim_seeds.quick("adabn", study)
    shipped0 = shipped.read_results("adabn")["seeds"]["0"]
    assert run(0) == shipped0 | {"val clean no adaptation": -1.0} and run(2) == {"val clean no adaptation": -1.0}
    assert calls == [(0, {"sizes": (32,)}), (2, {})]
    assert claim_seeds.quick("warm_up", study) is study  # no part: trained whole
    monkeypatch.setattr(claim_seeds, "QUICK", False)
    assert claim_seeds.quick("adabn", study) is study


def test_quick_makes_the_choices_again_over_the_whole_seed(monkeypatch):
    monkeypatch.setattr(claim_seeds, "QUICK", True)
    shipped0 = shipped.read_results("tuned_families")["seeds"]["0"]
    run = claim_seeds.quick("tuned_families", lambda seed, **part: {"val head 10x top 0.03": 1.0,
                                                                     "chosen top head 10x": 0.03})
    out = run(0)
    assert out["chosen top head 10x"] == 0.03 and out["val at the chosen rate head 10x"] == 1.0
    assert out["chosen top uniform"] == shipped0["chosen top uniform"]  # a family not retrained: as shipped


def test_every_quick_part_is_a_part_of_its_study():
    import inspect
    from ftcourse.lab.studies import STUDIES
    for name, part in claim_seeds.QUICK_PARTS.items():
        defaults = inspect.signature(STUDIES[name]).parameters
        for arg, values in part.items():
            if isinstance(values, int):  # a shorter run (time_to_accuracy's steps), never the whole
                assert 0 < values < defaults[arg].default, (name, arg)
            else:
                assert set(values) < set(defaults[arg].default), (name, arg)  # a proper part, never the whole


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
