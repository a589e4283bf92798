"""ftcourse.autopilot: the whole recipe in one call, each decision measured and reported."""
import dataclasses
import time
import warnings

import pytest
import torch
from torch import nn

import ftcourse
from ftcourse import autopilot

STEPS = ["1 BN statistics", "2 head warm-up", "3 BN policy", "4 freeze audit", "5 learning rate", "6 fine-tune",
         "7 BN folding"]


def small(task, val: int = 250):
    """The task with a 200-image test prefix and a `val`-image validation prefix (both class-balanced)."""
    return dataclasses.replace(task, x_test=task.x_test[:200], y_test=task.y_test[:200], x_val=task.x_val[:val],
                               y_val=task.y_val[:val])


@pytest.fixture(scope="module")
def clean_run():
    """One recipe run on the clean 10/class task (40 steps) with the rate search and the AdaBN threshold switched on
    (rates=RATE_CANDIDATES, adabn_policy=None), evaluate calls recorded: (task, model, report, calls)."""
    task = small(ftcourse.target_task(shots=10, seed=0))
    calls = []

    def spy(real):
        def call(model, data, device=None):
            x = data[0]
            calls.append("test" if x is task.x_test else "val" if x is task.x_val else "other")
            return real(model, data, device=device)
        return call

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(autopilot, "evaluate", spy(ftcourse.evaluate))  # the head, the final run, folding
        mp.setattr(autopilot, "predict", spy(ftcourse.predict))  # the short runs (their per-image results)
        model, report = autopilot.run_recipe(task, steps=40, rates=autopilot.RATE_CANDIDATES, adabn_policy=None)
    return task, model, report, calls


def test_the_defaults_are_the_ablation_choice_one_rate_always_adabn_and_shifts():
    """run_recipe() runs lesson 05's rebuilt recipe: AdaBN always, one rate (no short runs; the final run is
    FINAL_FRACTION of the steps), random shifts of up to 4 px on every training batch; each is said in its row."""
    task = small(ftcourse.target_task(shots=10, seed=0), val=50)
    shifts = []
    original = ftcourse.data.RandomShift.__call__

    def spy(self, x):
        shifts.append(self.max_shift)
        return original(self, x)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ftcourse.data.RandomShift, "__call__", spy)
        _, report = autopilot.run_recipe(task, steps=10, fold=False)
    assert report.adabn_applied and "(adabn_policy=True)" in report.rows[0]["measurement"]
    assert report.chosen_lr == autopilot.RATE and report.final_steps == 8 and report.rate_scores == {}  # 80 %
    assert report.config == autopilot.RecipeConfig() and report.config.augment == 4
    assert shifts == [4] * 8  # every training batch of the final run shifted, up to 4 px


def test_every_decision_is_reported_in_order(clean_run):
    task, model, report, _ = clean_run
    assert report.steps == STEPS
    assert all(r["decision"] and r["measurement"] and r["seconds"] >= 0 for r in report.rows)
    assert report.seconds == pytest.approx(sum(r["seconds"] for r in report.rows))
    text = str(report)
    assert all(step in text for step in STEPS) and "total" in text
    assert "<table>" in report._repr_html_() and repr(report) == text == str(report.table())
    assert isinstance(report, ftcourse.tables.TableReport)
    assert report.trainable_groups == 3 and report.bn_policy == "batch statistics"
    assert model.fc.out_features == 5 and model.training  # the unfolded model comes back, in train mode
    # the reported accuracies are the returned model's, and the warm-up head is better than chance (5 classes)
    assert report.val_accuracy == ftcourse.evaluate(model, (task.x_val, task.y_val))
    assert report.test_accuracy == ftcourse.evaluate(model, (task.x_test, task.y_test))
    assert report.head_val_accuracy > 1 / 5 + 0.1


def test_each_row_is_step_decision_measurement_seconds(clean_run):
    report = clean_run[2]
    for row in report.rows:
        assert list(row) == ["step", "decision", "measurement", "seconds"], row
        assert isinstance(row["seconds"], float) and row["seconds"] >= 0, row
    assert "SMALL_BATCH" in report.rows[2]["measurement"] and "ADABN_THRESHOLD" in report.rows[0]["measurement"]


