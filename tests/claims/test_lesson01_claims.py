"""Claim tests for lesson 01 (where backprop stops): every claim the lesson states, over several seeds.

Same ftcourse functions as the notebook (freeze_to, freeze, step_cost, backward_graph_size,
precompute_features, fit, freeze_audit, GradientRecorder); assertions on direction and rough size.
Timing claims compare ratios measured by step_cost (step and forward timed in turns, medians) and
take the median of three measurements, so a busy machine does not flip them.
"""
import copy
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ftcourse
from claim_seeds import SEEDS

pytestmark = pytest.mark.slow


def fresh_model(seed: int):
    """The lesson's fresh_model (ftcourse.fresh_model), on the CPU: pretrained backbone, new 5-way head from `seed`."""
    return ftcourse.fresh_model(5, seed=seed, device="cpu")


def batch(seed: int, size: int = 32):
    task = ftcourse.target_task(shots=10, seed=seed)
    return next(iter(ftcourse.make_loader(task.x_train, task.y_train, batch_size=size, shuffle=True, seed=seed)))


@pytest.fixture(scope="module")
def tasks():
    return {s: ftcourse.target_task(shots=10, seed=s) for s in SEEDS}


# ---------------------------------------------------------------- claim 1
@pytest.mark.parametrize("seed", SEEDS)
def test_frozen_params_get_no_grad_and_trainable_grads_are_unchanged(seed):
    ftcourse.seed_everything(seed)
    x, y = batch(seed)
    full, part = fresh_model(seed), fresh_model(seed)
    for name, p in part.named_parameters():
        if not name.startswith(("layer4", "fc")):
            p.requires_grad_(False)
    for m in (full, part):
        m.train()
        F.cross_entropy(m(x), y).backward()
    frozen = [p for p in part.parameters() if not p.requires_grad]
    assert len(frozen) > 20 and all(p.grad is None for p in frozen)
    pairs = [(a, b) for a, b in zip(full.parameters(), part.parameters()) if b.requires_grad]
    assert pairs and all(torch.allclose(a.grad, b.grad) for a, b in pairs)
    assert all(float(b.grad.abs().sum()) > 0 for _, b in pairs)


# ---------------------------------------------------------------- claims 2, 3 and 6d (cost)
def _cost(seed: int, set_up) -> dict:
    x, y = batch(seed)
    model = fresh_model(seed)
    set_up(model)
    return ftcourse.step_cost(model, x, y, reps=5)


@pytest.fixture(scope="module")
def costs():
    """Per seed: step_cost at every freeze point (stem .. head), with layer2-3 frozen, and fastai's train_bn=True."""
    out = {}
    for seed in SEEDS:
        rows = [_cost(seed, lambda m, k=k: ftcourse.freeze_to(m, k, groups=ftcourse.unit_groups(m))) for k in range(6)]
        out[seed] = {"rows": rows,
                     "middle": _cost(seed, lambda m: ftcourse.freeze([m.layer2, m.layer3])),
                     "train_bn": _cost(seed, lambda m: ftcourse.freeze_to(m, -1, train_bn=True))}
    return out


def _ratio(c: dict) -> float:
    return c["step_ms"] / c["forward_ms"]


def _median_ratio(costs, pick) -> float:
    return statistics.median(_ratio(pick(costs[s])) for s in SEEDS)


@pytest.mark.parametrize("seed", SEEDS)
def test_backward_graph_shrinks_as_the_freeze_point_moves_up(seed, costs):
    nodes = [r["nodes"] for r in costs[seed]["rows"]]
    assert all(a > b for a, b in zip(nodes, nodes[1:])), nodes
    assert nodes[-1] <= 10 and nodes[0] >= 5 * nodes[-1], nodes


def test_head_only_step_costs_about_one_forward_and_full_step_about_three(costs):
    head = _median_ratio(costs, lambda c: c["rows"][-1])
    full = _median_ratio(costs, lambda c: c["rows"][0])
    assert head < 1.5, f"head-only step = {head:.2f} x forward, expected about 1"
    assert 1.8 < full < 6.0, f"full step = {full:.2f} x forward, expected about 3"
    assert full > 1.8 * head


