"""Claims of lessons/04_batchnorm_when_fine_tuning.ipynb, re-measured with the same ftcourse calls.

Seeds: the cheap claims (no training) on seeds 0-2; those that fine-tune or probe on the fresh seeds
(seed 0 in `make test`, $FTCOURSE_CLAIM_SEEDS in `make claims`); the BN-policy, AdaBN and shifted-target
claims as paired verdicts over seeds 0-9, trained for the fresh ones and read from data/results/ for the others.

Directions and rough sizes only (thresholds leave room for seed-to-seed spread): BN at inference is an
affine map; folding keeps the outputs; tiny-batch statistics are noisy and cost accuracy when used to
predict; the BN policies compared when fine-tuning at batch sizes 2-32 (ftcourse.lab.studies.bn_policy_study,
the table the lesson prints); AdaBN repairs contrast and colour shifts but not inversion; a wrong input
normalisation costs a lot and AdaBN absorbs it.
"""
import copy

import pytest
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

import ftcourse
from ftcourse.lab import shipped, studies
from claim_seeds import FRESH, SEEDS, SEEDS_OF, SHIPPED_AND_FRESH, lesson_aware, results_per_seed, study_results
from claim_seeds import verdict as _verdict


@pytest.fixture(scope="module")
def pretrained():
    return ftcourse.load_pretrained().eval()


@pytest.fixture(scope="module", params=FRESH)
def probe(request):
    """(seed, linear probe on 50 clean target images per class, clean target task), as in the lesson."""
    seed = request.param
    task = ftcourse.target_task(shots=50, seed=seed)
    model, _ = ftcourse.linear_probe(task, seed=seed)
    return seed, model.eval(), task


def _loader(images):
    return ftcourse.make_loader(images, torch.zeros(len(images)), batch_size=64)


def _adabn(model, images):
    return ftcourse.adabn(copy.deepcopy(model), _loader(images))


def _acc(model, task):
    return ftcourse.evaluate(model, (task.x_test, task.y_test), device="cpu")


@pytest.mark.parametrize("seed", SEEDS)
def test_bn_at_inference_is_the_hand_built_affine_map(pretrained, seed):
    x = ftcourse.target_task(shots=5, seed=seed).x_train
    with torch.no_grad():
        for block_bn, conv in [(pretrained.bn1, pretrained.conv1), (pretrained.layer2[0].bn2, None)]:
            z = conv(x) if conv is not None else torch.randn(8, block_bn.num_features, 8, 8,
                                                             generator=torch.Generator().manual_seed(seed))
            scale = block_bn.weight / torch.sqrt(block_bn.running_var + block_bn.eps)
            shift = block_bn.bias - block_bn.running_mean * scale
            by_hand = z * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
            assert (by_hand - block_bn(z)).abs().max() < 1e-5
        affine = ftcourse.bn_to_affine(copy.deepcopy(pretrained), trainable=False)
        assert (affine(x) - pretrained(x)).abs().max() < 1e-4


