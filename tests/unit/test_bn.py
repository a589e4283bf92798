"""ftcourse.bn: the four BN states, and that every conversion between them is numerically exact."""
import copy
import functools

import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.ops import FrozenBatchNorm2d

from ftcourse.bn import (
    BN_STATES, BNAffine, adabn, affine_to_bn, bn_modules, bn_report, bn_scale_shift, bn_state,
    bn_stats_frozen, bn_to_affine, fold_bn, fold_conv_bn, freeze_bn_stats,
)
from ftcourse.models import course_backbone



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These are small tensors: one thread is faster than two (and far faster on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN layer random gamma/beta/mean/var (var > 0), so a wrong formula cannot hide; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in bn_modules(model):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


@functools.lru_cache(maxsize=None)
def _built(name: str) -> nn.Module:
    model = course_backbone() if name == "course_backbone" else getattr(torchvision.models, name)(weights=None)
    return randomize_bn(model, seed=len(name))


@pytest.fixture
def model_named():
    """A fresh copy of a model with randomized BN statistics (each built once per test module)."""
    return lambda name: copy.deepcopy(_built(name)).eval()


def x_images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_close_rel(out: torch.Tensor, ref: torch.Tensor, rel: float = 1e-4, abs_: float = 1e-5) -> None:
    """max |out - ref| <= rel * max |ref| + abs_: relative to the output's scale, robust for deep models."""
    err = (out - ref).abs().max().item()
    assert err <= rel * ref.abs().max().item() + abs_, f"max error {err:.3g} for outputs up to {ref.abs().max():.3g}"


def random_bn(cls=nn.BatchNorm2d, n: int = 6, eps: float = 1e-5, seed: int = 0) -> nn.Module:
    return randomize_bn(cls(n, eps=eps), seed)


# --- BN at inference is an affine map ---------------------------------------------------------

@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (4, 6)), (nn.BatchNorm1d, (4, 6, 5)),
                                        (nn.BatchNorm2d, (4, 6, 5, 5)), (nn.BatchNorm3d, (2, 6, 3, 4, 4))])
@pytest.mark.parametrize("trainable", [True, False])
def test_bn_affine_matches_bn_in_eval_mode(cls, shape, trainable):
    bn = random_bn(cls, eps=1e-3)
    x = torch.randn(*shape)
    layer = BNAffine.from_bn(bn, trainable=trainable)
    torch.testing.assert_close(layer(x), bn(x), rtol=1e-6, atol=1e-6)
    # the formula itself: scale = gamma / sqrt(var + eps), shift = beta - mean * scale
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(layer.scale, scale.detach())
    torch.testing.assert_close(layer.shift, (bn.bias - bn.running_mean * scale).detach())


def test_bn_affine_from_raw_tensors_and_trainable_flag():
    bn = random_bn()
    args = (bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
    trainable, frozen = BNAffine(*args, trainable=True), BNAffine(*args, trainable=False)
    assert {n for n, _ in trainable.named_parameters()} == {"scale", "shift"}
    assert list(frozen.parameters()) == [] and {"scale", "shift"} <= {n for n, _ in frozen.named_buffers()}
    x = torch.randn(2, 6, 4, 4)
    trainable(x).sum().backward()
    assert trainable.scale.grad is not None and trainable.shift.grad.shape == (6,)
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-6, atol=1e-6)
    assert "trainable=False" in repr(frozen)


