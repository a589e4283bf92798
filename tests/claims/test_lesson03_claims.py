"""Claim tests for lesson 03 (differential learning rates): every claim the lesson states, over seeds 0-9.

Same ftcourse functions as the notebook (layer_groups, param_groups, fine_tune, update_ratios,
representation_change, time_steps, lp_ft, linear_probe, ulmfit_lrs, gradual_unfreeze); per-run assertions on
direction and rough size, and every comparison between recipes as the paired verdict the lesson prints
(`ftcourse.paired` over the seeds). Four results files: rates (each recipe at its source's setting),
tuned_families (four families, each tuned over the same six top rates on validation), group_rates (question
002, "a resilient weight space") and time_to_accuracy (question 002, "a longer runtime"). The fresh seed's runs
(part of seed 0 in `make test`, $FTCOURSE_CLAIM_SEEDS in `make claims`: tests/claims/claim_seeds.py) are compared
with the files; the other seeds' claims are asserted on the files' numbers (test ids say which).
Timing claims compare runs timed in turns and use medians or minima, so a busy machine does not flip them.
"""
import collections

import numpy as np
import pytest
import torch

import ftcourse
from ftcourse.lab import shipped, studies
from claim_seeds import (FRESH, SEEDS_OF, SEED_IDS_OF, SHIPPED_AND_FRESH, lesson_aware, results_per_seed,
                         study_results)
from claim_seeds import verdict as _verdict

pytestmark = pytest.mark.slow
SEEDS, SEED_IDS = SEEDS_OF["rates"], SEED_IDS_OF["rates"]
ARRAY, SLICE, ULMFIT = "np.array([1e-4,1e-3,1e-2])", "slice(0.003, 0.3)", "ULMFiT 2.6, top 0.3"
TWO, FASTAI = "two-stage (lp_ft 0.01)", "fastai-style (frozen epoch, then slice(0.003, 0.3))"
HEAD10, FROZEN0 = "head 10x (0.01, 0.01, 0.1)", "group 0 frozen, slice(0.003, 0.3)"
# the verdicts the lesson prints (its *_VERDICTS cells), over seeds 0-9
UNTUNED_VERDICTS = {
    'uniform 0.3': 'behind',
    'np.array([1e-4,1e-3,1e-2])': 'behind',
    'slice(0.003, 0.3)': 'not distinguishable at 10 seeds',
    'head 10x (0.01, 0.01, 0.1)': 'not distinguishable at 10 seeds',
    'ULMFiT 2.6, top 0.3': 'behind',
    'two-stage (lp_ft 0.01)': 'ahead',
    'fastai-style (frozen epoch, then slice(0.003, 0.3))': 'not distinguishable at 10 seeds',
    'group 0 frozen, slice(0.003, 0.3)': 'not distinguishable at 10 seeds',
    'gradual unfreezing 0.01': 'behind',
}
TUNED_VERDICTS = {
    'slice': 'behind',
    'head 10x': 'not distinguishable at 10 seeds',
    'two-stage': 'ahead',
    'uniform vs untuned 0.01': 'ahead',
    'two-stage vs slice': 'ahead',
}
SENSITIVITY_VERDICTS = {
    'noise 0.05': 'not distinguishable at 10 seeds',
    'noise 0.2': 'ahead',
    'group 0 at 1e-4': 'behind',
    'group 1 at 1e-3': 'behind',
    'both': 'behind',
}


@pytest.fixture(scope="module")
def results(notebooks_in_session):
    """Per seed: ftcourse.lab.studies.rates_study, what benchmarks/seed_studies.py ran for data/results/rates.json.

    When lesson 03 runs in this session it trains 5 of seed 0's 10 runs and checks them against the file; `make
    claims` trains the other 5 here, `make test` one of them (gradual unfreezing, a code path no lesson runs).
    """
    study = lesson_aware(
        "rates", studies.rates_study, notebooks_in_session,
        lambda seed, part, done: done | studies.rates_study(seed, skip=part),
        quick_rest=lambda seed, part, done: done | studies.rates_study(
            seed, skip=[k for k in studies.RATES_RUNS if k != "gradual unfreezing 0.01"]))
    return results_per_seed("rates", study, SEEDS, FRESH)