@pytest.mark.parametrize("seed", SEEDS)
def test_folding_keeps_outputs_removes_bn_and_matches_torch(pretrained, seed):
    x = ftcourse.target_task(shots=5, seed=seed).x_test[:32]
    folded, report = ftcourse.fold_bn(pretrained, return_report=True)
    with torch.no_grad():
        assert (folded(x) - pretrained(x)).abs().max() < 1e-4
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in pretrained.modules())
    assert n_bn == 12 and len(report["folded"]) == n_bn and not report["frozen_affine"]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    for conv, bn in [(pretrained.conv1, pretrained.bn1), (pretrained.layer3[0].downsample[0], pretrained.layer3[0].downsample[1])]:
        ours, ref = ftcourse.fold_conv_bn(conv, bn), fuse_conv_bn_eval(conv, bn)
        assert torch.allclose(ours.weight, ref.weight, atol=1e-6) and torch.allclose(ours.bias, ref.bias, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_statistics_get_noisier_as_the_batch_shrinks(pretrained, seed):
    layer, seen = pretrained.layer4[0].bn1, {}
    hook = layer.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    with torch.no_grad():
        pretrained(ftcourse.target_task(shots=50, seed=seed).x_train)
    hook.remove()
    h, sd = seen["x"], layer.running_var.sqrt()
    population = h.mean(dim=(0, 2, 3))
    g = torch.Generator().manual_seed(seed)
    dev_mean, dev_var, dev_pop = {}, {}, {}
    for size in (2, 4, 32):
        draws = [h[torch.randperm(len(h), generator=g)[:size]] for _ in range(20)]
        means = torch.stack([d.mean(dim=(0, 2, 3)) for d in draws])
        var = torch.stack([d.var(dim=(0, 2, 3), unbiased=False) for d in draws])
        dev_mean[size] = ((means - layer.running_mean) / sd).abs().mean().item()
        dev_pop[size] = ((means - population) / sd).abs().mean().item()
        dev_var[size] = (var / sd**2).log().abs().mean().item()
    assert dev_mean[2] > dev_mean[4] > dev_mean[32]
    assert dev_var[2] > dev_var[4] > dev_var[32]
    assert dev_pop[32] < 0.5 * dev_pop[2], dev_pop  # noise shrinks with the batch ...
    assert dev_mean[32] > dev_pop[32], (dev_mean, dev_pop)  # ... the source/target gap does not


def test_predicting_with_tiny_batch_statistics_costs_accuracy(probe):
    seed, model, task = probe
    x, y = task.x_test[:500], task.y_test[:500]
    accs = {}
    for size in (2, 32):
        m, correct = copy.deepcopy(model).train(), 0
        with torch.no_grad():
            for xs, ys in ftcourse.make_loader(x, y, batch_size=size, shuffle=True, seed=0):
                correct += (m(xs).argmax(1) == ys).sum().item()
        accs[size] = correct / len(y)
    eval_acc = ftcourse.evaluate(model, (x, y), device="cpu")
    assert accs[2] < accs[32] - 0.03, f"seed {seed}: {accs}"
    assert accs[2] < eval_acc - 0.08, f"seed {seed}: batch-2 stats {accs[2]:.3f} vs running {eval_acc:.3f}"


@pytest.fixture(scope="module")
def policies(notebooks_in_session):
    """Per seed: ftcourse.lab.studies.bn_policy_study (what data/results/bn_policy.json holds).

    When lesson 04 runs in this session it trains seed 0 at batches of 2 and 32; `make claims` trains 4 and 8 here,
    `make test` nothing more (the same code at two other batch sizes).
    """
    study = lesson_aware(
        "bn_policy", studies.bn_policy_study, notebooks_in_session,
        lambda seed, part, done: done | studies.bn_policy_study(
            seed, sizes=tuple(b for b in studies.BN_BATCH_SIZES if b not in part)),
        quick_rest=lambda seed, part, done: done)
    return results_per_seed("bn_policy", study, SEEDS_OF["bn_policy"], FRESH)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SHIPPED_AND_FRESH["bn_policy"])
def test_the_shipped_bn_policy_table_is_what_this_code_measures(policies, seed):
    assert not shipped.differences_from_shipped("bn_policy", seed, policies[seed])


@pytest.fixture(scope="module")
def shifted():
    """Per seed: ftcourse.lab.studies.shifted_target_study (data/results/shifted_target.json)."""
    return study_results("shifted_target")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SHIPPED_AND_FRESH["shifted_target"])
def test_the_shipped_shifted_target_table_is_what_this_code_measures(shifted, seed):
    assert not shipped.differences_from_shipped("shifted_target", seed, shifted[seed])


@pytest.mark.slow
def test_bn_policies_across_batch_sizes(policies):
    """Paired over the seeds, as the lesson prints them: plain BN ahead of both frozen policies at batches of 2 on
    validation and test; never behind either at any batch size; frozen statistics and the affine layer never apart."""
    assert all(v > 0.5 for p in policies.values() for k, v in p.items() if k.startswith(("val", "test"))), "all train"
    frozen = ("frozen statistics", "trainable affine")
    for split in ("val", "test"):
        for other in frozen:
            assert _verdict(policies, f"{split} batch 2 batch statistics", f"{split} batch 2 {other}") == "ahead"
        for size in studies.BN_BATCH_SIZES:
            for other in frozen:
                assert _verdict(policies, f"{split} batch {size} batch statistics", f"{split} batch {size} {other}") \
                    != "behind", (split, size, other)
            assert _verdict(policies, f"{split} batch {size} {frozen[0]}", f"{split} batch {size} {frozen[1]}") \
                not in ("ahead", "behind"), (split, size)


@pytest.fixture(scope="module")
def adapted():
    """Per seed: ftcourse.lab.studies.adabn_study (data/results/adabn.json)."""
    return study_results("adabn")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SHIPPED_AND_FRESH["adabn"])
def test_the_shipped_adabn_table_is_what_this_code_measures(adapted, seed):
    assert not shipped.differences_from_shipped("adabn", seed, adapted[seed])


