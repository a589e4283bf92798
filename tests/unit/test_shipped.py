"""ftcourse.lab.shipped: the studies' results files (format, provenance, atomic writes) and how a fresh run is compared."""
import json

import pytest

from ftcourse.lab import shipped, studies


def test_results_round_trip_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("FTCOURSE_DATA", str(tmp_path))
    shipped.write_results("adabn", {0: {"a": 0.5}, 1: {"a": 0.7}}, "python x.py", 12.3)
    got = shipped.read_results("adabn")
    assert got["seeds"] == {"0": {"a": 0.5}, "1": {"a": 0.7}} and got["command"] == "python x.py"
    assert got["torch"] and got["date"] and got["machine"]
    assert shipped.summarise(got, ["a"]) == {"a": [0.5, 0.7]}
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["adabn.json"]  # no temporary file left
    json.loads((tmp_path / "results" / "adabn.json").read_text())


def test_unknown_or_missing_results_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown study"):
        shipped.results_path("nope")
    monkeypatch.setenv("FTCOURSE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="seed_studies.py --study rates"):
        shipped.read_results("rates")


def test_every_study_ships_a_results_file_for_the_study_seeds():
    assert tuple(studies.STUDIES) == shipped.STUDY_NAMES == tuple(shipped.STUDY_SEEDS)  # one file per study
    for name in shipped.STUDY_NAMES:
        got = shipped.read_results(name)
        assert shipped.seeds_of(got) == list(shipped.STUDY_SEEDS[name]), name
        assert set(shipped.seed_codes(got)) in (set(), set(shipped.seeds_of(got))), f"{name}: code per seed"
        keys = [set(v) for v in got["seeds"].values()]
        assert all(k == keys[0] for k in keys), f"{name}: seeds measured different quantities"


@pytest.mark.parametrize("key, kind", [
    ("test uniform 0.01", "accuracy"), ("val sweep 0.1", "accuracy"), ("10/class train probe", "accuracy"),
    ("OOD LP-FT", "accuracy"), ("near seconds recipe", "seconds"), ("chosen rate", "choice"),
    ("test at the chosen rate", "choice"), ("near chosen rate", "choice"), ("1 - CKA FT", "other"),
    ("update group 0 uniform 0.01", "other"), ("1/class epochs", "other"),
    ("testing", "other"),  # a whole word, not a substring
])
def test_quantity_kind_reads_the_words_of_a_key(key, kind):
    assert shipped.quantity_kind(key) == kind


def test_every_shipped_key_has_a_kind_and_no_accuracy_is_outside_0_1():
    for name in shipped.STUDY_NAMES:
        for numbers in shipped.read_results(name)["seeds"].values():
            accuracies = {k: v for k, v in numbers.items() if shipped.quantity_kind(k) == "accuracy"}
            assert accuracies, name
            assert all(0 <= v <= 1 for v in accuracies.values()), name


def test_differences_from_shipped_partial_compares_only_what_was_measured():
    shipped0 = shipped.read_results("rates")["seeds"]["0"]
    part = {"test uniform 0.01": shipped0["test uniform 0.01"] + 0.01, "test uniform 0.3": shipped0["test uniform 0.3"]}
    assert shipped.differences_from_shipped("rates", 0, part, partial=True) == []
    assert any("not measured" in d for d in shipped.differences_from_shipped("rates", 0, part))
    off = shipped.differences_from_shipped("rates", 0, {"test uniform 0.01": shipped0["test uniform 0.01"] + 0.2},
                                           partial=True)
    assert len(off) == 1 and off[0].startswith("test uniform 0.01")
    cka = shipped0["1 - CKA uniform 0.01"]  # another quantity: compared relatively
    assert shipped.differences_from_shipped("rates", 0, {"1 - CKA uniform 0.01": cka * 1.2}, partial=True) == []
    assert len(shipped.differences_from_shipped("rates", 0, {"1 - CKA uniform 0.01": cka * 1.5}, partial=True)) == 1


def test_wall_seconds_and_choices_are_never_compared_with_the_shipped_file():
    seed0 = shipped.read_results("recipe_ablation")["seeds"]["0"]
    fresh = {k: (v * 3 if "seconds" in k else v) for k, v in seed0.items()}
    fresh["near 10/class chosen rate recipe"] = 123.0
    assert not shipped.differences_from_shipped("recipe_ablation", 0, fresh)
    key = "near 10/class test recipe"
    fresh[key] = seed0[key] + 0.2
    assert shipped.differences_from_shipped("recipe_ablation", 0, fresh) == [
        f"{key}: {fresh[key]:.4g} vs shipped {seed0[key]:.4g}"]


def test_by_seed_and_seed_codes_read_a_results_file():
    results = {"seeds": {"10": {"test a": 0.5}, "2": {"test a": 0.25}}, "code": {"2": "x", "10": "y"}}
    assert shipped.seeds_of(results) == [2, 10]
    assert shipped.by_seed(results, "test a") == {2: 0.25, 10: 0.5}
    assert shipped.seed_codes(results) == {2: "x", 10: "y"}
    assert shipped.seed_codes({"seeds": {"0": {}}, "code": "z"}) == {0: "z"}  # one fingerprint for all seeds
    assert shipped.seed_codes({"seeds": {"0": {}}}) == {}


def test_write_results_records_a_code_fingerprint_per_seed(tmp_path):
    path = tmp_path / "x.json"
    shipped.write_results("adabn", {0: {"test a": 1.0}, 1: {"test a": 0.5}}, "cmd", 1.0, path=path,
                          code={0: "aaa", 1: "bbb"})
    got = json.loads(path.read_text())
    assert got["code"] == {"0": "aaa", "1": "bbb"} and shipped.seed_codes(got) == {0: "aaa", 1: "bbb"}