@pytest.mark.parametrize("seed", SEEDS)
def test_frozen_block_between_trainable_ones_still_passes_the_gradient(seed, costs):
    x, y = batch(seed)
    model = fresh_model(seed)
    ftcourse.freeze([model.layer2, model.layer3])
    model.train()
    F.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None for p in [*model.conv1.parameters(), *model.layer1.parameters()])
    assert all(p.grad is None for p in [*model.layer2.parameters(), *model.layer3.parameters()])
    full, layer4, middle = costs[seed]["rows"][0], costs[seed]["rows"][4], costs[seed]["middle"]
    assert middle["nodes"] >= 0.7 * full["nodes"] and middle["nodes"] > 2 * layer4["nodes"]


def test_frozen_block_between_trainable_ones_saves_little_time(costs):
    middle = _median_ratio(costs, lambda c: c["middle"])
    full = _median_ratio(costs, lambda c: c["rows"][0])
    head = _median_ratio(costs, lambda c: c["rows"][-1])
    assert middle > 0.6 * full, f"layer2-3 frozen step {middle:.2f} x forward vs nothing frozen {full:.2f} x"
    assert middle > 1.5 * head


def test_fastai_train_bn_step_costs_far_more_than_a_true_head_only_step(costs):
    bn = _median_ratio(costs, lambda c: c["train_bn"])
    head = _median_ratio(costs, lambda c: c["rows"][-1])
    assert bn > 1.5 * head, (bn, head)


# ---------------------------------------------------------------- claim 4
def _bn_drift(model, task):
    before, reference = ftcourse.snapshot(model), copy.deepcopy(model)
    model.train()
    with torch.no_grad():
        for xb, _ in ftcourse.make_loader(task.x_train, task.y_train, batch_size=16, shuffle=True, seed=0):
            model(xb)
    after = model.state_dict()
    keys = [k for k in before if k.endswith(("running_mean", "running_var"))]
    change = max(float((after[k] - before[k]).norm() / before[k].norm()) for k in keys)
    return change, ftcourse.feature_drift(reference, model, task.x_test[:256])


@pytest.mark.parametrize("seed", SEEDS)
def test_requires_grad_false_does_not_stop_bn_statistics_but_freeze_does(seed, tasks):
    task = tasks[seed]
    naive = fresh_model(seed)
    for p in naive.parameters():
        p.requires_grad_(False)
    for p in naive.fc.parameters():
        p.requires_grad_(True)
    change, drift = _bn_drift(naive, task)
    assert change > 0.02 and drift > 0.02, (change, drift)
    fixed = fresh_model(seed)
    ftcourse.freeze_to(fixed, -1)
    assert _bn_drift(fixed, task) == (0.0, 0.0)
    fixed.train()
    assert not any(m.training for _, m in ftcourse.bn_modules(fixed))


# ---------------------------------------------------------------- claim 5
@pytest.mark.parametrize("seed", SEEDS)
def test_cached_features_train_the_same_head_many_times_faster(seed):
    ftcourse.seed_everything(seed)
    big = ftcourse.target_task(shots=100, seed=seed)
    model = fresh_model(seed)
    ftcourse.freeze_to(model, -1)
    head = copy.deepcopy(model.fc)
    feats, labels = ftcourse.precompute_features(model, (big.x_train, big.y_train), device="cpu")
    hist_a = ftcourse.fit(model, ftcourse.make_loader(big.x_train, big.y_train, 32, shuffle=True, seed=seed),
                          epochs=3, lr=0.05, progress=False, device="cpu")
    hist_b = ftcourse.fit(head, ftcourse.make_loader(feats, labels, 32, shuffle=True, seed=seed),
                          epochs=3, lr=0.05, progress=False, device="cpu")
    with torch.no_grad():
        diff = max(float((a - b).abs().max()) for a, b in zip(model.fc.parameters(), head.parameters()))
        moved = float((head.weight - ftcourse.replace_head(fresh_model(seed), 5, seed=seed).weight).abs().max())
    assert diff < 1e-4 and moved > 1e-3, (diff, moved)
    # best epoch vs best epoch: other load on the machine only ever adds time, so minima compare the work
    assert min(hist_a.seconds) > 5 * min(hist_b.seconds), (hist_a.seconds, hist_b.seconds)


