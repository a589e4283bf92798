"""ftcourse.check: the exercise checkers accept right answers and reject wrong ones with a hint."""
import copy

import numpy as np
import pytest
import torch

import ftcourse
import ftcourse.check as check


def test_checkers_say_not_attempted_for_none(capsys):
    check.frozen_head_only(None)
    check.number(None, 1.0, "x")
    check.audit_clean(None, None, None)
    assert capsys.readouterr().out.count("Not attempted yet") == 3


def test_frozen_head_only_accepts_a_real_freeze_and_rejects_the_traps(model, capsys):
    ftcourse.freeze_to(model, -1)
    check.frozen_head_only(model)
    assert "Correct" in capsys.readouterr().out
    torch.manual_seed(0)
    unfrozen = ftcourse.course_backbone(num_classes=5)
    with pytest.raises(AssertionError, match="Your trainable modules"):
        check.frozen_head_only(unfrozen)
    for p in unfrozen.parameters():
        p.requires_grad_(False)
    unfrozen.fc.requires_grad_(True)
    with pytest.raises(AssertionError, match="not pinned in eval mode"):
        check.frozen_head_only(unfrozen)
    with pytest.raises(AssertionError, match="nn.Module"):
        check.frozen_head_only("my model")


def test_trains_only(model, capsys):
    ftcourse.freeze([model.conv1, model.bn1, model.layer1, model.layer2, model.layer3])
    check.trains_only(model, ["layer4", "fc"])
    assert "Correct: only layer4, fc train" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="expected \\['fc'\\]"):
        check.trains_only(model, ["fc"])
    with pytest.raises(AssertionError, match="not top-level modules"):
        check.trains_only(model, ["layer9"])
    pinned = ftcourse.load_pretrained()  # the review's trap: freeze all, then requires_grad_ on the block
    ftcourse.freeze(pinned)
    for m in (pinned.conv1, pinned.bn1, pinned.layer1):
        m.requires_grad_(True)
    with pytest.raises(AssertionError, match="part that trains are still pinned.*unfreeze"):
        check.trains_only(pinned, ["conv1", "bn1", "layer1"])
    ftcourse.unfreeze([pinned.conv1, pinned.bn1, pinned.layer1])
    check.trains_only(pinned, ["conv1", "bn1", "layer1"])


def test_audit_clean_accepts_the_fixed_tutorial_and_rejects_the_original(model, batch, capsys):
    for p in model.parameters():
        p.requires_grad = False
    model.fc = torch.nn.Linear(model.fc.in_features, 5)
    opt = torch.optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)
    with pytest.raises(AssertionError, match="BN running statistics changed"):
        check.audit_clean(model, opt, batch)
    ftcourse.freeze_bn_stats(model)
    check.audit_clean(model, opt, batch)
    assert "Correct" in capsys.readouterr().out
    torch.manual_seed(0)
    everything = ftcourse.course_backbone(num_classes=5)
    with pytest.raises(AssertionError, match="Nothing is frozen"):
        check.audit_clean(everything, torch.optim.SGD(everything.parameters(), lr=0.1), batch)


def test_number_param_count_and_normalised(model, capsys):
    check.number(0.1234, 0.1234, "ratio")
    with pytest.raises(AssertionError, match="Your ratio = 0.2 is too high"):
        check.number(0.2, 0.1234, "ratio")
    expected = sum(p.numel() for p in model.layer3.parameters())
    check.param_count(expected, [model.layer3], "parameters")
    with pytest.raises(AssertionError, match="expected"):
        check.param_count(expected + 1, model.layer3)
    raw = torch.rand(2, 3, 8, 8)
    mean, std = (0.2, 0.3, 0.4), (0.5, 0.6, 0.7)
    check.normalised(ftcourse.normalize(raw, mean, std), raw, mean, std)
    with pytest.raises(AssertionError, match="per-channel means"):
        check.normalised((raw - 0.2) / 0.5, raw, mean, std)
    out = capsys.readouterr().out
    assert out.count("Correct") == 3


def _resnet_groups_by_hand(m, rates):
    mods = [(m.conv1, m.bn1, m.layer1, m.layer2), (m.layer3, m.layer4), (m.fc,)]
    return [{"params": [p for mod in ms for p in mod.parameters()], "lr": lr} for ms, lr in zip(mods, rates)]


def test_param_groups_match_accepts_dicts_and_optimizers(model, capsys):
    check.param_groups_match(None, model, [1e-4, 1e-3, 1e-2])
    assert "Not attempted yet" in capsys.readouterr().out
    check.param_groups_match(_resnet_groups_by_hand(model, [1e-4, 1e-3, 1e-2]), model, [1e-4, 1e-3, 1e-2])
    opt = ftcourse.make_optimizer(ftcourse.param_groups(model, np.array([1e-4, 1e-3, 1e-2]), bn_weight_decay=0.0))
    check.param_groups_match(opt, model, [1e-4, 1e-3, 1e-2])  # one layer group split over two dicts is fine
    assert capsys.readouterr().out.count("Correct") == 2


