"""ftcourse.fastai_fine_tune against fastai 2.8's Learner.fine_tune defaults (quoted, fastai not imported).

The constants below are fastai 2.8.12's (PyPI wheel; fastcore 2.2.41), file:line in that wheel.
benchmarks/fastai_schedule_check.py compares against real fastai when it is installed.
What `ftcourse.fastai_style` follows, quoted from fastai 2.8.12 (the PyPI wheel; fastcore 2.2.41), file:line:
  callback/schedule.py:164-171  fine_tune(epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, pct_start=0.3, div=5.0):
                                freeze(); fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99); base_lr /= 2;
                                unfreeze(); fit_one_cycle(epochs, slice(base_lr/lr_mult, base_lr), pct_start, div)
  callback/schedule.py:114-121  fit_one_cycle(div=25., div_final=1e5, ...): lr combined_cos(pct_start, lr_max/div,
                                lr_max, lr_max/div_final); mom combined_cos(pct_start, *moms)
  callback/schedule.py:49, 84-86  sched_cos and combined_cos (cosine start->middle over pct_start, middle->end)
  callback/schedule.py:96 + callback/core.py:89,97  set before each batch at pos = pct_train = i / (epochs * batches)
  optimizer.py:233-245          Adam(mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True); steps at :138-141
                                (p *= 1 - lr*wd), :152-168 (dampened averages), :223-228 (debiased step) = torch AdamW
  optimizer.py:57-61, fastcore basics.py:1325  slice(lo, hi): even_mults; slice(hi): hi/10 for all groups but the last
  learner.py:113-123            Learner(opt_func=Adam, wd=None, wd_bn_bias=False, train_bn=True,
                                moms=(0.95,0.85,0.95))
  learner.py:198-201 + torch_core.py:685-693  no decay on norm-layer params and biases; norm params stay trainable
  learner.py:662-665            freeze_to / unfreeze clear the optimizer state (a fresh AdamW for the second phase)
  vision/learner.py:122, 130, 142  torchvision resnets split as m[0][:6], m[0][6:], m[1:]: [conv1, bn1, relu, maxpool,
                                layer1, layer2], [layer3, layer4], head = ftcourse's layer_groups(model, 3)
  data/core.py:264              the training DataLoader shuffles and drops its last incomplete batch
"""
import copy
import dataclasses
import math

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import ftcourse
import ftcourse.fastai_style as fastai_style
from ftcourse.fastai_style import fastai_phase

# callback/schedule.py:164-171  fine_tune(epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, pct_start=0.3, div=5.0):
#   freeze(); fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99); base_lr /= 2; unfreeze();
#   fit_one_cycle(epochs, slice(base_lr/lr_mult, base_lr), pct_start=pct_start, div=div)
BASE_LR, LR_MULT, PCT_START, DIV, FROZEN_PCT_START = 2e-3, 100, 0.3, 5.0, 0.99
# callback/schedule.py:114  fit_one_cycle(n_epoch, lr_max=None, div=25., div_final=1e5, pct_start=0.25, ...)
FIT_ONE_CYCLE_DIV, DIV_FINAL = 25.0, 1e5
# learner.py:123  moms=(0.95,0.85,0.95); learner.py:120-122  wd=None, wd_bn_bias=False, train_bn=True
MOMS = (0.95, 0.85, 0.95)
# optimizer.py:233-241  Adam(mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True)
SQR_MOM, EPS, WD = 0.99, 1e-5, 0.01
# vision/learner.py:122  _resnet_split(m): m[0][:6], m[0][6:], m[1:] with m[0] the resnet's children but the last 2
# (vision/learner.py:130 cut=-2; :142 resnet18-152), m[1:] the head
RESNET_SPLIT = (["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"], ["layer3", "layer4"], ["avgpool", "fc"])


