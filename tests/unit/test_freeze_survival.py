"""The BN pin of freeze_bn_stats / freeze / freeze_to survives what practitioners do to a model.

Each test builds the course model as a practitioner would (pretrained body, new 5-class head,
`freeze_to(model, -1)`: every BN layer of the body pinned in eval mode), does one thing to it
(train()/eval(), deepcopy, whole-model torch.save/load, state_dict, dtype casts, torch.compile,
DistributedDataParallel, SyncBatchNorm, jit.script, torch.fx) and checks that a training-mode forward
still leaves every BN's running statistics bit-identical, and that unfreezing gives plain BN back.
"""
import copy
import os
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

import ftcourse
from ftcourse.bn import bn_modules, bn_stats_frozen, convert_sync_batchnorm


class CustomBN(nn.BatchNorm2d):
    """A user's own BN subclass, with its own train(): the pin must keep both."""

    def train(self, mode: bool = True):
        self.train_calls = getattr(self, "train_calls", 0) + 1
        return super().train(mode)


def course_model(n: int = -1) -> nn.Module:
    """The course model with a seeded new head, frozen with freeze_to(model, n)."""
    model = ftcourse.load_pretrained()
    ftcourse.replace_head(model, 5, seed=0)
    ftcourse.freeze_to(model, n)
    return model


@pytest.fixture
def frozen():
    return course_model(-1)


@pytest.fixture
def xy():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 5, (8,), generator=g)


def bn_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every BN buffer (running_mean, running_var, num_batches_tracked) by name."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}


def pins(model: nn.Module) -> dict[str, bool]:
    return {name: bn_stats_frozen(m) for name, m in bn_modules(model)}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_still_frozen(model: nn.Module, x: torch.Tensor) -> None:
    """Every BN pinned and in eval mode after model.train(); a train-mode forward changes no statistic."""
    before = bn_stats(model)
    model.train()
    assert pins(model) and all(pins(model).values())
    assert not any(m.training for _, m in bn_modules(model))
    with torch.no_grad():
        model(x.to(next(model.parameters()).dtype))
    assert same(bn_stats(model), before)


def train_steps(step_model: nn.Module, params, x, y, steps: int = 2) -> None:
    """A few SGD steps in train mode: forward, cross-entropy, backward, step."""
    opt = torch.optim.SGD(params, lr=0.1)
    step_model.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(step_model(x), y).backward()
        opt.step()


# ---------------------------------------------------------------- the pin itself
def test_pin_keeps_class_and_keys_and_shows_in_repr(frozen):
    plain = ftcourse.load_pretrained(5)
    assert {type(m) for _, m in bn_modules(frozen)} == {nn.BatchNorm2d}
    assert frozen.state_dict().keys() == plain.state_dict().keys()
    assert repr(frozen).count("track_running_stats=True, stats=frozen)") == 12 and "stats=frozen" not in repr(plain)


def test_train_and_eval_keep_the_pin(frozen, xy):
    assert_still_frozen(frozen, xy[0])
    assert frozen.fc.training  # the rest of the model follows train() as usual
    frozen.eval()
    assert not frozen.fc.training and all(pins(frozen).values())
    assert_still_frozen(frozen, xy[0])


def test_trainable_summary_counts_pinned_layers():
    model = course_model(1)  # group 0 (stem, layer1, layer2) frozen; layer3, layer4 and the head train
    rows = {r["group"]: r for r in ftcourse.trainable_summary(model.train(), ftcourse.layer_groups(model)).rows}
    assert (rows["0"]["bn_pinned_eval"], rows["0"]["bn_train_mode"]) == (6, 0)
    assert (rows["1"]["bn_pinned_eval"], rows["1"]["bn_train_mode"]) == (0, 6)
    assert rows["total"]["bn_pinned_eval"] == 6


# ---------------------------------------------------------------- copies and files
def test_deepcopy_keeps_the_pin(frozen, xy):
    clone = copy.deepcopy(frozen)
    assert pins(clone) == pins(frozen) and "stats=frozen" in repr(clone.bn1)
    assert_still_frozen(clone, xy[0])
    ftcourse.unfreeze_bn_stats(clone)  # the copy's pin is the copy's own: undoing it leaves the original pinned
    assert clone.train().bn1.training and all(pins(frozen).values()) and not frozen.train().bn1.training