def test_param_groups_match_rejects_the_mistakes(model):
    rates = [1e-4, 1e-3, 1e-2]
    with pytest.raises(AssertionError, match="should learn at 0.0001"):
        check.param_groups_match(_resnet_groups_by_hand(model, rates[::-1]), model, rates)
    missing = _resnet_groups_by_hand(model, rates)
    missing[0]["params"] = missing[0]["params"][3:]  # conv1 and bn1 forgotten
    with pytest.raises(AssertionError, match="in no group"):
        check.param_groups_match(missing, model, rates)
    twice = _resnet_groups_by_hand(model, rates) + [{"params": list(model.fc.parameters()), "lr": 1e-2}]
    with pytest.raises(AssertionError, match="held more than once"):
        check.param_groups_match(twice, model, rates)
    no_lr = _resnet_groups_by_hand(model, rates)
    del no_lr[1]["lr"]
    with pytest.raises(AssertionError, match="no 'lr'"):
        check.param_groups_match(no_lr, model, rates)
    with pytest.raises(AssertionError, match="expected a torch optimizer or a list"):
        check.param_groups_match({"params": [], "lr": 1.0}, model, rates)
    torch.manual_seed(1)
    other = ftcourse.course_backbone(num_classes=5)
    with pytest.raises(AssertionError, match="not parameters of this model"):
        check.param_groups_match(_resnet_groups_by_hand(other, rates), model, rates)


def test_param_groups_match_with_a_frozen_group(model, capsys):
    rates = [None, 1e-3, 1e-2]
    with pytest.raises(AssertionError, match="should be frozen"):
        check.param_groups_match(_resnet_groups_by_hand(model, [1e-4, 1e-3, 1e-2])[1:], model, rates)
    ftcourse.freeze_to(model, 1)
    with pytest.raises(AssertionError, match="frozen tensor.*leave them out"):
        check.param_groups_match(torch.optim.SGD(model.parameters(), lr=1e-3), model, rates)
    opt = ftcourse.make_optimizer(ftcourse.param_groups(model, np.array([1e-4, 1e-3, 1e-2])))
    check.param_groups_match(opt, model, rates)
    assert "Correct" in capsys.readouterr().out


def test_learning_rates_checker(capsys):
    expected = ftcourse.ulmfit_lrs(5, 0.01)
    check.learning_rates(None, expected)
    check.learning_rates([0.01 / 2.6 ** (4 - i) for i in range(5)], expected)
    check.learning_rates(np.array(expected), expected)
    out = capsys.readouterr().out
    assert "Not attempted yet" in out and out.count("Correct") == 2
    with pytest.raises(AssertionError, match="wrong order"):
        check.learning_rates(expected[::-1], expected)
    with pytest.raises(AssertionError, match="has 3 values, expected 5"):
        check.learning_rates(expected[:3], expected)
    with pytest.raises(AssertionError, match="expected a list"):
        check.learning_rates(0.01, expected)

# ---------------------------------------------------------------- BatchNorm checkers

@pytest.fixture(scope="module")
def pretrained():
    return ftcourse.load_pretrained()


def test_bn_affine(pretrained, capsys):
    b = pretrained.layer2[0].bn2
    check.bn_affine(None, None, b)
    assert "Not attempted" in capsys.readouterr().out
    with torch.no_grad():
        scale = b.weight / torch.sqrt(b.running_var + b.eps)
        shift = b.bias - b.running_mean * scale
    check.bn_affine(scale, shift, b)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Hint"):
        check.bn_affine(b.weight / torch.sqrt(b.running_var), shift + 0.1, b)
    with pytest.raises(AssertionError, match="shape"):
        check.bn_affine(scale[:3], shift, b)


def test_folded_conv(pretrained, capsys):
    c, b = pretrained.layer2[0].conv2, pretrained.layer2[0].bn2
    with torch.no_grad():
        s = b.weight / torch.sqrt(b.running_var + b.eps)
        weight, bias = c.weight * s.view(-1, 1, 1, 1), b.bias - b.running_mean * s
    check.folded_conv(weight, bias, c, b)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="off by"):
        check.folded_conv(c.weight, bias, c, b)


def test_adabn_adapted(pretrained, capsys):
    probe = ftcourse.load_pretrained()
    task = ftcourse.target_task(shots=5, seed=0, shift="colour")
    test = (task.x_test[:200], task.y_test[:200])
    with pytest.raises(AssertionError, match="copy"):
        check.adabn_adapted(probe, probe, test)
    untouched = copy.deepcopy(probe)
    with pytest.raises(AssertionError, match="pretrained statistics"):
        check.adabn_adapted(untouched, probe, test)
    changed = copy.deepcopy(probe)
    with torch.no_grad():
        changed.fc.weight.add_(1.0)
    with pytest.raises(AssertionError, match="weights changed"):
        check.adabn_adapted(changed, probe, test)