def test_frozen_affine_matches_torchvision_frozen_batchnorm():
    bn = random_bn(eps=1e-3)
    ref = FrozenBatchNorm2d(6, eps=bn.eps)
    ref.load_state_dict({k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"})
    x = torch.randn(3, 6, 5, 5)
    torch.testing.assert_close(BNAffine.from_bn(bn, trainable=False)(x), ref(x), rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(bn_scale_shift(bn), bn_scale_shift(ref)):
        torch.testing.assert_close(ours, theirs)


def test_bn_without_running_stats_is_refused():
    bn = nn.BatchNorm2d(4, track_running_stats=False)
    with pytest.raises(ValueError, match="track_running_stats=False"):
        BNAffine.from_bn(bn)
    with pytest.raises(TypeError, match="Linear"):
        BNAffine.from_bn(nn.Linear(2, 2))


# --- bn_to_affine / affine_to_bn on whole models -------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "course_backbone"])
@pytest.mark.parametrize("trainable", [True, False])
def test_bn_to_affine_matches_eval_and_round_trip_is_lossless(model_named, name, trainable):
    model = model_named(name)
    n_bn = len(bn_modules(model))
    original = copy.deepcopy(model.state_dict())
    x = x_images(size=64 if name == "resnet18" else 32)
    with torch.no_grad():
        ref = model(x)
        converted = bn_to_affine(model, trainable=trainable)
        assert converted is model and bn_modules(model) == []
        state = "trainable-affine" if trainable else "frozen-affine"
        assert bn_report(model)[state] == n_bn
        torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)
        model.train()  # an affine layer has no batch statistics: train mode changes nothing
        torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)
        back = affine_to_bn(model)
    assert back is model and len(bn_modules(model)) == n_bn
    restored = model.state_dict()
    assert restored.keys() == original.keys()
    for k, v in original.items():
        assert torch.equal(restored[k], v), k
    assert all(bn_stats_frozen(m) for _, m in bn_modules(model))
    assert bn_report(model)["frozen-stats" if trainable else "frozen-affine"] == n_bn


def test_trained_affine_converts_back_to_bn_with_zero_mean_unit_var():
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6, eps=1e-3), nn.ReLU()), seed=3)
    bn_to_affine(model, trainable=True)
    opt = torch.optim.SGD(model[1].parameters(), lr=0.1)
    model(torch.randn(2, 3, 8, 8)).pow(2).mean().backward()
    opt.step()
    assert model[1].changed()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = model(x)
        affine_to_bn(model)
        bn = model[1]
        assert torch.equal(bn.running_mean, torch.zeros(6)) and torch.equal(bn.running_var, torch.ones(6))
        assert bn.eps == 1e-3 and bn.weight.requires_grad
        torch.testing.assert_close(model.train()(x), ref, rtol=1e-6, atol=1e-6)  # pinned: train() keeps the map


def test_affine_to_bn_can_leave_layers_unpinned():
    model = bn_to_affine(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    affine_to_bn(model, freeze_stats=False)
    assert not bn_stats_frozen(model[1]) and bn_state(model.train()[1]) == "batch-stats"


def test_bn_to_affine_on_a_model_without_bn_changes_nothing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.ReLU())
    before = copy.deepcopy(model.state_dict())
    assert bn_to_affine(model) is model
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert sum(bn_report(model).values()) == 0
    bn = random_bn()
    assert isinstance(bn_to_affine(bn), BNAffine)  # a bare BN layer comes back converted


# --- folding BN into the conv ----------------------------------------------------------------

@pytest.mark.parametrize("bias, groups", [(False, 1), (True, 1), (True, 2), (False, 6)])
def test_fold_conv_bn_agrees_with_torch_fuse_conv_bn_eval(bias, groups):
    conv = nn.Conv2d(6, 12, 3, padding=1, groups=groups, bias=bias)
    bn = random_bn(n=12, eps=1e-3).eval()
    ours, torchs = fold_conv_bn(conv, bn), fuse_conv_bn_eval(conv.eval(), bn)
    torch.testing.assert_close(ours.weight, torchs.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours.bias, torchs.bias, rtol=1e-6, atol=1e-7)
    x = torch.randn(2, 6, 9, 9)
    torch.testing.assert_close(ours(x), bn(conv(x)), rtol=1e-5, atol=1e-5)
    assert ours is not conv and ours.weight is not conv.weight and (conv.bias is None) == (not bias)  # input kept


def test_fold_conv_bn_checks_its_inputs():
    with pytest.raises(ValueError, match="4 channels"):
        fold_conv_bn(nn.Conv2d(3, 6, 1), random_bn(n=4))
    with pytest.raises(TypeError, match="Conv"):
        fold_conv_bn(nn.Linear(3, 6), random_bn())


@pytest.mark.parametrize("name, size", [
    ("resnet18", 64), ("resnet50", 32), ("vgg11_bn", 32), ("mobilenet_v2", 32), ("mobilenet_v3_small", 32),
    ("efficientnet_b0", 32), ("regnet_y_400mf", 32), ("densenet121", 32), ("course_backbone", 32),
])
def test_fold_bn_matches_eval_and_removes_every_bn(name, size):
    model = _built(name).train()  # fold_bn must not depend on (or change) the caller's mode
    before = copy.deepcopy(model.state_dict())
    n_bn = len(bn_modules(model))
    x = x_images(size=size)
    folded, report = fold_bn(model, return_report=True)
    with torch.no_grad():
        assert_close_rel(folded(x), model.eval()(x), rel=1e-4, abs_=1e-5)
    assert model.state_dict().keys() == before.keys() and len(bn_modules(model)) == n_bn  # input untouched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not folded.training and bn_modules(folded) == []
    assert len(report["folded"]) + len(report["frozen_affine"]) == n_bn
    assert sum(isinstance(m, BNAffine) for m in folded.modules()) == len(report["frozen_affine"])
    assert bn_report(folded)["frozen-affine"] == len(report["frozen_affine"])
    if name == "densenet121":  # pre-activation BN: only the stem's norm0 follows a conv
        assert report["folded"] == ["features.norm0"] and len(report["frozen_affine"]) == n_bn - 1
    else:
        assert report["frozen_affine"] == []