@pytest.fixture(scope="module")
def tuned():
    """Per seed: ftcourse.lab.studies.tuned_families_study (data/results/tuned_families.json)."""
    return study_results("tuned_families")


@pytest.fixture(scope="module")
def sensitivity():
    """Per seed: ftcourse.lab.studies.group_rates_study (data/results/group_rates.json)."""
    return study_results("group_rates")


@pytest.mark.parametrize("seed", SHIPPED_AND_FRESH["rates"])
def test_the_shipped_tables_are_what_this_code_measures(results, tuned, sensitivity, seed):
    assert not shipped.differences_from_shipped("rates", seed, results[seed])
    assert not shipped.differences_from_shipped("tuned_families", seed, tuned[seed])
    assert not shipped.differences_from_shipped("group_rates", seed, sensitivity[seed])


def test_the_two_files_agree_where_they_ran_the_same_recipe():
    """tuned_families' uniform 0.01, 0.3, slice at 0.3 and two-stage at 0.01 are rates' runs again, same code."""
    rates, tuned = shipped.read_results("rates")["seeds"], shipped.read_results("tuned_families")["seeds"]
    same = {"uniform top 0.01": "uniform 0.01", "uniform top 0.3": "uniform 0.3", "slice top 0.3": SLICE,
            "two-stage top 0.01": TWO}
    for s in tuned:
        for a, b in same.items():
            assert abs(tuned[s][f"test {a}"] - rates[s][f"test {b}"]) <= 0.02, (s, a)


def _ratios(r: dict, label: str) -> list[float]:
    return [r[f"update group {g} {label}"] for g in range(3)]


# ---------------------------------------------------------------- experiments 1 and 2 (no training)
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet152"])
def test_three_rates_are_three_layer_groups_of_a_resnet(name):
    model = ftcourse.torchvision_backbone(name)
    groups = ftcourse.layer_groups(model, 3)
    m = model
    assert groups == [[m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2], [m.layer3, m.layer4], [m.avgpool, m.fc]]
    counts = [sum(p.numel() for p in ftcourse.params_of(g)) for g in groups]
    assert counts[1] > 0.8 * sum(counts), counts  # layer3-4 hold most parameters
    blocks = [sum(type(b).__name__ in ("BasicBlock", "Bottleneck") for mod in g for b in mod.modules()) for g in groups]
    expected = {"resnet18": [4, 4, 0], "resnet34": [7, 9, 0], "resnet50": [7, 9, 0], "resnet152": [11, 39, 0]}
    assert blocks == expected[name]


def test_param_groups_by_hand_equal_ftcourse_and_wrong_lengths_fail():
    model = ftcourse.load_pretrained(5)
    m = model
    by_hand = [{"params": [p for mod in (m.conv1, m.bn1, m.layer1, m.layer2) for p in mod.parameters()], "lr": 1e-4},
               {"params": [p for mod in (m.layer3, m.layer4) for p in mod.parameters()], "lr": 1e-3},
               {"params": list(m.fc.parameters()), "lr": 1e-2}]
    built = ftcourse.param_groups(model, np.array([1e-4, 1e-3, 1e-2]))
    assert len(built) == 3
    for a, b in zip(by_hand, built):
        assert {id(p) for p in a["params"]} == {id(p) for p in b["params"]} and a["lr"] == b["lr"]
    assert ftcourse.describe_param_groups(torch.optim.SGD(by_hand, momentum=0.9), model).warnings == []
    assert "in no group" in " ".join(ftcourse.describe_param_groups(by_hand[1:], model).warnings)
    with pytest.raises(ValueError, match="2 values but there are 3 groups"):
        ftcourse.param_groups(ftcourse.layer_groups(model, 3), [1e-3, 1e-2], model=model)