def test_report_step_times_its_block_and_records_one_row():
    report = autopilot.RecipeReport()
    with report.step("x") as row:
        row["decision"], row["measurement"] = "d", "m"
        time.sleep(0.05)
    with pytest.raises(RuntimeError), report.step("failed"):
        raise RuntimeError("a failed step records no row")
    assert report.steps == ["x"] and report.rows[0]["decision"] == "d" and report.rows[0]["measurement"] == "m"
    assert 0.05 <= report.rows[0]["seconds"] < 5 and report.seconds == report.rows[0]["seconds"]


def test_decisions_state_rules_and_measurements_not_study_results(clean_run):
    """Every BN-policy branch (batch 1, a small batch, the default 32): no row quotes a study."""
    task = small(ftcourse.target_task(shots=4, seed=0), val=50)
    _, small_batch = autopilot.run_recipe(task, steps=5, batch_size=4, fold=False, head_steps=0)
    _, one = autopilot.run_recipe(task, steps=5, batch_size=1, fold=False, head_steps=0)
    for report in (clean_run[2], small_batch, one):
        for row in report.rows:
            assert "study" not in (row["decision"] + row["measurement"]).lower(), row
    assert small_batch.bn_policy == "batch statistics" and one.bn_policy == "frozen statistics"


def test_the_rate_is_a_candidate_chosen_on_validation_before_any_test(clean_run):
    _, _, report, calls = clean_run
    assert set(report.rate_scores) == set(autopilot.RATE_CANDIDATES) and report.chosen_lr in autopilot.RATE_CANDIDATES
    best = max(report.rate_scores.values())
    assert report.rate_scores[report.chosen_lr] >= best - (best * (1 - best) / 250) ** 0.5  # within 1 SE of the best
    assert calls.count("test") == 1  # the test set is looked at once ...
    assert calls.index("test") > len(autopilot.RATE_CANDIDATES)  # ... after the head's and every rate's validation
    assert calls[:1 + len(autopilot.RATE_CANDIDATES)] == ["val"] * (1 + len(autopilot.RATE_CANDIDATES))
    left = 40 - report.steps_per_candidate * (len(autopilot.RATE_CANDIDATES) + 1)  # the budget minus the short runs
    assert report.final_steps == round(autopilot.FINAL_FRACTION * left)


def test_no_adabn_on_the_clean_task_under_the_threshold_and_folding_keeps_the_outputs(clean_run):
    task, model, report, _ = clean_run
    assert not report.adabn_applied and report.bn_gap_before < autopilot.ADABN_THRESHOLD
    assert report.fold_max_diff < 1e-4 and report.folded_speedup > 0
    folded = report.folded_model
    assert not ftcourse.bn_modules(folded)
    with torch.no_grad():
        assert torch.allclose(model.eval()(task.x_test[:16]), folded(task.x_test[:16]), atol=1e-4)


def test_adabn_on_a_shifted_task_and_frozen_bn_for_single_image_batches():
    task = small(ftcourse.target_task(shots=10, seed=0, shift="contrast"), val=100)
    gap = autopilot.bn_gap(ftcourse.load_pretrained(), task.x_val)
    model, report = autopilot.run_recipe(task, steps=5, batch_size=1, fold=False, adabn_policy=None)
    assert report.adabn_applied and report.bn_gap_before == pytest.approx(gap) and gap > autopilot.ADABN_THRESHOLD
    assert report.bn_gap_after < autopilot.ADABN_THRESHOLD < report.bn_gap_before
    assert report.bn_policy == "frozen statistics"
    assert all(ftcourse.bn.bn_stats_frozen(m) for _, m in ftcourse.bn_modules(model))
    assert report.folded_model is None and report.steps == STEPS[:-1]