def test_fold_bn_resnet_names_and_plain_return():
    folded = fold_bn(_built("course_backbone"))
    assert isinstance(folded, nn.Module)
    assert isinstance(folded.bn1, nn.Identity) and folded.conv1.bias is not None
    assert isinstance(folded.layer2[0].downsample[1], nn.Identity)


def test_fold_bn_leaves_a_custom_forward_alone():
    class Reversed(nn.Sequential):  # runs its layers backwards: BN before conv, nothing to fold
        def forward(self, x):
            for layer in reversed(self):
                x = layer(x)
            return x
    model = randomize_bn(Reversed(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)))
    folded, report = fold_bn(model, return_report=True)
    assert report == {"folded": [], "frozen_affine": ["1"]}
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_fold_bn_also_folds_bn_affine_layers():
    model = bn_to_affine(copy.deepcopy(_built("course_backbone")))
    folded, report = fold_bn(model, return_report=True)
    assert len(report["folded"]) == len(bn_modules(_built("course_backbone")))
    assert not any(isinstance(m, BNAffine) for m in folded.modules())
    x = x_images()
    with torch.no_grad():
        assert_close_rel(folded(x), model(x))


# --- AdaBN -----------------------------------------------------------------------------------

def _batches(mean, std, n_batches=4, n=8, size=8, seed=0, labels=False):
    g = torch.Generator().manual_seed(seed)
    mean, std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    xs = [mean + std * torch.randn(n, 3, size, size, generator=g) for _ in range(n_batches)]
    return [(x, torch.zeros(n, dtype=torch.long)) for x in xs] if labels else xs


def test_adabn_recovers_known_channel_statistics():
    mean, std = [1.0, -2.0, 0.5], [0.5, 2.0, 1.0]
    model = nn.Sequential(nn.BatchNorm2d(3))
    batches = _batches(mean, std)
    adabn(model, batches)
    bn = model[0]
    data = torch.cat(batches)
    torch.testing.assert_close(bn.running_mean, data.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_mean, torch.tensor(mean), rtol=0, atol=0.1)
    torch.testing.assert_close(bn.running_var.sqrt(), torch.tensor(std), rtol=0.05, atol=0)


