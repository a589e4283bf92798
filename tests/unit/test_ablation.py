"""The rule that reads the recipe's ablation (ftcourse.lab.ablation), on made-up numbers with known effects."""
import pytest

from ftcourse.lab import ablation, studies

ARMS = [*studies.ABLATION_BASELINES, *studies.ABLATION_ARMS]


def _numbers(effects: dict[str, float], seeds=range(10)) -> dict[int, dict[str, float]]:
    """Each arm at 0.6 plus its effect (points) plus a little seed-to-seed noise on every cell, val and test."""
    out = {}
    for s in seeds:
        def noise(arm):  # a few tenths of a point, different for each arm and seed
            return (-1) ** (s + len(arm)) * 0.003 * (1 + (s + len(arm)) % 3)
        out[s] = {f"{c} {split} {arm}": 0.6 + effects.get(arm, 0.0) / 100 + noise(arm)
                  for c in ablation.CELLS for split in ("val", "test") for arm in ARMS}
    return out


def test_the_rule_keeps_a_decision_only_if_removing_it_is_behind_and_adds_a_setting_only_if_ahead():
    per_seed = _numbers({"no head warm-up": -5, "no AdaBN": -0.1, "shifts of up to 4 px": 3, "AdamW": 0.2,
                         "label smoothing 0.1": -3})
    rows = {r["arm"]: r for r in ablation.decision_table(per_seed).rows}
    assert rows["no head warm-up"]["rule"] == "stays" and rows["no head warm-up"]["verdict"] == "behind"
    assert rows["no AdaBN"]["rule"] == "dropped"  # not distinguishable: the simpler recipe
    assert rows["shifts of up to 4 px"]["rule"] == "joins" and rows["shifts of up to 4 px"]["val wins"] == "10/10"
    assert rows["AdamW"]["rule"] == "old kept" and rows["label smoothing 0.1"]["rule"] == "left out"
    assert rows["frozen BN statistics"]["rule"] == "old kept"  # an alternative, not a simplification
    assert rows["no head warm-up"]["val (points)"] == pytest.approx(-5, abs=0.5)


def test_the_final_arm_walks_up_from_the_simplest_and_each_step_must_be_ahead_of_the_choice_before_it():
    assert ablation.final_arm(_numbers({})) == ablation.SIMPLEST
    always, gap, search = (d.arm for d in ablation.COMBINED)
    # AdaBN always 2 points over none; the rate search a little above that (ahead of none, not of AdaBN always)
    per_seed = _numbers({always: 2, gap: 2, search: 2.2})
    assert ablation.final_arm(per_seed) == always
    rows = ablation.combined_table(per_seed).rows
    assert [(r["against"], r["rule"]) for r in rows] == [(ablation.SIMPLEST, "joins"), (always, "left out"),
                                                         (always, "left out")]
    per_seed = _numbers({always: 2, gap: 2, search: 5})  # the search clearly ahead of AdaBN always
    assert ablation.final_arm(per_seed) == search


def test_the_shortest_final_run_not_behind_the_full_one_is_chosen():
    """ablation.length_arm: a shorter final run takes the full run's place unless it is behind on validation."""
    ninety, eighty = (d.arm for d in ablation.LENGTH)
    base = studies.LENGTH_BASE

    def numbers(effects):
        out = _numbers({})
        for s, row in out.items():  # the three arms of recipe_length_study, with the same noise rule
            for c in ablation.CELLS:
                for arm in (ninety, eighty):
                    noise = (-1) ** (s + len(arm)) * 0.003 * (1 + (s + len(arm)) % 3)
                    row[f"{c} val {arm}"] = row[f"{c} val {base}"] + effects.get(arm, 0.0) / 100 + noise
        return out
    assert ablation.length_arm(numbers({ninety: -0.1, eighty: -0.2})) == eighty  # n.d.: the cheaper run
    rows = ablation.length_table(numbers({ninety: -0.1, eighty: -3})).rows
    assert [r["rule"] for r in rows] == ["shorter run taken", "whole run kept"]
    assert ablation.length_arm(numbers({ninety: -0.1, eighty: -3})) == ninety  # 80 % behind: 90 %
    assert ablation.length_arm(numbers({ninety: -3, eighty: -4})) == base  # both behind: the whole run


def test_validation_decides_and_test_never_does():
    per_seed = _numbers({})
    for numbers in per_seed.values():  # a setting far ahead on test only
        for c in ablation.CELLS:
            numbers[f"{c} test shifts of up to 4 px"] += 0.2
    row = next(r for r in ablation.decision_table(per_seed).rows if r["arm"] == "shifts of up to 4 px")
    assert row["rule"] == "left out" and row["test (points)"] == pytest.approx(20, abs=1)


def test_every_decision_names_an_arm_of_the_study_and_a_missing_one_says_so():
    assert all(d.arm in studies.ABLATION_ARMS and d.kind in ("drop", "add", "replace")
               for d in (*ablation.DECISIONS, *ablation.COMBINED))
    per_seed = _numbers({})
    del per_seed[3]["far 50/class val AdamW"]
    with pytest.raises(KeyError, match="far 50/class val AdamW.*run that arm on every seed"):
        ablation.decision_table(per_seed)


def test_defaults_differ_names_each_setting_where_run_recipe_is_not_the_arm():
    off = ablation.defaults_differ("recipe")  # the old recipe: it differs from today's defaults, if at all, by name
    assert all(line.split(":")[0] in ("rates", "adabn_policy", "final_steps", "head_steps")
               or line.startswith("config.") for line in off)
    assert any(line.startswith("config.label_smoothing") for line in ablation.defaults_differ("label smoothing 0.1"))
    assert any(line.startswith("head_steps: run_recipe None, 'no head warm-up' 0")
               for line in ablation.defaults_differ("no head warm-up"))


def test_run_recipe_runs_the_arm_the_rule_chose_on_the_shipped_ablation():
    """run_recipe's defaults are the rebuilt recipe: the arm the walk takes on data/results/recipe_ablation.json, with
    the final run the length rule takes on data/results/recipe_length.json."""
    from ftcourse.lab import shipped
    per_seed = {int(s): v for s, v in shipped.read_results("recipe_ablation")["seeds"].items()}
    assert ablation.final_arm(per_seed) == studies.LENGTH_BASE == "shifts, one rate 0.03, always AdaBN"
    length = {int(s): v for s, v in shipped.read_results("recipe_length")["seeds"].items()}
    chosen = ablation.length_arm(length)
    assert chosen == f"{studies.LENGTH_BASE}, final run 80 %" and ablation.defaults_differ(chosen) == []
    assert ablation.defaults_differ(ablation.SIMPLEST) == [
        f"adabn_policy: run_recipe True, {ablation.SIMPLEST!r} False",
        f"config.final_fraction: run_recipe 0.8, {ablation.SIMPLEST!r} 1.0"]
