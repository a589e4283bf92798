"""ftcourse.lab.studies: the rate choice and small runs of a study; every study against its shipped numbers runs in
the claim tests (tests/claims)."""
import pytest

import ftcourse
from ftcourse.lab import shipped, studies


def test_time_to_accuracy_reads_the_validation_curve_every_few_steps():
    out = studies.time_to_accuracy_study(0, rates=(0.01,), steps=50, every=25)
    assert sorted(out) == ["seconds lr 0.01", "val lr 0.01 step 25", "val lr 0.01 step 50"]
    assert all(0 <= out[f"val lr 0.01 step {s}"] <= 1 for s in (25, 50)) and out["seconds lr 0.01"] > 0
    assert shipped.quantity_kind("val lr 0.01 step 25") == "accuracy" and shipped.quantity_kind("seconds lr 0.01") == "seconds"


def test_choose_tops_picks_each_familys_best_validation_rate_and_the_lower_of_equals():
    numbers = {f"{split} {f} top {r:g}": 0.5 for f in studies.FAMILIES for r in studies.TUNE_GRID
               for split in ("val", "test")}
    numbers |= {"val slice top 0.1": 0.9, "test slice top 0.1": 0.7, "val uniform top 0.01": 0.6,
                "val uniform top 0.03": 0.6}
    chosen = studies.choose_tops(numbers)
    assert chosen["chosen top slice"] == 0.1 and chosen["test at the chosen rate slice"] == 0.7
    assert chosen["val at the chosen rate slice"] == 0.9 and chosen["chosen top uniform"] == 0.01
    assert chosen["chosen top two-stage"] == studies.TUNE_GRID[0] and "chosen top slice" not in numbers


def test_every_family_spends_the_same_grid_and_tops_it_at_the_grid_rate():
    for family, lr in studies.FAMILIES.items():
        for r in studies.TUNE_GRID:
            assert max(ftcourse.lrs_for(lr(r), 3)) == pytest.approx(r), family  # the head's rate is the top rate


def test_fastai_epochs_make_about_200_steps():
    assert studies.fastai_epochs(ftcourse.target_task(shots=10)) == 199  # 50 images: 1 step per epoch
    assert studies.fastai_epochs(ftcourse.near_task(shots=10)) == 66  # 100 images: 3 steps per epoch, 67 * 3 = 201


def test_shifted_target_names_an_unknown_bn_policy_and_its_choices():
    with pytest.raises(ValueError, match="unknown BN policies \\['frozen'\\]; choose from \\['batch statistics'"):
        studies.shifted_target_study(0, policies=("frozen",))


def test_recipe_ablation_records_validation_test_and_choices_per_task_size_and_arm():
    out = studies.recipe_ablation_study(0, tasks=("far",), shots=(10,), arms=("recipe", "one rate 0.03, no short runs",
                                        "final run of all the steps"), baselines=("one call, shifts of up to 4 px",),
                                        steps=6)
    arms = ("one call, shifts of up to 4 px", "recipe", "one rate 0.03, no short runs", "final run of all the steps")
    for arm in arms:
        assert 0 <= out[f"far 10/class val {arm}"] <= 1 and 0 <= out[f"far 10/class test {arm}"] <= 1
        assert out[f"far 10/class seconds {arm}"] > 0
    assert out["far 10/class chosen rate one rate 0.03, no short runs"] == 0.03
    assert "far 10/class chosen rate one call, shifts of up to 4 px" not in out
    assert all(shipped.quantity_kind(k) in ("accuracy", "seconds", "choice", "other") for k in out)
    assert set(studies.ABLATION_ARMS) >= {"recipe", "no AdaBN", "no head warm-up", "shifts of up to 4 px", "AdamW",
                                          "cosine schedule", "label smoothing 0.1", "EMA of weights 0.98", "L2-SP 0.1"}
    for arm, kwargs in studies.ABLATION_ARMS.items():  # every arm's settings are valid
        ftcourse.RecipeConfig(**kwargs.get("config", {}))


def test_the_floor_study_gives_scratch_and_the_probe_in_the_ablations_cells_and_keys():
    out = studies.recipe_floor_study(0, tasks=("far",), shots=(10,), steps=6)
    assert sorted(out) == sorted(f"far 10/class {key} {arm}" for arm in studies.FLOORS
                                 for key in ("val", "test", "seconds"))
    assert all(0 <= out[f"far 10/class test {arm}"] <= 1 for arm in studies.FLOORS)