def test_adabn_matches_direct_statistics_and_touches_only_statistics():
    model = randomize_bn(course_backbone(), seed=1).train()
    freeze_bn_stats(model.layer2)
    model.layer3[0].bn1.momentum = 0.3
    params = {k: v.clone() for k, v in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    batches = _batches([0.2, -0.1, 0.4], [1.5, 0.7, 1.0], labels=True)
    adabn(model, batches)
    with torch.no_grad():
        feats = [model.conv1(x) for x, _ in batches]
    expected_mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    expected_var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(model.bn1.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.bn1.running_var, expected_var, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(v, params[k]) for k, v in model.named_parameters())
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(bn_stats_frozen(m) for _, m in bn_modules(model.layer2))
    assert not bn_stats_frozen(model.layer1[0].bn1)
    assert model.layer3[0].bn1.momentum == 0.3 and model.bn1.momentum == 0.1
    assert model.layer2[0].bn1.num_batches_tracked.item() == len(batches)  # pinned layers were updated too


def test_adabn_tensors_or_tuples_and_max_batches():
    batches = _batches([0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    model = randomize_bn(course_backbone()).eval()
    a, b = adabn(copy.deepcopy(model), batches), adabn(copy.deepcopy(model), [(x, 0) for x in batches])
    assert not a.training
    for (_, m1), (_, m2) in zip(bn_modules(a), bn_modules(b)):
        assert torch.equal(m1.running_mean, m2.running_mean) and torch.equal(m1.running_var, m2.running_var)
    first = adabn(nn.Sequential(nn.BatchNorm2d(3)), batches, max_batches=1)
    torch.testing.assert_close(first[0].running_mean, batches[0].mean((0, 2, 3)))


def test_adabn_clear_errors():
    model = randomize_bn(nn.Sequential(nn.BatchNorm2d(3)))
    before = model[0].running_mean.clone()
    with pytest.raises(ValueError, match="no batches"):
        adabn(model, [])
    assert torch.equal(model[0].running_mean, before)  # nothing reset
    with pytest.raises(ValueError, match="max_batches"):
        adabn(model, _batches([0.0] * 3, [1.0] * 3), max_batches=0)
    with pytest.raises(ValueError, match="no BN layers"):
        adabn(nn.Sequential(nn.Conv2d(3, 3, 1)), _batches([0.0] * 3, [1.0] * 3))
    with pytest.raises(TypeError, match="tensors or"):
        adabn(model, [{"x": torch.zeros(2, 3, 4, 4)}])
    assert model[0].momentum == 0.1 and model[0].training is False  # restored after the error


# --- states ----------------------------------------------------------------------------------

def test_bn_state_names_each_of_the_states():
    bn = nn.BatchNorm2d(4)
    assert bn_state(bn) == "batch-stats"
    assert bn_state(bn.eval()) == "eval"
    freeze_bn_stats(bn)
    assert bn_state(bn.train()) == "frozen-stats"
    bn.requires_grad_(False)
    assert bn_state(bn) == "frozen-affine"
    assert bn_state(nn.BatchNorm2d(4, track_running_stats=False).eval()) == "batch-stats"
    assert bn_state(BNAffine.from_bn(nn.BatchNorm2d(4))) == "trainable-affine"
    assert bn_state(BNAffine.from_bn(nn.BatchNorm2d(4), trainable=False)) == "frozen-affine"
    assert bn_state(FrozenBatchNorm2d(4)) == "frozen-affine"
    with pytest.raises(TypeError, match="not a BN layer"):
        bn_state(nn.Linear(2, 2))


def test_bn_report_counts_every_state():
    model = course_backbone()
    n = len(bn_modules(model))
    assert bn_report(model) == {**dict.fromkeys(BN_STATES, 0), "batch-stats": n}
    freeze_bn_stats(model.layer1)
    report = bn_report(model.train())
    assert report["frozen-stats"] == len(bn_modules(model.layer1)) and sum(report.values()) == n
    model.layer4 = bn_to_affine(model.layer4, trainable=False)
    assert bn_report(model)["frozen-affine"] == len(bn_modules(course_backbone().layer4))


# --- property tests: exact over random conv/BN shapes ----------------------------------------

@st.composite
def conv_bn_cases(draw):
    groups = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    in_ch = groups * draw(st.integers(1, 3))
    if depthwise:
        groups = in_ch
    out_ch = groups * draw(st.integers(1, 3))
    k, dilation = draw(st.integers(1, 4)), draw(st.integers(1, 2))
    conv = dict(in_channels=in_ch, out_channels=out_ch, kernel_size=k, stride=draw(st.integers(1, 3)),
                padding=draw(st.integers(0, 2)), dilation=dilation, groups=groups, bias=draw(st.booleans()))
    eps = draw(st.sampled_from([1e-5, 1e-3, 1e-1]))
    size = dilation * (k - 1) + 1 + draw(st.integers(0, 5))
    return conv, eps, size, draw(st.integers(0, 2**31 - 1))


def _conv_bn(conv_kwargs, eps, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv, n = nn.Conv2d(**conv_kwargs), conv_kwargs["out_channels"]
    bn = nn.BatchNorm2d(n, eps=eps)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(n, generator=g) * 2)
        bn.bias.copy_(torch.randn(n, generator=g))
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) * 5 + 1e-3)
    return nn.Sequential(conv, bn).eval()


@settings(max_examples=30, deadline=None)
@given(conv_bn_cases())
def test_property_folding_is_exact(case):
    conv_kwargs, eps, size, seed = case
    model = _conv_bn(conv_kwargs, eps, seed)
    x = torch.randn(2, conv_kwargs["in_channels"], size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x)
        assert_close_rel(fold_conv_bn(model[0], model[1])(x), ref, rel=1e-4, abs_=1e-6)
        assert_close_rel(fuse_conv_bn_eval(model[0], model[1])(x), ref, rel=1e-4, abs_=1e-6)
        folded = fold_bn(model)
        assert isinstance(folded[1], nn.Identity)
        assert_close_rel(folded(x), ref, rel=1e-4, abs_=1e-6)


@settings(max_examples=30, deadline=None)
@given(conv_bn_cases(), st.booleans())
def test_property_affine_conversion_is_exact(case, trainable):
    conv_kwargs, eps, size, seed = case
    model = _conv_bn(conv_kwargs, eps, seed)
    original = copy.deepcopy(model.state_dict())
    x = torch.randn(2, conv_kwargs["in_channels"], size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x)
        assert_close_rel(bn_to_affine(model, trainable=trainable)(x), ref, rel=1e-4, abs_=1e-6)
        affine_to_bn(model)
        assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
        assert_close_rel(model(x), ref, rel=1e-4, abs_=1e-6)
