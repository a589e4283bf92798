"""freeze_audit catches the freezing traps real code falls into, and stays quiet on a correct freeze."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from ftcourse import course_backbone, freeze, freeze_audit, freeze_bn_stats, freeze_to, layer_groups, param_groups
from ftcourse.audit import twin_copy

N_BN = {"course": 12, "resnet18": 20}


@pytest.fixture(scope="module")
def base_models():
    torch.manual_seed(0)
    return {"course": course_backbone(num_classes=5), "resnet18": resnet18(weights=None, num_classes=5)}


@pytest.fixture(params=["course", "resnet18"])
def model(request, base_models):
    m = copy.deepcopy(base_models[request.param])
    m.kind = request.param  # plain attribute, only for the tests' bookkeeping
    return m


def one_step(model, opt, batch):
    opt.zero_grad(set_to_none=False)
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()


def rows_by_unit(report):
    return {r["unit"]: r for r in report.rows}


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------- (a) the PyTorch tutorial's fixed feature extractor
def test_tutorial_feature_extractor_bn_drift_is_flagged(model, batch):
    for p in model.parameters():
        p.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, 5)
    opt = torch.optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)
    model.train()
    report = freeze_audit(model, opt, batch)
    assert not report.ok
    assert len(report.traps) == 1
    expected = f"BN running statistics changed in {N_BN[model.kind]} BN layers whose parameters are frozen"
    assert expected in report.traps[0]
    rows = rows_by_unit(report)
    assert sum(r["bn_stats_moved"] for r in report.rows) == N_BN[model.kind]
    assert rows["fc"]["moved"] == 2 and rows["layer1"]["moved"] == 0 and rows["layer1"]["got_grad"] == 0
    # the fixes: pin the BN statistics, or put the model in eval mode
    freeze_bn_stats(model)
    model.train()
    assert freeze_audit(model, opt, batch).ok
    model.eval()
    assert freeze_audit(model, opt, batch).findings == []


# ---------------------------------------------------------------- (b) weight decay on zero grads
OPTIMIZERS = {"SGD": lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=1e-2),
              "AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2)}


@pytest.mark.parametrize("kind, opt_name", [("course", "SGD"), ("course", "AdamW"), ("resnet18", "SGD")])
def test_weight_decay_moves_frozen_params_with_zero_grads(base_models, batch, kind, opt_name):
    model = copy.deepcopy(base_models[kind])
    opt = OPTIMIZERS[opt_name](model.parameters())
    one_step(model, opt, batch)
    opt.zero_grad(set_to_none=False)  # grads are now zero tensors, not None
    body = [c for n, c in model.named_children() if n != "fc"]
    for c in body:
        c.requires_grad_(False)
    model.eval()  # rule out the BN trap: this test is about weight decay
    report = freeze_audit(model, opt, batch)
    n_body = sum(1 for c in body for _ in c.parameters())
    assert not report.ok
    assert len(report.traps) == 1
    assert report.traps[0].startswith(f"{n_body} frozen parameters moved because of weight decay")
    assert "zero tensor, not None" in report.traps[0]
    frozen = [r for r in report.param_rows if not r["requires_grad"]]
    assert len(frozen) == n_body and all(r["moved_without_grad"] and r["grad_state"] == "zero" for r in frozen)
    # the fix: zero_grad(set_to_none=True) leaves None grads, which the optimizer skips
    report = freeze_audit(model, opt, batch, set_to_none=True)
    assert report.ok and not any(r["moved"] for r in report.param_rows if not r["requires_grad"])
    assert any("optimizer holds" in n for n in report.notes)


def test_momentum_alone_moves_frozen_params_with_zero_grads(batch):
    model = course_backbone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    one_step(model, opt, batch)
    opt.zero_grad(set_to_none=False)
    model.layer1.requires_grad_(False)
    model.eval()
    report = freeze_audit(model, opt, batch)
    assert report.traps == [t for t in report.traps if "because of momentum" in t] and len(report.traps) == 1
    assert rows_by_unit(report)["layer1"]["moved_without_grad"] == 6


def test_stale_gradients_move_frozen_params(batch):
    model = course_backbone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(batch[0]), batch[1]).backward()  # grads left in place, no zero_grad
    model.layer4.requires_grad_(False)
    model.eval()
    report = freeze_audit(model, opt, batch)
    assert not report.ok and "stale gradient" in report.traps[0]
    assert rows_by_unit(report)["layer4"]["got_grad"] == 0 and rows_by_unit(report)["layer4"]["moved"] == 9


# ---------------------------------------------------------------- (c) module.requires_grad = False is a no-op
def test_requires_grad_attribute_on_module_is_flagged(model, batch):
    model.layer1.requires_grad = False  # the trap: a plain Python attribute
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    report = freeze_audit(model, opt, batch)
    assert not report.ok
    assert any("module.requires_grad = False was set on 1 module (layer1)" in t and "requires_grad_(" in t
               for t in report.traps)
    layer1 = [r for r in report.param_rows if r["name"].startswith("layer1.")]
    assert layer1 and all(r["requires_grad"] and r["got_grad"] and r["moved"] for r in layer1)
    assert rows_by_unit(report)["layer1"]["requires_grad_attr"]
    assert "[.requires_grad attr!]" in str(report)


# ---------------------------------------------------------------- (d) fastai-style freeze
def test_fastai_freeze_is_informational(model, batch):
    freeze_to(model, -1, train_bn=True)
    model.train()
    opt = torch.optim.SGD(trainable(model), lr=0.1)
    report = freeze_audit(model, opt, batch)
    assert report.ok and report.traps == []
    assert len(report.notes) == 1 and "train_bn=True" in report.notes[0]
    assert f"in {N_BN[model.kind]} BN layers" in report.notes[0]
    assert report.findings == report.notes
    bn_params = [r for r in report.param_rows if ".bn" in r["name"] or r["name"].startswith("bn1")]
    assert bn_params and all(r["got_grad"] for r in bn_params)


# ---------------------------------------------------------------- (e) a correct freeze
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_correct_freeze_is_ok(model, batch, mode):
    freeze_to(model, -1)
    getattr(model, mode)()
    opt = torch.optim.SGD(trainable(model), lr=0.1, momentum=0.9, weight_decay=1e-2)
    one_step(model, opt, batch)
    report = freeze_audit(model, opt, batch)
    assert report.ok and report.findings == []
    assert "OK: no freezing trap found." in str(report)
    moved = {r["name"] for r in report.param_rows if r["moved"]}
    assert moved == {"fc.weight", "fc.bias"}
    assert sum(r["bn_stats_moved"] for r in report.rows) == 0


def test_correct_freeze_with_groups(model, batch):
    groups = freeze_to(model, 1)
    model.train()
    opt = torch.optim.SGD(trainable(model), lr=0.1)
    report = freeze_audit(model, opt, batch, groups=layer_groups(model))
    assert report.ok and report.findings == []
    assert [r["unit"].split(":")[0] for r in report.rows] == ["group 0", "group 1", "group 2"]
    assert sum(r["tensors"] for r in report.rows) == len(list(model.parameters()))
    assert [r["frozen"] for r in report.rows] == [True, False, False]
    assert report.rows[0]["got_grad"] == 0 and report.rows[1]["got_grad"] == report.rows[1]["tensors"]
    assert len(groups) == 3


def test_correct_freeze_with_discriminative_rates_and_weight_decay(model, batch):
    freeze_to(model, 1)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, lr=[1e-4, 1e-3, 1e-2], weight_decay=1e-2))
    one_step(model, opt, batch)
    opt.zero_grad(set_to_none=False)  # frozen parameters are not in the optimizer, so this is harmless
    report = freeze_audit(model, opt, batch, groups=layer_groups(model))
    assert report.ok and report.findings == []
    assert report.rows[0]["moved"] == 0 and report.rows[2]["moved"] == report.rows[2]["tensors"]


# ---------------------------------------------------------------- optimizer out of sync with the model
def test_optimizer_built_before_head_replaced(batch):
    model = course_backbone()
    freeze(model)
    opt = torch.optim.SGD(model.fc.parameters(), lr=0.1)
    model.fc = nn.Linear(model.fc.in_features, 5)  # new head, the optimizer still holds the old one
    report = freeze_audit(model, opt, batch)
    assert not report.ok
    assert any("optimizer holds 2 parameters that are not in the model" in t for t in report.traps)
    assert any("2 trainable parameters get gradients but are not in the optimizer" in t for t in report.traps)
    assert not any(r["moved"] for r in report.param_rows)


# ---------------------------------------------------------------- the user's objects are untouched
def test_audit_leaves_model_and_optimizer_untouched(batch):
    model = course_backbone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    one_step(model, opt, batch)
    opt.zero_grad(set_to_none=False)
    model.layer1.requires_grad_(False)
    model.fc.weight.grad = None
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    bufs = {id(p): s["momentum_buffer"].clone() for p, s in opt.state.items()}
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # wraps opt.step; must not leak into the copy
    report = freeze_audit(model, opt, batch)
    assert not report.ok  # the BN and weight-decay traps, found on the copies
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    for n, p in model.named_parameters():
        assert (grads[n] is None) == (p.grad is None) and (p.grad is None or torch.equal(p.grad, grads[n]))
    assert all(torch.equal(s["momentum_buffer"], bufs[id(p)]) for p, s in opt.state.items())
    assert opt.param_groups[0]["lr"] == 0.1 and sched.last_epoch == 0


def test_requires_grad_true_attribute_suggests_requires_grad_(batch):
    model = course_backbone()
    freeze(model)
    model.fc.requires_grad = True  # meant to unfreeze the head: does nothing
    report = freeze_audit(model, torch.optim.SGD(model.parameters(), lr=0.1), batch)
    assert any("module.requires_grad = True was set on 1 module (fc)" in t and "module.requires_grad_(True)" in t
               for t in report.traps)
    assert any("no parameter is trainable" in t for t in report.traps)
    assert not any(r["got_grad"] or r["moved"] for r in report.param_rows)


def test_twin_copy_maps_param_groups_and_state_onto_the_copy(batch):
    model = course_backbone()
    opt = torch.optim.SGD([{"params": model.fc.parameters(), "lr": 0.1},
                           {"params": model.layer4.parameters(), "lr": 0.01, "weight_decay": 1e-3}], momentum=0.9)
    one_step(model, opt, batch)
    freeze_bn_stats(model)
    m2, opt2 = twin_copy(model, opt)
    assert type(opt2) is type(opt) and len(opt2.param_groups) == 2
    copy_ids = {id(p) for p in m2.parameters()}
    orig_ids = {id(p) for p in model.parameters()}
    for g, g2 in zip(opt.param_groups, opt2.param_groups):
        assert {k: v for k, v in g.items() if k != "params"} == {k: v for k, v in g2.items() if k != "params"}
        assert all(id(p) in copy_ids and id(p) not in orig_ids for p in g2["params"])
        for p, p2 in zip(g["params"], g2["params"]):
            assert torch.equal(p, p2) and torch.equal(p.grad, p2.grad) and p.grad is not p2.grad
            b, b2 = opt.state[p]["momentum_buffer"], opt2.state[p2]["momentum_buffer"]
            assert torch.equal(b, b2) and b.data_ptr() != b2.data_ptr()
    m2.train()
    assert not m2.bn1.training  # freeze_bn_stats survives the copy


# ---------------------------------------------------------------- display and errors
def test_report_display(batch):
    model = course_backbone()
    freeze_to(model, -1)
    opt = torch.optim.SGD(trainable(model), lr=0.1)
    report = freeze_audit(model, opt, batch)
    text = str(report)
    assert "module" in text and "BN stats moved" in text and "layer3" in text and "relu" not in text
    html = report._repr_html_()
    assert html.count('<tr style="color:#999">') == 6  # conv1, bn1, layer1..4 are frozen; fc is not
    assert "<table>" in html and "no freezing trap found" in html


def test_bad_arguments(batch):
    model = course_backbone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer must be"):
        freeze_audit(model, model.parameters(), batch)
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pair"):
        freeze_audit(model, opt, batch[0])
    with pytest.raises(ValueError, match="no parameters"):
        freeze_audit(nn.ReLU(), opt, batch)
    with pytest.raises(ValueError, match="not in this ResNet"):
        freeze_audit(model, opt, batch, groups=[[nn.Linear(2, 2)]])
