"""Claim tests for lesson 02 (warming up the head): every claim the lesson states, over three seeds.

The same ftcourse functions as the notebook (body_gradient, recipes.linear_probe / fine_tune / lp_ft,
representation_change, shifted_accuracy, compare_baselines), the same task (50 images per class),
assertions on direction and rough size. One module-scope fixture trains each seed's models once.
"""
import copy

import pytest
import torch

import ftcourse
from ftcourse import recipes

torch.set_num_threads(2)
SEEDS = [0, 1, 2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs():
    """Per seed: first-step gradients, the three recipes' models and accuracies, feature change."""
    out = {}
    for seed in SEEDS:
        task = ftcourse.target_task(shots=50, seed=seed)
        x, y = next(iter(ftcourse.make_loader(task.x_train, task.y_train, batch_size=32, shuffle=True, seed=seed)))
        ftcourse.seed_everything(seed)
        random_head = ftcourse.load_pretrained()
        ftcourse.replace_head(random_head, 5)
        probe, acc_lp = recipes.linear_probe(task, seed=seed)
        grads = {}
        for label, model in [("random", random_head), ("warmed", copy.deepcopy(probe))]:
            model.train()
            grads[label] = ftcourse.body_gradient(model, x, y)
        finetuned, acc_ft = recipes.fine_tune(task, seed=seed)
        lpft, acc_lpft = recipes.lp_ft(task, seed=seed)
        pretrained = ftcourse.load_pretrained(5)
        out[seed] = {
            "grads": grads,
            "acc": {"lp": acc_lp, "ft": acc_ft, "lpft": acc_lpft},
            "ood": {k: recipes.shifted_accuracy(m, task)["mean"] for k, m in [("lp", probe), ("ft", finetuned),
                                                                             ("lpft", lpft)]},
            "change": {k: ftcourse.representation_change(pretrained, m, task.x_test)
                       for k, m in [("ft", finetuned), ("lpft", lpft)]},
        }
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_random_head_does_not_send_larger_gradients_into_the_body(runs, seed):
    g = runs[seed]["grads"]
    assert g["random"]["loss"] > 2 * g["warmed"]["loss"]  # the random head's errors are larger...
    assert g["warmed"]["head_weight_norm"] > 2 * g["random"]["head_weight_norm"]  # ...its weights smaller...
    assert g["warmed"]["body_grad_norm"] > g["random"]["body_grad_norm"]  # ...and the product smaller


@pytest.mark.parametrize("seed", SEEDS)
def test_lp_ft_changes_features_less_than_fine_tuning(runs, seed):
    c = runs[seed]["change"]
    assert c["ft"]["1 - CKA"] > 1.5 * c["lpft"]["1 - CKA"]
    assert c["ft"]["relative"] > c["lpft"]["relative"]
    assert c["ft"]["1 - CKA"] < 0.5  # a change, not a destruction


@pytest.mark.parametrize("seed", SEEDS)
def test_in_distribution_ft_and_lp_ft_beat_the_linear_probe_and_match_each_other(runs, seed):
    a = runs[seed]["acc"]
    assert a["ft"] > a["lp"] + 0.03 and a["lpft"] > a["lp"] + 0.03
    assert abs(a["lpft"] - a["ft"]) < 0.03


@pytest.mark.parametrize("seed", SEEDS)
def test_out_of_distribution_lp_ft_beats_fine_tuning(runs, seed):
    o = runs[seed]["ood"]
    assert o["lpft"] > o["ft"]
    assert o["lp"] > o["ft"]  # fine-tuning from a random head: the worst of the three OOD (Kumar et al.'s order)


def test_ood_accuracy_is_far_below_in_distribution(runs):
    for seed in SEEDS:
        assert all(runs[seed]["ood"][k] < runs[seed]["acc"][k] - 0.1 for k in ("lp", "ft", "lpft"))


@pytest.fixture(scope="module")
def crossover():
    """compare_baselines at 1 and 250 images per class (the whole pool), per seed."""
    return {(seed, shots): recipes.compare_baselines(ftcourse.target_task(shots=shots, seed=seed), seed=seed)
            for seed in SEEDS for shots in (1, 250)}


@pytest.mark.parametrize("seed", SEEDS)
def test_scratch_overtakes_the_linear_probe_only_with_plenty_of_data(crossover, runs, seed):
    few, many = crossover[(seed, 1)], crossover[(seed, 250)]
    assert few["linear probe"] > few["scratch"] + 0.1
    assert many["scratch"] > many["linear probe"] + 0.02


@pytest.mark.parametrize("seed", SEEDS)
def test_fine_tuning_gains_little_over_the_probe_with_one_image_per_class(crossover, seed):
    few, many = crossover[(seed, 1)], crossover[(seed, 250)]
    lead_few, lead_many = few["fine-tune"] - few["linear probe"], many["fine-tune"] - many["linear probe"]
    assert lead_few < lead_many
    assert lead_few > -0.05  # never clearly below the probe
    assert lead_many > 0.05