# ---------------------------------------------------------------- experiment 3: smaller rate, smaller change
@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_a_smaller_rate_moves_a_group_less(seed, results):
    r = results[seed]
    for label in (ARRAY, SLICE):  # within a run: rates rise input -> output, so do the relative updates
        ratios = _ratios(r, label)
        assert ratios[0] < ratios[1] < ratios[2], (label, ratios)
    uni, arr = _ratios(r, "uniform 0.01"), _ratios(r, ARRAY)
    # 100x lower rate -> 40-45x less; 10x lower -> 5.3-5.5x less; same rate (head) -> x0.9-1.0 [39-47, 5.2-5.5]
    assert 10 < uni[0] / arr[0] < 200, uni[0] / arr[0]
    assert 2 < uni[1] / arr[1] < 20, uni[1] / arr[1]
    assert 0.7 < uni[2] / arr[2] < 1.4, uni[2] / arr[2]
    high = _ratios(r, "uniform 0.3")  # 30x the rate: 11-18x the change in the body groups
    assert high[0] > 5 * uni[0] and high[1] > 5 * uni[1], (high, uni)
    assert all(_ratios(r, k)[2] > 1 for k in ("uniform 0.01", ARRAY, "uniform 0.3", SLICE)), "the head moves the most"


# ---------------------------------------------------------------- experiment 4: time per step
def test_time_per_step_does_not_depend_on_the_rate():
    ratios = []
    for seed in FRESH:
        ftcourse.seed_everything(seed)
        task = ftcourse.target_task(shots=50, seed=seed)
        x, y = next(iter(ftcourse.make_loader(task.x_train, task.y_train, batch_size=32, shuffle=True, seed=seed)))
        timed = {}
        for lr in (1e-4, 1e-2):
            model = ftcourse.load_pretrained(5)
            timed[lr] = (model, ftcourse.make_optimizer(model, lr=lr), [])
            ftcourse.time_steps(model, x, y, timed[lr][1], reps=1, warmup=2)
        for _ in range(30):  # one step each in turns, as in the lesson: a pair sees the same machine load
            for model, opt, seconds in timed.values():
                seconds += ftcourse.time_steps(model, x, y, opt, reps=1, warmup=0)
        ratios.append(float(np.median(np.array(timed[1e-4][2]) / np.array(timed[1e-2][2]))))
    print("\ntime per step, 1e-4 / 1e-2, per seed:", [round(v, 3) for v in ratios])
    assert 0.8 <= float(np.median(ratios)) <= 1.25, ratios


# ---------------------------------------------------------------- experiment 5: uniform high rate vs discriminative


# ---------------------------------------------------------------- experiment 6: two-stage vs discriminative


