"""ftcourse.studies: the results files' format and the cheap study (adabn); the expensive ones run in the claim tests."""
import json
from pathlib import Path

import pytest

import ftcourse
from ftcourse import studies


def test_results_round_trip_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("FTCOURSE_DATA", str(tmp_path))
    studies.write_results("adabn", {0: {"a": 0.5}, 1: {"a": 0.7}}, "python x.py", 12.3)
    got = studies.read_results("adabn")
    assert got["seeds"] == {"0": {"a": 0.5}, "1": {"a": 0.7}} and got["command"] == "python x.py"
    assert got["torch"] and got["date"] and got["machine"]
    assert studies.summarise(got, ["a"]) == {"a": [0.5, 0.7]}
    assert not list((tmp_path / "results").glob("*.tmp"))  # written atomically
    json.loads((tmp_path / "results" / "adabn.json").read_text())


def test_unknown_or_missing_results_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown study"):
        studies.results_path("nope")
    monkeypatch.setenv("FTCOURSE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="seed_studies.py --study rates"):
        studies.read_results("rates")


def test_every_study_ships_a_results_file_for_the_study_seeds():
    for name in studies.STUDIES:
        got = studies.read_results(name)
        assert sorted(int(s) for s in got["seeds"]) == list(studies.STUDY_SEEDS), name
        keys = [set(v) for v in got["seeds"].values()]
        assert all(k == keys[0] for k in keys), f"{name}: seeds measured different quantities"


@pytest.mark.slow
def test_the_adabn_study_matches_its_shipped_numbers_on_seed_0():
    """The cheap study, recomputed: the shipped file was made by this code (accuracy within 3 points anywhere)."""
    ftcourse.seed_everything(0)
    assert not studies.differences_from_shipped("adabn", 0, studies.adabn_study(0), acc_tol=0.03)


@pytest.mark.parametrize("value, seeds", [(None, (0,)), ("0,1,2,3,4,5", (0, 1, 2, 3, 4, 5)), (" 4, 3,3", (3, 4))])
def test_fresh_seeds_come_from_the_environment(monkeypatch, value, seeds):
    if value is None:
        monkeypatch.delenv("FTCOURSE_CLAIM_SEEDS", raising=False)
    else:
        monkeypatch.setenv("FTCOURSE_CLAIM_SEEDS", value)
    assert studies.fresh_seeds() == seeds
    assert studies.seeds_to_check() == sorted(set(studies.STUDY_SEEDS) | set(seeds))


@pytest.mark.parametrize("value", ["", "a,b", "-1", "1.5"])
def test_bad_fresh_seeds_name_the_fix(monkeypatch, value):
    monkeypatch.setenv("FTCOURSE_CLAIM_SEEDS", value)
    with pytest.raises(ValueError, match="unset it to re-run seed 0 only"):
        studies.fresh_seeds()


def test_results_per_seed_trains_the_fresh_seeds_and_reads_the_others():
    trained = []

    def study(seed):
        trained.append(seed)
        return {"fresh": float(seed)}

    out = studies.results_per_seed("rates", study, [0, 1, 2, 4], fresh=(0, 4))
    assert trained == [0, 4] and out[0] == {"fresh": 0.0} and out[4] == {"fresh": 4.0}
    assert out[1] == studies.read_results("rates")["seeds"]["1"] and out[2] == studies.read_results("rates")["seeds"]["2"]
    with pytest.raises(ValueError, match="add it to FTCOURSE_CLAIM_SEEDS"):
        studies.results_per_seed("rates", study, [7], fresh=(0,))


def test_lesson_aware_trains_only_the_rest_of_seed_0_when_its_lesson_runs_in_the_session():
    calls = []

    def study(seed):
        calls.append(("whole", seed))
        return {"whole": 1.0}

    def rest(seed, part, shipped):
        calls.append(("rest", seed, part))
        return shipped | {"rest": 2.0}

    alone = studies.lesson_aware("bn_policy", study, {"01_where_backprop_stops.ipynb"}, rest)
    assert alone is study  # lesson 04 is not in the session: seed 0 is trained in full
    aware = studies.lesson_aware("bn_policy", study, {"04_batchnorm_when_fine_tuning.ipynb"}, rest)
    shipped0 = studies.read_results("bn_policy")["seeds"]["0"]
    assert aware(0) == shipped0 | {"rest": 2.0} and aware(3) == {"whole": 1.0}
    assert calls == [("rest", 0, (2, 32)), ("whole", 3)]
    lessons = Path(__file__).resolve().parents[1] / "lessons"
    for name, (notebook, _) in studies.IN_LESSONS.items():  # each lesson named compares its runs with the file
        assert name in studies.STUDIES and f'studies.differences_from_shipped(\\"{name}\\", 0, ' in (lessons / notebook).read_text()


def test_differences_from_shipped_partial_compares_only_what_was_measured():
    shipped0 = studies.read_results("rates")["seeds"]["0"]
    part = {"test uniform 0.01": shipped0["test uniform 0.01"] + 0.01, "val sweep 0.1": shipped0["val sweep 0.1"]}
    assert studies.differences_from_shipped("rates", 0, part, partial=True) == []
    assert any("not measured" in d for d in studies.differences_from_shipped("rates", 0, part))
    off = studies.differences_from_shipped("rates", 0, {"test uniform 0.01": shipped0["test uniform 0.01"] + 0.2}, partial=True)
    assert len(off) == 1 and off[0].startswith("test uniform 0.01")


def test_choose_rate_picks_the_best_validation_rate():
    numbers = {f"val sweep {lr:g}": 0.5 for lr in studies.RATE_SWEEP} | {f"test sweep {lr:g}": lr for lr in studies.RATE_SWEEP}
    numbers["val sweep 0.03"] = 0.9
    chosen = studies.choose_rate(numbers)
    assert chosen["chosen rate"] == 0.03 and chosen["test at the chosen rate"] == 0.03 and "chosen rate" not in numbers