def sched_cos(start, end, pos):
    """callback/schedule.py:49, verbatim."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def combined_cos(pct, start, middle, end, pos):
    """callback/schedule.py:84-86 with combine_scheds (:70-81): start->middle before pct, middle->end from pct on."""
    return sched_cos(start, middle, pos / pct) if pos < pct else sched_cos(middle, end, (pos - pct) / (1 - pct))


@pytest.fixture
def pretrained():
    torch.manual_seed(0)
    return ftcourse.load_pretrained(num_classes=5)


def names_of(model, modules):
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(m)] for m in modules]


def bn_or_bias(model):
    """ids of every BatchNorm parameter and every bias (fastai's norm_bias_params, torch_core.py:688-693)."""
    ids = {id(p) for m in model.modules() if isinstance(m, _BatchNorm) for p in m.parameters()}
    return ids | {id(p) for n, p in model.named_parameters() if n.endswith("bias")}


def peak_per_group(opt, sched) -> list[float]:
    """The one peak rate of each layer group, input to output."""
    peaks = {}
    for g, peak in zip(opt.param_groups, sched.peaks):
        peaks.setdefault(int(g["name"].split()[1]), set()).add(peak)
    assert all(len(v) == 1 for v in peaks.values()), peaks
    return [peaks[i].pop() for i in sorted(peaks)]


def test_three_layer_groups_are_fastais_resnet_split(pretrained):
    groups = ftcourse.layer_groups(pretrained, 3)
    assert [names_of(pretrained, g) for g in groups] == [list(s) for s in RESNET_SPLIT]


def test_frozen_phase_trains_the_head_and_body_bn_at_slice_base_lr(pretrained):
    groups = ftcourse.freeze_to(pretrained, -1, groups=ftcourse.layer_groups(pretrained, 3), train_bn=True)
    trainable = {n for n, p in pretrained.named_parameters() if p.requires_grad}
    bn = {f"{n}.{k}" for n, m in pretrained.named_modules() if isinstance(m, _BatchNorm) for k in ("weight", "bias")}
    assert trainable == bn | {"fc.weight", "fc.bias"}  # body frozen but its BN layers (train_bn=True); head trains
    opt, sched = fastai_phase(pretrained, groups, slice(BASE_LR), 100, FROZEN_PCT_START, FIT_ONE_CYCLE_DIV)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert held == {id(p) for p in pretrained.parameters() if p.requires_grad}
    assert peak_per_group(opt, sched) == pytest.approx([BASE_LR / 10, BASE_LR / 10, BASE_LR])  # slice(hi)
    # BN layers in train mode in this phase: their running statistics update
    pretrained.train()
    before = pretrained.layer1[0].bn1.running_mean.clone()
    pretrained(torch.randn(4, 3, 32, 32))
    assert not torch.equal(before, pretrained.layer1[0].bn1.running_mean)


def test_unfrozen_phase_spreads_half_base_lr_geometrically(pretrained):
    groups = ftcourse.freeze_to(pretrained, 0, groups=ftcourse.layer_groups(pretrained, 3))
    lr = BASE_LR / 2
    opt, sched = fastai_phase(pretrained, groups, slice(lr / LR_MULT, lr), 10, PCT_START, DIV)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in pretrained.parameters()}
    assert peak_per_group(opt, sched) == pytest.approx([1e-5, 1e-4, 1e-3])  # slice(lo, hi): fastcore's even_mults


def test_adamw_with_fastais_betas_eps_and_no_decay_on_bn_and_biases(pretrained):
    groups = ftcourse.layer_groups(pretrained, 3)
    opt, _ = fastai_phase(pretrained, groups, slice(1e-5, 1e-3), 10, PCT_START, DIV)
    assert type(opt) is torch.optim.AdamW  # decoupled decay p *= 1 - lr*wd, as fastai's weight_decay (optimizer.py:138)
    no_decay = bn_or_bias(pretrained)
    for g in opt.param_groups:
        assert g["eps"] == EPS and g["betas"] == (MOMS[0], SQR_MOM)
        wanted = {0.0} if all(id(p) in no_decay for p in g["params"]) else {WD}
        assert {g["weight_decay"]} == wanted and all((id(p) in no_decay) == (wanted == {0.0}) for p in g["params"])