def test_whole_model_save_and_load_keeps_the_pin(frozen, xy, tmp_path):
    torch.save(frozen, tmp_path / "model.pt")  # with a bound method as the pin, torch.load failed
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert pins(loaded) == pins(frozen) and all(pins(loaded).values())
    assert same(bn_stats(loaded), bn_stats(frozen))
    assert_still_frozen(loaded, xy[0])
    with torch.no_grad():
        assert torch.equal(loaded.eval()(xy[0]), frozen.eval()(xy[0]))


def test_whole_model_loads_in_a_fresh_python(frozen, tmp_path):
    torch.save(frozen, tmp_path / "model.pt")
    code = ("import sys, torch; m = torch.load(sys.argv[1], weights_only=False).train(); "
            "from ftcourse.bn import bn_modules, bn_stats_frozen; "
            "print(sum(bn_stats_frozen(b) and not b.training for _, b in bn_modules(m)))")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.pt")], capture_output=True,
                         text=True, env=env, check=True, timeout=300).stdout
    assert out.strip() == "12"


def test_other_bn_classes_are_pinned_and_pickle_too():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), CustomBN(4), nn.BatchNorm1d(2), nn.BatchNorm3d(2))
    assert ftcourse.freeze_bn_stats(model) == 3
    loaded = pickle.loads(pickle.dumps(model))
    assert [type(m) for m in loaded] == [type(m) for m in model] and all(pins(loaded).values())
    calls = loaded[1].train_calls
    loaded.train()
    assert not any(m.training for m in loaded[1:])
    assert loaded[1].train_calls == calls + 1  # the subclass's own train() still runs, with mode=False
    ftcourse.unfreeze_bn_stats(loaded)
    assert all(m.training for m in loaded.train()) and "stats=frozen" not in repr(loaded)


def test_state_dict_then_same_freeze_gives_the_same_model(frozen, xy):
    with torch.no_grad():
        frozen.fc.weight.add_(1.0)  # something trained, so a fresh head would differ
    fresh = ftcourse.load_pretrained(5)
    fresh.load_state_dict(frozen.state_dict())
    ftcourse.freeze_to(fresh, -1)
    assert pins(fresh) == pins(frozen)
    assert [p.requires_grad for p in fresh.parameters()] == [p.requires_grad for p in frozen.parameters()]
    with torch.no_grad():
        assert torch.equal(fresh.train()(xy[0]), frozen.train()(xy[0]))
        assert torch.equal(fresh.eval()(xy[0]), frozen.eval()(xy[0]))


def _cpu_runs_half_convs() -> bool:
    """float16 convolutions on the CPU arrived in torch 2.2; older releases raise 'not implemented for Half'."""
    try:
        nn.functional.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.float16), torch.ones(1, 1, 1, 1, dtype=torch.float16))
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize("cast", ["cpu", "half", "bfloat16"])
def test_device_and_dtype_casts_keep_the_pin(frozen, xy, cast):
    moved = frozen.to("cpu") if cast == "cpu" else getattr(frozen, cast)()
    assert moved.bn1.weight.dtype == {"cpu": torch.float32, "half": torch.float16, "bfloat16": torch.bfloat16}[cast]
    if cast == "half" and not _cpu_runs_half_convs():  # the pin, checked without a float16 forward pass
        moved.train()
        assert all(pins(moved).values()) and not any(m.training for _, m in bn_modules(moved))
        return
    assert_still_frozen(moved, xy[0])


# ---------------------------------------------------------------- compilers and wrappers
def test_compiled_training_step_leaves_frozen_stats_unchanged(frozen, xy):
    torch._dynamo.reset()
    before = bn_stats(frozen)
    compiled = torch.compile(frozen)  # inductor, the default backend (it needs the C compiler found here)
    train_steps(compiled, [p for p in frozen.parameters() if p.requires_grad], *xy)
    assert same(bn_stats(frozen), before)
    assert not torch.equal(frozen.fc.weight, course_model().fc.weight)  # the head did train
    torch._dynamo.reset()


def test_compiled_model_follows_unfreeze(frozen, xy):
    # aot_eager: this checks dynamo's guards (unpinned layers run in train mode, so the graph must be
    # rebuilt), not code generation; it saves inductor's second cold compile (~25 s on 2 cores)
    torch._dynamo.reset()
    before = bn_stats(frozen)
    compiled = torch.compile(frozen, backend="aot_eager")
    train_steps(compiled, [p for p in frozen.parameters() if p.requires_grad], *xy, steps=1)
    assert same(bn_stats(frozen), before)
    ftcourse.freeze_to(frozen, 0)
    train_steps(compiled, frozen.parameters(), *xy, steps=1)
    after = bn_stats(frozen)
    assert all(not torch.equal(after[k], before[k]) for k in before)
    torch._dynamo.reset()