def test_feature_change_ratios_checks_against_the_models(model, capsys):
    pretrained = model
    torch.manual_seed(3)
    moved_a, moved_b = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        moved_a.layer4[0].conv1.weight.add_(0.5 * torch.randn_like(moved_a.layer4[0].conv1.weight))
        moved_b.layer4[0].conv1.weight.add_(0.1 * torch.randn_like(moved_b.layer4[0].conv1.weight))
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    models = {0.03: (moved_a, moved_b), 0.003: (moved_b, moved_a)}
    right = {r: ftcourse.representation_change(pretrained, ft, x)["1 - CKA"]
             / ftcourse.representation_change(pretrained, lp, x)["1 - CKA"] for r, (ft, lp) in models.items()}
    check.feature_change_ratios(right, models, pretrained, x)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="your models give"):
        check.feature_change_ratios({0.03: 1.0, 0.003: 1.0}, models, pretrained, x)
    with pytest.raises(AssertionError, match="same rates"):
        check.feature_change_ratios({0.03: 1.0}, models, pretrained, x)
    check.feature_change_ratios(None, models, pretrained, x)
    assert "Not attempted" in capsys.readouterr().out


def test_ddp_bytes_and_allreduce_ms(capsys):
    model = ftcourse.torchvision_backbone("resnet18")
    right = 4 * sum(p.numel() for m in (model.layer4, model.fc) for p in m.parameters())
    check.ddp_bytes(right, "resnet18", frozen_units=4)  # stem and layer1-3 frozen
    with pytest.raises(AssertionError, match="is too low .an exact answer is expected."):
        check.ddp_bytes(right // 4, "resnet18", frozen_units=4)  # parameters, not bytes
    check.allreduce_ms(1e3 * 2 * 7 / 8 * 1e9 / 10e9, 1e9, 8, 10e9, "ms")
    with pytest.raises(AssertionError):
        check.allreduce_ms(1e3 * 1e9 / 10e9, 1e9, 8, 10e9, "ms")  # forgot 2 (N - 1) / N
    check.ddp_bytes(None, "resnet18", 4)
    out = capsys.readouterr().out
    assert out.count("Correct") == 2 and "Not attempted yet" in out


def test_ddp_trap_checks_run_the_learners_function_and_reject_the_traps():
    from torch import nn
    import ftcourse
    from ftcourse import check

    def kept_old_wrapper(model, ddp):
        ftcourse.unfreeze(model.layer4)
        return ddp  # the trap: DDP registered only the head when it was built

    with pytest.raises(AssertionError, match="unfreeze first, then build a new DistributedDataParallel"):
        check.ddp_rewrap(kept_old_wrapper)

    def rewrapped(model, ddp):
        ftcourse.unfreeze(model.layer4)
        return nn.parallel.DistributedDataParallel(model)

    check.ddp_rewrap(rewrapped)  # passes; and the group it made is gone again
    import torch.distributed as dist
    assert not dist.is_initialized()
    with pytest.raises(AssertionError, match="frozen layers train again"):
        check.sync_bn_keeps_pins(nn.SyncBatchNorm.convert_sync_batchnorm)
    with pytest.raises(AssertionError, match="rebuild"):
        check.sync_bn_keeps_pins(ftcourse.bn.convert_sync_batchnorm)
    with pytest.raises(AssertionError, match="rebuild"):
        check.sync_bn_keeps_pins(lambda model: ftcourse.bn.convert_sync_batchnorm(model))


def test_cell_mean_differences_recomputes_the_per_seed_average_and_names_a_wrong_seed(capsys):
    per_seed = {0: {"a 1 val x": 0.5, "a 1 val y": 0.4, "b 1 val x": 0.7, "b 1 val y": 0.7},
                1: {"a 1 val x": 0.6, "a 1 val y": 0.6, "b 1 val x": 0.2, "b 1 val y": 0.1}}
    check.cell_mean_differences({0: 0.05, 1: 0.05}, per_seed, "x", "y", ["a 1", "b 1"])
    assert "Correct: 2 per-seed differences, mean +5.0 points" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"seed\(s\) \[0\] is off"):
        check.cell_mean_differences({0: 0.1, 1: 0.05}, per_seed, "x", "y", ["a 1", "b 1"])
    with pytest.raises(AssertionError, match="one difference for each seed"):
        check.cell_mean_differences({0: 0.05}, per_seed, "x", "y", ["a 1", "b 1"])
    with pytest.raises(AssertionError, match=r"give a dict \{seed: difference\}"):
        check.cell_mean_differences([0.05, 0.05], per_seed, "x", "y", ["a 1", "b 1"])


def test_validation_images_wants_the_smallest_whole_split_and_never_shows_it():
    check.validation_images(400, accuracy=0.5, standard_error=0.025)
    for wrong, said in ((399, "too few"), (800, "too many"), (399.5, "not a whole number")):
        with pytest.raises(AssertionError, match=said) as err:
            check.validation_images(wrong, accuracy=0.5, standard_error=0.025)
        assert "400" not in str(err.value)  # the direction, never the answer