@pytest.mark.parametrize("pct, div, n", [(FROZEN_PCT_START, FIT_ONE_CYCLE_DIV, 100), (PCT_START, DIV, 10)])
def test_lr_and_beta1_at_start_peak_and_end_of_a_cycle(pretrained, pct, div, n):
    groups = ftcourse.layer_groups(pretrained, 3)
    opt, sched = fastai_phase(pretrained, groups, slice(1e-5, 1e-3), n, pct, div)
    peak_step = round(pct * n)

    def values():
        return [g["lr"] for g in opt.param_groups], opt.param_groups[0]["betas"][0]

    lrs, beta1 = values()  # step 0: pos 0
    assert lrs == pytest.approx([p / div for p in sched.peaks]) and beta1 == pytest.approx(MOMS[0])
    sched(peak_step)  # pos = pct_start
    lrs, beta1 = values()
    assert lrs == pytest.approx(sched.peaks) and beta1 == pytest.approx(MOMS[1])
    sched(n - 1)  # the last step: pos (n-1)/n, fastai's pct_train (callback/core.py:97)
    lrs, beta1 = values()
    pos = (n - 1) / n
    assert lrs == pytest.approx([combined_cos(pct, p / div, p, p / DIV_FINAL, pos) for p in sched.peaks])
    assert beta1 == pytest.approx(combined_cos(pct, *MOMS, pos))
    sched(n)  # pos 1, the cycle's end value (never used for a step)
    lrs, beta1 = values()
    assert lrs == pytest.approx([p / DIV_FINAL for p in sched.peaks]) and beta1 == pytest.approx(MOMS[2])
    for i in (1, peak_step // 2, peak_step + 1):
        sched(i)
        assert values()[0] == pytest.approx([combined_cos(pct, p / div, p, p / DIV_FINAL, i / n) for p in sched.peaks])


def test_steps_per_phase_and_each_phase_rates(monkeypatch):
    """An epoch is len(train) // batch (fastai's train loader drops the last incomplete batch, data/core.py:264)."""
    calls = []

    def record(model, train, steps, optimizer, schedule, on_step, **kwargs):
        calls.append({"steps": steps, "batches": len(train), "peaks": peak_per_group(optimizer, on_step),
                      "schedule": schedule})

    monkeypatch.setattr(fastai_style, "fit", record)
    task = ftcourse.target_task(shots=50, seed=0)
    task = dataclasses.replace(task, x_test=task.x_test[:10], y_test=task.y_test[:10])
    ftcourse.fastai_fine_tune(task, epochs=28)
    assert [c["steps"] for c in calls] == [7, 7 * 28] and [c["batches"] for c in calls] == [7, 7]  # 250 // 32 = 7
    assert all(c["schedule"] is None for c in calls)  # fit's own OneCycleLR off: the phase's schedule sets the rates
    frozen, unfrozen = calls
    assert frozen["peaks"] == pytest.approx([BASE_LR / 10, BASE_LR / 10, BASE_LR])
    assert unfrozen["peaks"] == pytest.approx([1e-5, 1e-4, 1e-3])
    calls.clear()
    ftcourse.fastai_fine_tune(task, epochs=3, freeze_epochs=0)  # no frozen phase; base_lr still halved
    assert [c["steps"] for c in calls] == [21] and calls[0]["peaks"] == pytest.approx([1e-5, 1e-4, 1e-3])


@pytest.fixture(scope="module")
def tiny_task():
    task = ftcourse.target_task(shots=5, seed=0)  # 25 images: 3 batches of 8 an epoch
    return dataclasses.replace(task, x_test=task.x_test[:100], y_test=task.y_test[:100])


def test_frozen_phase_moves_bn_and_head_only_and_updates_bn_statistics(tiny_task):
    start = ftcourse.load_pretrained()
    ftcourse.replace_head(start, 5, seed=0)
    # epochs=0: the frozen phase only
    model, acc = ftcourse.fastai_fine_tune(tiny_task, epochs=0, batch_size=8, model=copy.deepcopy(start))
    before, after = start.state_dict(), model.state_dict()
    assert torch.equal(before["conv1.weight"], after["conv1.weight"])
    assert torch.equal(before["layer3.0.conv2.weight"], after["layer3.0.conv2.weight"])
    moved = ("bn1.weight", "layer1.0.bn1.bias", "layer1.0.bn1.running_mean", "layer4.0.bn2.running_var", "fc.weight")
    for name in moved:
        assert not torch.equal(before[name], after[name]), name
    assert acc == ftcourse.evaluate(model, (tiny_task.x_test, tiny_task.y_test))  # the returned model's test accuracy


def test_fastai_fine_tune_end_to_end(tiny_task):
    model, acc = ftcourse.fastai_fine_tune(tiny_task, seed=0, epochs=1, batch_size=8)
    pretrained = ftcourse.load_pretrained()
    assert not torch.equal(model.conv1.weight, pretrained.conv1.weight)  # the body trained in the second phase
    assert all(p.requires_grad for p in model.parameters())
    assert not any(ftcourse.bn.bn_stats_frozen(m) for m in model.modules() if isinstance(m, _BatchNorm))
    assert acc == ftcourse.evaluate(model, (tiny_task.x_test, tiny_task.y_test))  # the returned model's test accuracy
    again, acc2 = ftcourse.fastai_fine_tune(tiny_task, seed=0, epochs=1, batch_size=8)
    assert acc2 == acc and torch.equal(again.conv1.weight, model.conv1.weight)  # seeded
    with pytest.raises(ValueError, match="drops the last"):
        ftcourse.fastai_fine_tune(tiny_task, epochs=1, batch_size=32)