def test_the_ablation_arms_are_pinned_to_the_recipe_before_the_study():
    """Each arm is ABLATION_BEFORE changed in its own keys only, whatever run_recipe's defaults are now."""
    before = studies._arm_kwargs("recipe")
    assert before["rates"] == (0.01, 0.03, 0.1) and before["config"].augment == 0
    assert before["config"].rate_rule == "largest within 1 SE"
    shifted = studies._arm_kwargs("shifts, one rate 0.03, no short runs")
    assert shifted["rates"] == (0.03,) and shifted["config"].augment == 4
    assert shifted["config"].rate_rule == before["config"].rate_rule
    assert studies._arm_kwargs("run_recipe") == {}  # run_recipe as it is now


def test_a_study_in_progress_is_never_written_over_the_shipped_files(monkeypatch):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "seed_studies.py"
    spec = importlib.util.spec_from_file_location("seed_studies_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def draft(seed):  # a study measured into build/ before it ships
        raise AssertionError("never run without --out and --seeds")

    monkeypatch.setitem(script.studies.IN_PROGRESS, "draft", draft)
    monkeypatch.setitem(script.ALL_STUDIES, "draft", draft)
    with pytest.raises(SystemExit, match="draft is in progress \\(not shipped\\): give --out"):
        script.main(["--study", "draft"])
    with pytest.raises(SystemExit, match="draft is in progress"):
        script.main(["--study", "draft", "--seeds", "0"])  # --out too
    assert "draft" not in shipped.STUDY_NAMES


def test_surgical_tuned_study_chooses_each_setups_rate_then_the_setup_on_validation():
    out = studies.surgical_tuned_study(0, tasks=("relabelled source",), setups=("block 1", "head"), grid=(0.01, 0.1),
                                       steps=3)
    assert out["relabelled source test start"] < 0.1  # the pretrained head, every label moved
    for setup in ("block 1", "head"):
        vals = {r: out[f"relabelled source val {setup} lr {r:g}"] for r in (0.01, 0.1)}
        chosen = out[f"relabelled source chosen rate {setup}"]
        assert vals[chosen] == max(vals.values()) and (chosen == 0.01 or vals[0.1] > vals[0.01])
        assert out[f"relabelled source test at the chosen rate {setup}"] == out[f"relabelled source test {setup} lr {chosen:g}"]
    best = max(("block 1", "head"), key=lambda s: out[f"relabelled source val at the chosen rate {s}"])
    assert ("block 1", "head")[out["relabelled source chosen setup"]] == best
    assert shipped.quantity_kind("relabelled source chosen rate head") == "choice"


def test_a_derived_ablation_arm_gives_what_its_full_run_gives():
    arms = ("recipe", "no AdaBN", "always AdaBN", "rule: smallest within 1 SE, paired", "rule: best",
            "shifts of up to 4 px", "shifts, paired rule", "shifts, paired rule, no AdaBN")
    kw = dict(tasks=("far",), shots=(10,), arms=arms, baselines=(), steps=20)
    derived, full = studies.recipe_ablation_study(0, **kw), studies.recipe_ablation_study(0, derive=False, **kw)
    assert {k for k in derived if " seconds " not in k} == {k for k in full if " seconds " not in k}
    for key, value in full.items():
        if " seconds " not in key:
            assert derived[key] == value, key


def test_a_final_run_alone_at_the_chosen_rate_is_the_recipe_s_final_run():
    # what _derived relies on when another rate rule makes another choice from the same short runs
    import torch
    task = ftcourse.far_task(shots=10, seed=0)
    cfg = ftcourse.RecipeConfig(augment=4)
    model, report = ftcourse.run_recipe(task, seed=0, steps=20, fold=False, config=cfg, rates=(0.01, 0.03, 0.1))
    again, other = ftcourse.run_recipe(task, seed=0, steps=20, fold=False, config=cfg,
                                       rates=(report.chosen_lr,), final_steps=report.final_steps)
    assert other.final_steps == report.final_steps == round(0.8 * 12) and other.chosen_lr == report.chosen_lr
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_choose_rate_rules_on_per_image_results():
    import torch
    from ftcourse.autopilot import choose_rate
    best = torch.tensor([1.] * 14 + [0.] * 6)  # 0.70 on 20 images
    low, high = best.clone(), best.clone()
    low[[0, 1]], low[14] = 0, 1  # 0.65: two images lost, one won
    high[[2, 3]] = 0  # 0.60: two images lost, none won
    right = {0.01: low, 0.03: best, 0.1: high}
    assert choose_rate(right, "best")[0] == 0.03
    # the binomial SE of 0.70 on 20 images is 0.102: both others are within it, and the largest is taken
    assert choose_rate(right, "largest within 1 SE")[0] == 0.1
    # paired differences: 0.1's (-0.10) is 1.5 of its SEs below the best, 0.01's (-0.05) 0.6: the smallest within
    assert choose_rate(right, "smallest within 1 SE, paired")[0] == 0.01
    with pytest.raises(ValueError, match="rule must be one of"):
        choose_rate(right, "median")