def test_the_probe_stage_of_two_stage_is_cheap():
    """lp_ft = linear_probe + fine_tune. Why the probe stage is cheap, counted rather than timed (the lesson times
    it): the probe passes each training image through the body once, with no graph, and trains the head on the
    cached features; a fine-tune step passes 32 images through the body with a graph and back (6,400 in 200 steps).
    """
    task = ftcourse.target_task(shots=50, seed=0)
    seen = collections.Counter()  # images through the body's first conv: (graph recorded?, model in train mode?)

    def count(module, inputs, output):
        seen[torch.is_grad_enabled(), module.training] += len(inputs[0])

    probe = ftcourse.load_pretrained()
    probe.conv1.register_forward_hook(count)
    ftcourse.linear_probe(task, 0, model=probe, device="cpu")  # features of the training images, then the test set
    assert seen == {(False, False): len(task.y_train) + len(task.y_test)}, seen
    seen.clear()
    model = ftcourse.fresh_model(seed=0)
    model.conv1.register_forward_hook(count)
    ftcourse.fine_tune(task, 0, steps=10, model=model, device="cpu")
    n, b = len(task.y_train), ftcourse.DEFAULTS.batch_size  # 250 images: 7 batches of 32 and one of 26 per pass
    batches = ([b] * (n // b) + [n % b]) * 2
    assert seen == {(True, True): sum(batches[:10]), (False, False): len(task.y_test)}, seen
    assert ftcourse.DEFAULTS.steps * ftcourse.DEFAULTS.batch_size > 20 * len(task.y_train)


# ---------------------------------------------------------------- experiment 7: variants
def test_variant_rates():
    model = ftcourse.load_pretrained(5)

    def rates(lr):
        return [g["lr"] for g in ftcourse.param_groups(model, lr, n_groups=3)]

    assert rates(slice(1e-3, 1e-1)) == pytest.approx([1e-3, 1e-2, 1e-1])
    assert rates(slice(1e-3, 1e-1)) == pytest.approx(ftcourse.even_mults(1e-3, 1e-1, 3))
    assert rates(slice(None, 1e-1)) == pytest.approx([1e-2, 1e-2, 1e-1])
    assert ftcourse.ulmfit_lrs(3, 0.3) == pytest.approx([0.3 / 2.6**2, 0.3 / 2.6, 0.3])
    assert ftcourse.layerwise_lrs(3, 0.1, 0.5) == pytest.approx([0.025, 0.05, 0.1])


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_ulmfits_gentle_factor_protects_the_body_less_than_a_100x_spread(seed, results):
    r = results[seed]
    for g in (0, 1):  # body update ratios: slice < ULMFiT (top 0.3) < uniform 0.3 in both body groups
        assert r[f"update group {g} {SLICE}"] < r[f"update group {g} {ULMFIT}"] < r[f"update group {g} uniform 0.3"], g


# ---------------------------------------------------------------- the paired table against the default


# ---------------------------------------------------------------- experiments 5 and 6, per run and paired
@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_a_uniform_high_rate_rearranges_the_features_and_the_array_barely_moves_them(seed, results):
    r = results[seed]
    assert r["1 - CKA uniform 0.3"] > 2 * r[f"1 - CKA {SLICE}"], (r["1 - CKA uniform 0.3"], r[f"1 - CKA {SLICE}"])
    assert r[f"1 - CKA {ARRAY}"] < 0.5 * r["1 - CKA uniform 0.01"], (r[f"1 - CKA {ARRAY}"], r["1 - CKA uniform 0.01"])
    assert r[f"1 - CKA {TWO}"] < 0.75 * r[f"1 - CKA {SLICE}"], (r[f"1 - CKA {TWO}"], r[f"1 - CKA {SLICE}"])


def test_slice_is_ahead_of_uniform_0_3_and_two_stage_moves_the_features_less_than_the_default(results):
    assert _verdict(results, f"test {SLICE}", "test uniform 0.3") == "ahead"
    assert _verdict(results, f"1 - CKA {TWO}", "1 - CKA uniform 0.01") == "behind"
    assert _verdict(results, "1 - CKA uniform 0.3", f"1 - CKA {SLICE}") == "ahead"
    assert _verdict(results, f"1 - CKA {TWO}", f"1 - CKA {SLICE}") == "behind"


def test_a_frozen_first_group_gives_almost_the_same_results_as_the_same_rates_unfrozen(results):
    assert _verdict(results, f"test {FROZEN0}", f"test {SLICE}") not in ("ahead", "behind")


def test_every_untuned_recipe_against_the_default_as_the_lesson_prints_it(results):
    got = {k: _verdict(results, f"test {k}", "test uniform 0.01") for k in UNTUNED_VERDICTS}
    assert got == UNTUNED_VERDICTS


# ---------------------------------------------------------------- every family tuned the same way
def test_each_family_tuned_against_tuned_uniform_as_the_lesson_prints_it(tuned):
    got = {f: _verdict(tuned, f"test at the chosen rate {f}", "test at the chosen rate uniform")
           for f in studies.FAMILIES if f != "uniform"}
    got["uniform vs untuned 0.01"] = _verdict(tuned, "test at the chosen rate uniform", "test uniform top 0.01")
    got["two-stage vs slice"] = _verdict(tuned, "test at the chosen rate two-stage", "test at the chosen rate slice")
    assert got == TUNED_VERDICTS
    for f in studies.FAMILIES:  # on validation, where the choices are made, no family is apart from one rate
        if f != "uniform":
            on_val = _verdict(tuned, f"val at the chosen rate {f}", "val at the chosen rate uniform")
            assert on_val not in ("ahead", "behind"), f


@pytest.mark.parametrize("seed", SEEDS_OF["tuned_families"], ids=SEED_IDS_OF["tuned_families"])
def test_a_family_never_chooses_a_rate_that_wrecks_it(tuned, seed):
    r = tuned[seed]
    for family in studies.FAMILIES:
        best = max(r[f"test {family} top {x:g}"] for x in studies.TUNE_GRID)
        assert r[f"test at the chosen rate {family}"] >= best - 0.03, (family, r[f"chosen top {family}"])


# ---------------------------------------------------------------- question 002: which group's low rate costs what
def test_group_sensitivity_and_one_lowered_group_as_the_lesson_prints_it(sensitivity):
    rates = shipped.read_results("rates")["seeds"]
    both = {s: r | {f"test {k}": rates[str(s)][f"test {k}"] for k in ("uniform 0.01", ARRAY)}
            for s, r in sensitivity.items()}
    got = {f"noise {x:g}": _verdict(both, f"val group 1 noise {x:g}", f"val group 0 noise {x:g}")
           for x in studies.NOISE_SCALES}
    got |= {label: _verdict(both, f"test {label}", "test uniform 0.01") for label in studies.GROUP_RATE_SETUPS}
    got["both"] = _verdict(both, f"test {ARRAY}", "test uniform 0.01")
    assert list(got.values()) == list(SENSITIVITY_VERDICTS.values()), got


@pytest.mark.parametrize("seed", SEEDS_OF["group_rates"], ids=SEED_IDS_OF["group_rates"])
def test_more_noise_costs_more_in_both_groups(sensitivity, seed):
    r = sensitivity[seed]
    for g in (0, 1):
        loss = [r[f"probe loss group {g} noise {x}"] for x in ("0.05", "0.2")]
        assert loss[1] > loss[0] > 0.95 * r["probe loss unperturbed"], (g, loss)


# ---------------------------------------------------------------- experiment 4: steps to an accuracy (question 007)
@pytest.fixture(scope="module")
def timing():
    """Per seed: ftcourse.lab.studies.time_to_accuracy_study (data/results/time_to_accuracy.json)."""
    return study_results("time_to_accuracy")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SHIPPED_AND_FRESH["time_to_accuracy"])
def test_the_shipped_time_to_accuracy_table_is_what_this_code_measures(timing, seed):
    assert not shipped.differences_from_shipped("time_to_accuracy", seed, timing[seed])


@pytest.mark.slow
def test_after_100_steps_a_higher_constant_rate_is_ahead_up_to_0_01_and_never_behind(timing):
    at = {lr: {s: r[f"val lr {lr:g} step 100"] for s, r in timing.items()} for lr in studies.TIME_RATES}
    verdicts = {(lo, hi): ftcourse.paired(at[hi], at[lo]).verdict for lo, hi in zip(studies.TIME_RATES, studies.TIME_RATES[1:])}
    assert verdicts[0.001, 0.003] == verdicts[0.003, 0.01] == "ahead", verdicts
    assert verdicts[0.01, 0.03] != "behind", verdicts  # 0.03 vs 0.01: a point or so, not resolved on every run of seeds