# ---------------------------------------------------------------- claim 6
@pytest.mark.parametrize("seed", SEEDS)
def test_freeze_audit_catches_the_four_setups(seed):
    x, y = batch(seed)
    # 6a: the PyTorch tutorial's fixed feature extractor in train mode
    m = fresh_model(seed)
    for p in m.parameters():
        p.requires_grad = False
    m.fc = torch.nn.Linear(m.fc.in_features, 5)
    m.train()
    r = ftcourse.freeze_audit(m, torch.optim.SGD(m.fc.parameters(), lr=0.001, momentum=0.9), (x, y))
    assert not r.ok and any("BN running statistics changed in 12 BN layers" in t for t in r.traps)
    # 6b: weight decay on zero grads
    m = fresh_model(seed)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, weight_decay=5e-4)
    F.cross_entropy(m(x), y).backward()
    for name, p in m.named_parameters():
        if not name.startswith("fc"):
            p.requires_grad_(False)
    ftcourse.freeze_bn_stats(m)
    r = ftcourse.freeze_audit(m, opt, (x, y), set_to_none=False)
    assert not r.ok and any("moved because of weight decay" in t for t in r.traps)
    assert sum(row["moved_without_grad"] for row in r.rows) == 36
    # 6c: module.requires_grad = False
    m = fresh_model(seed)
    for name, module in m.named_children():
        if name != "fc":
            module.requires_grad = False
    assert all(p.requires_grad for p in m.parameters())
    m.eval()
    r = ftcourse.freeze_audit(m, torch.optim.SGD(m.parameters(), lr=0.01), (x, y))
    assert not r.ok and any("plain Python attribute" in t for t in r.traps)
    # 6d: fastai's train_bn=True: no trap, a note, and a backward graph nearly as big as no freezing
    m = fresh_model(seed)
    ftcourse.freeze_to(m, -1, train_bn=True)
    m.train()
    r = ftcourse.freeze_audit(m, torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01), (x, y))
    assert r.ok and any("BN affine parameters are trainable" in n for n in r.notes)
    bn_nodes = ftcourse.backward_graph_size(F.cross_entropy(m(x), y))
    full = fresh_model(seed).train()
    head = fresh_model(seed)
    ftcourse.freeze_to(head, -1)
    full_nodes = ftcourse.backward_graph_size(F.cross_entropy(full(x), y))
    head_nodes = ftcourse.backward_graph_size(F.cross_entropy(head(x), y))
    assert bn_nodes >= 0.7 * full_nodes and bn_nodes > 5 * head_nodes


# ---------------------------------------------------------------- claim 7
@pytest.mark.parametrize("seed", SEEDS)
def test_signature_plot_data_frozen_groups_get_no_gradient(seed, tasks):
    task = tasks[seed]
    names = ftcourse.unit_names(fresh_model(seed))
    setups = {
        "nothing frozen": (lambda m: None, [False] * 6),
        "layer2-3 frozen": (lambda m: ftcourse.freeze([m.layer2, m.layer3]), [False, False, True, True, False, False]),
        "head only": (lambda m: ftcourse.freeze_to(m, -1), [True] * 5 + [False]),
        "fastai": (lambda m: ftcourse.freeze_to(m, -1, train_bn=True), [False] * 6),
    }
    for label, (set_up, expected_frozen) in setups.items():
        ftcourse.seed_everything(seed)
        model = fresh_model(seed)
        set_up(model)
        loader = ftcourse.make_loader(task.x_train, task.y_train, batch_size=16, shuffle=True, seed=seed)
        with ftcourse.GradientRecorder(model, groups=ftcourse.unit_groups(model), names=names) as rec:
            ftcourse.fit(model, loader, epochs=1, lr=0.01, schedule=None, progress=False, device="cpu",
                         on_step=lambda step: rec.step())
        arr = rec.as_array()
        assert arr.shape == (4, 6)
        assert rec.frozen == expected_frozen, label
        assert np.all(np.isnan(arr[:, expected_frozen])), label
        live = arr[:, [not f for f in expected_frozen]]
        assert np.all(np.isfinite(live) & (live > 0)), label
        if label == "fastai":  # the body gets only BN gradients: much smaller than the head's
            assert np.nanmedian(arr[:, 0]) < 0.5 * np.nanmedian(arr[:, 5])