def test_bad_inputs_name_the_fix():
    task = ftcourse.target_task(shots=2, seed=0)
    with pytest.raises(TypeError, match="target_task"):
        autopilot.run_recipe((task.x_train, task.y_train))
    with pytest.raises(ValueError, match="steps must be an int >= 5"):
        autopilot.run_recipe(task, steps=4)
    with pytest.raises(ValueError, match="validation split.*dataclasses.replace"):
        autopilot.run_recipe(dataclasses.replace(task, x_val=None, y_val=None))
    with pytest.raises(ValueError, match="candidate learning rates"):
        autopilot.run_recipe(task, rates=())
    headless = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="no nn.Linear head.*model.fc = nn.Linear"):
        autopilot.run_recipe(task, model=headless)


def test_a_torchvision_resnet18_runs_the_recipe():
    task = small(ftcourse.target_task(shots=4, seed=0), val=50)
    model, report = autopilot.run_recipe(task, model=ftcourse.torchvision_backbone("resnet18", num_classes=5), steps=6,
                                      batch_size=8)
    assert isinstance(model, ftcourse.models.ResNet) and report.steps == STEPS
    assert report.trainable_groups == 3 and report.test_accuracy == ftcourse.evaluate(model, (task.x_test, task.y_test))
    with torch.no_grad():
        scale = model.eval()(task.x_test[:64]).abs().max().item()
    assert report.fold_max_diff <= 1e-5 * max(1.0, scale)  # float32 rounding of large random-weight logits


def test_ablation_switches_do_what_they_say():
    task = ftcourse.far_task(shots=4, seed=0)
    _, off = autopilot.run_recipe(task, seed=0, steps=10, fold=False, adabn_policy=False, head_steps=0, final_steps=3)
    assert not off.adabn_applied and off.bn_gap_after == off.bn_gap_before
    assert off.rows[1]["decision"].startswith("new head, 0 steps") and off.final_steps == 3
    _, on = autopilot.run_recipe(task, seed=0, steps=10, fold=False, adabn_policy=True,
                                 rates=autopilot.RATE_CANDIDATES)
    assert on.adabn_applied and on.bn_gap_after < on.bn_gap_before
    # with candidates: FINAL_FRACTION of the steps the short runs leave (steps minus the measurements)
    assert on.final_steps == round(autopilot.FINAL_FRACTION * (10 - 1 * (len(on.rate_scores) + 1)))


def test_recipe_config_names_each_bad_setting_and_lists_its_changes():
    assert autopilot.RecipeConfig().changes() == "defaults"
    assert autopilot.RecipeConfig(augment=0, ema=0.98).changes() == "augment=0, ema=0.98"
    bad = [({"optimizer": "adam"}, "optimizer must be one of \\('sgd', 'adamw'\\)"),
           ({"schedule": "linear"}, "schedule must be one of"), ({"rate_rule": "median"}, "rate_rule must be one of"),
           ({"augment": -1}, "augment"), ({"label_smoothing": 1.0}, "label_smoothing must be a number in"),
           ({"ema": 1.0}, "ema must be None or a decay in \\(0, 1\\)"), ({"probe_fraction": 0.6}, "probe_fraction"),
           ({"bn_policy": "affine"}, "bn_policy must be one of"), ({"final_fraction": 0}, "final_fraction"),
           ({"final_fraction": 1.5}, "final_fraction must be a number in \\(0, 1\\]"),
           ({"final_fraction": True}, "final_fraction")]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            autopilot.RecipeConfig(**kwargs)
    with pytest.raises(TypeError, match="config must be a RecipeConfig"):
        autopilot.run_recipe(small(ftcourse.target_task(shots=10, seed=0)), config={"augment": 4})


def test_one_candidate_rate_means_no_short_runs_and_the_final_run_s_share_of_the_whole_budget():
    task = small(ftcourse.target_task(shots=10, seed=0), val=50)
    _, report = autopilot.run_recipe(task, steps=10, rates=(0.03,), fold=False)
    assert report.chosen_lr == 0.03 and report.final_steps == 8 and report.rate_scores == {}
    assert "the only candidate" in report.rows[4]["decision"]