@pytest.mark.slow
def test_adabn_verdicts_over_the_seeds(adapted):
    for split in ("val", "test"):
        for kind in ("contrast", "colour"):  # repaired, and more images help a little more
            assert _verdict(adapted, f"{split} {kind} AdaBN 512", f"{split} {kind} no adaptation") == "ahead"
            assert _verdict(adapted, f"{split} {kind} AdaBN 512", f"{split} {kind} AdaBN 8") != "behind"
        assert _verdict(adapted, f"{split} invert AdaBN 512", f"{split} invert no adaptation") != "ahead"
        assert _verdict(adapted, f"{split} clean AdaBN 512", f"{split} clean no adaptation") != "ahead"
    assert _verdict(adapted, "test clean AdaBN 512", "test clean no adaptation") == "behind"


@pytest.mark.slow
def test_adabn_before_fine_tuning_with_batch_statistics_changes_nothing(shifted):
    """Train-mode BN normalises with each batch; 200 updates at momentum 0.1 overwrite the running statistics."""
    for r in shifted.values():
        for kind in studies.SHIFTED_TARGETS:
            for split in ("val", "test"):
                a, b = r[f"{split} {kind} batch statistics after AdaBN"], r[f"{split} {kind} batch statistics"]
                assert abs(a - b) <= 0.002, (kind, split, a, b)  # one image of 1,000 at most


@pytest.mark.slow
def test_adabn_first_never_hurts_the_frozen_policies_on_a_shifted_target(shifted):
    for kind in studies.SHIFTED_TARGETS:
        for split in ("val", "test"):
            for policy in ("frozen statistics", "trainable affine"):
                assert _verdict(shifted, f"{split} {kind} {policy} after AdaBN", f"{split} {kind} {policy}") != "behind"


@pytest.mark.slow
def test_adabn_repairs_contrast_and_colour_but_not_inversion(probe):
    seed, model, task = probe
    clean = _acc(model, task)
    for kind in ("contrast", "colour", "invert"):
        test = ftcourse.target_task(shots=50, seed=seed, test_shift=kind)
        pool = ftcourse.target_task(shots=120, seed=100 + seed, shift=kind).x_train
        before, after = _acc(model, test), _acc(_adabn(model, pool[:512]), test)
        assert before < clean - 0.2, f"seed {seed} {kind}: the shift should hurt ({before:.3f} vs {clean:.3f})"
        if kind == "invert":
            assert after < clean - 0.25 and after - before < 0.1, f"seed {seed}: invert {before:.3f} -> {after:.3f}"
        else:
            few = _acc(_adabn(model, pool[:8]), test)
            assert (after - before) / (clean - before) > 0.6, f"seed {seed} {kind}: {before:.3f} -> {after:.3f}"
            # even 8 unlabelled images recover most of the loss; more add a little or nothing (seeds 0-2: 0 to +7 points)
            assert (few - before) / (clean - before) > 0.5 and after > few - 0.02, \
                f"seed {seed} {kind}: none {before:.3f}, 8 images {few:.3f}, 512 {after:.3f}"


@pytest.mark.slow
def test_wrong_input_normalisation_costs_a_lot_and_adabn_absorbs_it(probe):
    seed, model, task = probe
    raw_test = ftcourse.denormalize(task.x_test, task.mean, task.std)
    raw_pool = ftcourse.denormalize(ftcourse.target_task(shots=120, seed=100 + seed).x_train[:512], task.mean, task.std)
    source = _acc(model, task)
    adapted_clean = _acc(_adabn(model, ftcourse.normalize(raw_pool, task.mean, task.std)), task)
    raw_train = ftcourse.denormalize(task.x_train, task.mean, task.std)
    own = (raw_train.mean(dim=(0, 2, 3)).tolist(), raw_train.std(dim=(0, 2, 3)).tolist())  # what norm="own" uses
    own_acc = ftcourse.evaluate(model, (ftcourse.normalize(raw_test, *own), task.y_test), device="cpu")
    assert abs(own_acc - source) < 0.02, "the target's own stats are close to the source's here"
    for m, s in [((0.0,) * 3, (1.0,) * 3), (ftcourse.IMAGENET_MEAN, ftcourse.IMAGENET_STD)]:
        x = ftcourse.normalize(raw_test, m, s)
        before = ftcourse.evaluate(model, (x, task.y_test), device="cpu")
        after = ftcourse.evaluate(_adabn(model, ftcourse.normalize(raw_pool, m, s)), (x, task.y_test), device="cpu")
        assert before < source - 0.2, f"seed {seed} norm {m}: {before:.3f} vs {source:.3f}"
        assert abs(after - adapted_clean) < 0.02, f"seed {seed} norm {m}: AdaBN {after:.3f} vs clean AdaBN {adapted_clean:.3f}"