def test_ddp_training_steps_leave_frozen_stats_unchanged(frozen, xy, tmp_path):
    dist = torch.distributed
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed with the gloo backend")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        before = bn_stats(frozen)
        ddp = nn.parallel.DistributedDataParallel(frozen)
        train_steps(ddp, [p for p in ddp.parameters() if p.requires_grad], *xy)
        assert same(bn_stats(frozen), before)
        assert all(pins(ddp.module).values()) and not ddp.module.bn1.training and ddp.training
    finally:
        dist.destroy_process_group()


def test_convert_sync_batchnorm_keeps_pins_where_they_were(xy):
    model = course_model(1)  # group 0 pinned, groups 1 and 2 not
    was = pins(model)
    assert not any(pins(nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))).values())  # torch's drops them
    synced = convert_sync_batchnorm(model)
    assert pins(synced) == was and any(was.values()) and not all(was.values())
    assert {type(m) for _, m in bn_modules(synced)} == {nn.SyncBatchNorm}
    assert not synced.train().bn1.training and synced.layer4[0].bn1.training


def test_convert_sync_batchnorm_of_a_frozen_model_trains_on_cpu(frozen, xy):
    # every BN pinned: SyncBatchNorm in eval mode needs no process group and no GPU
    synced = convert_sync_batchnorm(frozen)
    before = bn_stats(synced)
    train_steps(synced, [p for p in synced.parameters() if p.requires_grad], *xy)
    assert same(bn_stats(synced), before) and isinstance(synced.bn1, nn.SyncBatchNorm)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_jit_script_still_works(frozen, xy):
    scripted = torch.jit.script(frozen)
    with torch.no_grad():
        assert torch.equal(scripted.eval()(xy[0]), frozen.eval()(xy[0]))
    # TorchScript does not compile Python train() overrides: a scripted model's train() puts its BN
    # layers in train mode, pinned or not (as before this mechanism). Script for inference, in eval().


# ---------------------------------------------------------------- undoing it, and what it leaves alone
@pytest.mark.parametrize("how", ["unfreeze", "freeze_to_0"])
def test_unfreeze_gives_plain_bn_back(frozen, xy, how):
    if how == "unfreeze":
        ftcourse.unfreeze(frozen)
    else:
        ftcourse.freeze_to(frozen, 0)
    assert {type(m) for _, m in bn_modules(frozen)} == {nn.BatchNorm2d} and not any(pins(frozen).values())
    assert "FrozenStats" not in repr(frozen)
    before = bn_stats(frozen)
    frozen.train()
    assert all(m.training for _, m in bn_modules(frozen))
    with torch.no_grad():
        frozen(xy[0])
    after = bn_stats(frozen)
    assert all(not torch.equal(after[k], before[k]) for k in before)


def test_torchvision_frozen_batchnorm_is_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), FrozenBatchNorm2d(4), nn.BatchNorm2d(4))
    assert ftcourse.freeze_bn_stats(model) == 1
    assert "train" not in model[1].__dict__ and bn_stats_frozen(model[2]) and not bn_stats_frozen(model[1])
    assert ftcourse.unfreeze_bn_stats(model) == 1 and "stats=frozen" not in repr(model)


def test_type_based_tools_still_see_plain_batchnorm(frozen, xy):
    """The pin leaves the class alone, so torch.fx tracing and torch's fusers treat the layers as BN."""
    from torchvision.models.feature_extraction import create_feature_extractor

    frozen.eval()
    with torch.no_grad():
        assert torch.equal(torch.fx.symbolic_trace(frozen)(xy[0]), frozen(xy[0]))
        assert torch.equal(create_feature_extractor(frozen, ["fc"])(xy[0])["fc"], frozen(xy[0]))
        fused = torch.ao.quantization.fuse_modules(copy.deepcopy(frozen), [["conv1", "bn1"]])
        assert isinstance(fused.bn1, nn.Identity) and torch.allclose(fused(xy[0]), frozen(xy[0]), atol=1e-5)