def test_final_fraction_shortens_the_final_run_and_final_steps_overrides_it():
    task = small(ftcourse.target_task(shots=10, seed=0), val=50)
    short = autopilot.RecipeConfig(final_fraction=0.8)
    _, report = autopilot.run_recipe(task, steps=10, fold=False, config=short)
    assert report.final_steps == 8 and "8 steps" in report.rows[5]["decision"]
    _, report = autopilot.run_recipe(task, steps=10, fold=False, config=short, final_steps=5)
    assert report.final_steps == 5
    with pytest.warns(UserWarning, match="too few to choose"):  # 50 validation images: the middle one trains
        _, report = autopilot.run_recipe(task, steps=20, fold=False, config=short, rates=(0.01, 0.03))
    assert report.final_steps == 16


def test_bn_gap_with_the_target_means_given_is_the_same_number_without_a_second_pass():
    task = ftcourse.far_task(shots=4, seed=0)
    model = ftcourse.load_pretrained()
    target = autopilot.target_means(model, task.x_val)
    assert autopilot.bn_gap(model, task.x_val, target=target) == autopilot.bn_gap(model, task.x_val)
    ftcourse.adabn(model, ftcourse.make_loader(task.x_train, task.y_train, batch_size=64))
    assert autopilot.bn_gap(model, task.x_val, target=target) == autopilot.bn_gap(model, task.x_val)


def test_config_settings_reach_the_training():
    """EMA leaves the averaged weights in the model; a strong L2-SP keeps the body near its pretrained weights; the
    paired rule and AdamW choose among their own candidates; every setting is named in the final row."""
    task = small(ftcourse.target_task(shots=10, seed=0), val=autopilot.MIN_VAL_TO_CHOOSE)  # enough to choose
    pretrained = ftcourse.load_pretrained()
    body = {n: p.detach().clone() for n, p in pretrained.named_parameters() if not n.startswith("fc")}

    def moved(model):
        return sum((p.detach() - body[n]).norm().item() for n, p in model.named_parameters() if n in body)

    plain, _ = autopilot.run_recipe(task, steps=10, rates=(0.1,), fold=False)
    pulled, report = autopilot.run_recipe(task, steps=10, rates=(0.1,), fold=False,
                                          config=autopilot.RecipeConfig(l2sp=50.0))
    assert moved(pulled) < 0.8 * moved(plain) and "l2sp=50.0" in report.rows[5]["decision"]
    seen = []
    original = torch.optim.swa_utils.AveragedModel.update_parameters

    def spy(self, model):
        seen.append(1)
        return original(self, model)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.swa_utils.AveragedModel, "update_parameters", spy)
        averaged, _ = autopilot.run_recipe(task, steps=10, rates=(0.1,), fold=False,
                                           config=autopilot.RecipeConfig(ema=0.5))
    assert len(seen) == 8 and moved(averaged) < moved(plain)  # one update per step (80 % of 10); the average lags
    _, report = autopilot.run_recipe(task, steps=20, rates=(3e-4, 1e-3), fold=False,
                                     config=autopilot.RecipeConfig(optimizer="adamw",
                                                                   rate_rule="smallest within 1 SE, paired"))
    assert report.chosen_lr in (3e-4, 1e-3) and "smallest within 1 SE, paired" in report.rows[4]["decision"]


def test_a_validation_split_too_small_to_choose_a_rate_is_a_warning_that_says_what_happens():
    full = ftcourse.far_task(shots=5, seed=0)
    task = small(full, val=20)
    with pytest.warns(UserWarning, match="20 validation images are too few to choose a learning rate") as caught:
        _, report = autopilot.run_recipe(task, seed=0, steps=5, fold=False, rates=(0.01, 0.03, 0.1))
    assert "val_per_class" in str(caught[0].message) and "0.03, the middle" in str(caught[0].message)
    assert report.chosen_lr == 0.03 and report.final_steps == 4 and report.rate_scores == {}
    assert "validation too small to choose" in report.rows[4]["decision"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one rate: nothing to choose, nothing to warn about
        autopilot.run_recipe(task, seed=0, steps=5, fold=False, rates=(0.03,))
        # enough validation images to choose: no warning
        autopilot.run_recipe(small(full, val=autopilot.MIN_VAL_TO_CHOOSE), seed=0, steps=5, fold=False,
                             rates=(0.01, 0.03, 0.1))
