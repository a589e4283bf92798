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


def test_a_study_in_progress_is_never_written_over_the_shipped_files():
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "seed_studies.py"
    out = subprocess.run([sys.executable, str(script), "--study", "recipe_ablation"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "recipe_ablation is in progress (not shipped): give --out" in out.stderr
    assert "recipe_ablation" not in studies.STUDIES and "recipe_ablation" not in shipped.STUDY_NAMES


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
