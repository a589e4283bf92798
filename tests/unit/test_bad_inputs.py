"""A catalogue of bad inputs to the public helpers: each fails early, with the right type and a message naming the fix.

One parametrised test (`test_bad_input_fails_early_and_names_the_fix`): every case is a call, the
exception type it must raise and a regex (`match=`) on the part of the message that says what to do.
Then the odd-but-valid inputs whose behaviour is a documented decision (zero rates for some groups,
fold_bn without BN / twice / in train mode, bn_to_affine twice, a recorder on a frozen model, an
audit of an optimizer built for another model). Small random models and tiny tensors only.
"""
import math
import pickle
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18

import ftcourse
from ftcourse.files import ChecksumError


# ---------------------------------------------------------------- small inputs
def small():
    """The course backbone with random weights (seed 0): a torchvision ResNet, 1.2 M parameters."""
    torch.manual_seed(0)
    return ftcourse.course_backbone()


def frozen():
    model = small()
    ftcourse.freeze(model)
    return model


def images(n=2):
    return torch.rand(n, 3, 8, 8)


def batch():
    return torch.randn(2, 3, 32, 32), torch.tensor([0, 1])


def loader(n=2):
    return ftcourse.make_loader(torch.randn(n, 3, 32, 32), torch.zeros(n, dtype=torch.long), batch_size=2)


def empty_loader():
    return loader(0)


def conv_bn_without_stats():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))


def groups_with_layer2_twice(m):
    return [[m.conv1, m.bn1, m.layer1, m.layer2], [m.layer2, m.layer3, m.layer4], [m.avgpool, m.fc]]


def audit_with_foreign_groups():
    m = small()
    return ftcourse.freeze_audit(m, torch.optim.SGD(m.parameters(), lr=0.1), batch(),
                                 groups=ftcourse.layer_groups(small()))


def adabn_on_empty_loader():
    return ftcourse.adabn(small(), [])


# ---------------------------------------------------------------- files: a copy of data/ to break
def data_copy(ctx):
    """data/'s shipped files copied to tmp_path, with FTCOURSE_DATA pointing there."""
    for name in ("MANIFEST.json", "backbone.pt", "mnist5k.npy.gz"):
        shutil.copy(ftcourse.files.data_dir() / name, ctx.tmp_path / name)
    ctx.monkeypatch.setenv("FTCOURSE_DATA", str(ctx.tmp_path))
    return ctx.tmp_path


def empty_data_dir(ctx):
    ctx.monkeypatch.setenv("FTCOURSE_DATA", str(ctx.tmp_path))
    ftcourse.load_pretrained()


def tampered_backbone(ctx):
    path = data_copy(ctx) / "backbone.pt"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    ftcourse.load_pretrained()


def truncated_digits(ctx):
    path = data_copy(ctx) / "mnist5k.npy.gz"
    path.write_bytes(path.read_bytes()[:1000])
    ftcourse.files.verified_path("mnist5k.npy.gz")  # what load_digits opens (its result is cached per process)


def broken_manifest(ctx):
    path = data_copy(ctx) / "MANIFEST.json"
    path.write_text(path.read_text()[:-20])
    ftcourse.load_pretrained()


# ---------------------------------------------------------------- image folders
def folder_with(ctx, classes):
    """tmp_path with one sub-folder per class; each holds the given files (a .png is a real image)."""
    from PIL import Image

    for cls, files in classes.items():
        (ctx.tmp_path / cls).mkdir()
        for name in files:
            if name.endswith(".png"):
                Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(ctx.tmp_path / cls / name)
            else:
                (ctx.tmp_path / cls / name).write_text("not an image")
    return ftcourse.image_folder(ctx.tmp_path, size=8)


# ---------------------------------------------------------------- checkpoints
def checkpoint(ctx, state, name="c.pt"):
    path = ctx.tmp_path / name
    return path, ftcourse.save_checkpoint(state, path)


def truncated_checkpoint(ctx):
    path, _ = checkpoint(ctx, small().state_dict())
    path.write_bytes(path.read_bytes()[:5000])
    ftcourse.load_checkpoint(path)


def tampered_checkpoint(ctx):
    path, digest = checkpoint(ctx, small().state_dict())
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    ftcourse.load_checkpoint(path, sha256=digest)


class _Payload:
    """Unpickling this would run code; weights_only=True must refuse it."""

    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def pickled_objects(ctx):
    torch.save({"w": torch.zeros(2), "evil": _Payload()}, ctx.tmp_path / "evil.pt")
    ftcourse.load_checkpoint(ctx.tmp_path / "evil.pt")


def plain_pickle(ctx):
    with open(ctx.tmp_path / "list.pt", "wb") as f:
        pickle.dump([1, 2], f)
    ftcourse.load_checkpoint(ctx.tmp_path / "list.pt")


def resnet18_into_course_backbone(ctx):
    path, _ = checkpoint(ctx, resnet18(num_classes=5).state_dict())
    ftcourse.load_checkpoint(path, model=small())


def seven_classes_into_five(ctx):
    path, _ = checkpoint(ctx, ftcourse.course_backbone(num_classes=7).state_dict())
    ftcourse.load_checkpoint(path, model=small())


# ---------------------------------------------------------------- devices
def cuda_without_cuda(ctx, env=False):
    ctx.monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if env:
        ctx.monkeypatch.setenv("FTCOURSE_DEVICE", "cuda")
        ftcourse.get_device()
    else:
        ftcourse.get_device("cuda")


def bad_device_in_env(ctx):
    ctx.monkeypatch.setenv("FTCOURSE_DEVICE", "gpu")
    ftcourse.get_device()


# ---------------------------------------------------------------- the catalogue
def case(id, call, exc, match, needs_ctx=False, marks=()):
    """One bad input: call() (call(ctx) with needs_ctx) must raise exc with a message matching `match`."""
    return pytest.param(call, exc, match, needs_ctx, id=id, marks=marks)


def ctx_case(id, call, exc, match, marks=()):
    return case(id, call, exc, match, needs_ctx=True, marks=marks)


NAN, INF = float("nan"), float("inf")
PG = ftcourse.param_groups

CASES = [
    # learning rates
    case("lr negative", lambda: PG(small(), -1e-3), ValueError, r"finite and >= 0.*no negative rate"),
    case("lr zero for every group", lambda: PG(small(), 0.0), ValueError, r"lr 0 trains nothing.*freeze_to"),
    case("lr list of zeros", lambda: PG(small(), [0.0, 0.0, 0.0]), ValueError, "freeze_to"),
    case("lr zero for the only trainable group", lambda: PG(ftcourse.freeze_to(small(), -1), [1e-3, 1e-3, 0.0]),
         ValueError, "freeze_to"),
    case("lr NaN", lambda: PG(small(), NAN), ValueError, "no NaN or inf"),
    case("lr list containing NaN", lambda: PG(small(), [1e-4, NAN, 1e-2]), ValueError, "no NaN or inf"),
    case("lr array containing inf", lambda: PG(small(), np.array([1e-4, 1e-3, INF])), ValueError, "no NaN or inf"),
    case("lr slice lo > hi", lambda: PG(small(), slice(1e-2, 1e-4)), ValueError,
         r"lo <= hi.*did you mean slice\(0.0001, 0.01\)"),
    case("lr slice lo = 0", lambda: PG(small(), slice(0, 1e-2)), ValueError, "needs lo > 0"),
    case("lr slice with a step", lambda: PG(small(), slice(1e-4, 1e-2, 2)), ValueError, r"use slice\(lo, hi\)"),
    case("lr slice of strings", lambda: PG(small(), slice("1e-4", "1e-2")), TypeError, r"two numbers"),
    case("lr count wrong for explicit groups", lambda: PG(ftcourse.layer_groups(small()), [1e-3, 1e-2]),
         ValueError, "give 3 rates, one float, or slice"),
    case("lr tensor of the wrong length", lambda: PG(ftcourse.layer_groups(small()), torch.tensor([1e-3, 1e-2])),
         ValueError, "lr has 2 values but there are 3 groups.*give 3 rates"),
    case("lr as a string", lambda: PG(small(), "1e-3"), TypeError, "lr must be a float, a list/array"),
    case("lr list of strings", lambda: PG(small(), ["fast", "slow"]), TypeError, "lr must be a float, a list/array"),
    case("layerwise_lrs with no groups", lambda: ftcourse.layerwise_lrs(0, 1e-2, 0.5), ValueError, "n_groups >= 1"),
    case("layerwise_lrs negative top rate", lambda: ftcourse.layerwise_lrs(3, -1e-2, 0.5), ValueError,
         r"top_lr must be a finite number > 0"),
    case("ulmfit_lrs factor 0", lambda: ftcourse.ulmfit_lrs(3, 1e-2, factor=0), ValueError, "factor must be > 0"),
    case("make_optimizer nothing trainable", lambda: ftcourse.make_optimizer(frozen()), ValueError,
         r"unfreeze something first.*freeze_to"),
    case("make_optimizer lr NaN", lambda: ftcourse.make_optimizer(small(), lr=NAN), ValueError,
         "lr must be a finite number >= 0"),
    case("make_optimizer empty list", lambda: ftcourse.make_optimizer([]), ValueError, r"param_groups\(model, lr\)"),
    case("describe_param_groups of a string", lambda: ftcourse.describe_param_groups("sgd"), TypeError,
         "torch optimizer or a list of param-group dicts"),
    # layer groups
    case("layer_groups n = 0", lambda: ftcourse.layer_groups(small(), 0), ValueError, "an int from 1 to 6"),
    case("layer_groups n = 99", lambda: ftcourse.layer_groups(small(), 99), ValueError, "an int from 1 to 6"),
    case("freeze_to n = 99", lambda: ftcourse.freeze_to(small(), 99), ValueError, "an int from -3 to 3"),
    case("layer_groups unknown architecture", lambda: ftcourse.layer_groups(nn.Sequential(nn.Conv2d(3, 4, 3))),
         TypeError, r"pass the groups by hand.*groups=\[\["),
    case("freeze_to unknown architecture", lambda: ftcourse.freeze_to(nn.Sequential(nn.Linear(2, 2)), 1),
         TypeError, "pass the groups by hand"),
    case("freeze a string", lambda: ftcourse.freeze("layer1"), TypeError, "nn.Module or a list of modules"),
    case("param_groups module in two groups", lambda: (lambda m: PG(groups_with_layer2_twice(m), 1e-3, model=m))(
        small()), ValueError, "each module must be in exactly one group"),
    case("param_groups groups miss trainable parameters", lambda: (lambda m: PG(
        [[m.layer3, m.layer4], [m.fc]], [1e-3, 1e-2], model=m))(small()), ValueError,
        r"in no group.*freeze them first \(ftcourse.freeze_to"),
    case("param_groups groups of another model", lambda: PG(ftcourse.layer_groups(small()), 1e-3, model=small()),
         ValueError, r"build the groups from this model"),
    case("freeze_audit groups of another model", audit_with_foreign_groups, ValueError,
         "build the groups from this model"),
    # data
    case("target_task shots > pool", lambda: ftcourse.target_task(shots=251), ValueError, r"int in 1\.\.250"),
    case("target_task zero shots", lambda: ftcourse.target_task(shots=0), ValueError, r"int in 1\.\.250"),
    case("target_task unknown shift", lambda: ftcourse.target_task(shift="sepia"), ValueError,
         r"choose one of \('contrast'"),
    case("target_task severity NaN", lambda: ftcourse.target_task(shift="blur", severity=NAN), ValueError,
         r"severity must be a number in \[0, 1\]"),
    case("target_task bad norm", lambda: ftcourse.target_task(norm="imagenet"), ValueError,
         "norm must be 'source', 'own', 'none' or a"),
    case("source_task bad norm", lambda: ftcourse.source_task(norm="imagenet"), ValueError,
         "norm must be 'source', 'own', 'none' or a"),
    case("shift_images unknown shift", lambda: ftcourse.data.shift_images(images(), "sepia"), ValueError,
         r"choose one of \('contrast'"),
    case("shift_images severity < 0", lambda: ftcourse.data.shift_images(images(), "blur", -0.1), ValueError,
         r"in \[0, 1\]"),
    case("shift_images severity > 1", lambda: ftcourse.data.shift_images(images(), "contrast", 1.5), ValueError,
         r"in \[0, 1\]"),
    case("shift_images severity NaN", lambda: ftcourse.data.shift_images(images(), "noise", NAN), ValueError,
         r"in \[0, 1\]"),
    case("shifted_test_set of a source task", lambda: ftcourse.shifted_test_set(ftcourse.Task(
        "source", images(), torch.zeros(2), images(), torch.zeros(2), tuple("01234"), (0.0,) * 3, (1.0,) * 3),
        "blur"), ValueError, r"pass a task from ftcourse.target_task"),
    case("make_loader lengths differ", lambda: ftcourse.make_loader(images(2), torch.zeros(3)), ValueError,
         "give one label per image"),
    case("make_loader batch_size 0", lambda: ftcourse.make_loader(images(2), torch.zeros(2), batch_size=0),
         ValueError, "batch_size must be a positive int"),
    case("make_loader lists", lambda: ftcourse.make_loader([[0.0]], [0]), TypeError, "torch.as_tensor"),
    case("normalize with 2 means for 3 channels", lambda: ftcourse.normalize(images(), (0.5, 0.5), (0.2,) * 3),
         ValueError, "give one mean per channel"),
    case("normalize with std 0", lambda: ftcourse.normalize(images(), (0.5,) * 3, (0.2, 0.0, 0.2)), ValueError,
         r"std must be > 0.*\(1.0, 1.0, 1.0\)"),
    ctx_case("FTCOURSE_DATA is an empty folder", empty_data_dir, ChecksumError, "is FTCOURSE_DATA pointing at"),
    ctx_case("data file tampered", tampered_backbone, ChecksumError, "git checkout -- data/"),
    ctx_case("data file truncated", truncated_digits, ChecksumError, "git checkout -- data/"),
    ctx_case("MANIFEST.json truncated", broken_manifest, ChecksumError, "not valid JSON.*git checkout -- data/"),
    ctx_case("image_folder empty", lambda ctx: folder_with(ctx, {}), ValueError,
             r"no class sub-folders; put each class's images in"),
    ctx_case("image_folder one class", lambda ctx: folder_with(ctx, {"cats": ["0.png"]}), ValueError,
             "needs at least two class sub-folders with images"),
    ctx_case("image_folder of non-images", lambda ctx: folder_with(ctx, {"cats": ["a.txt"], "dogs": ["b.csv"]}),
             ValueError, r"hold no images.*add images to them or remove them"),
    ctx_case("image_folder a class without images", lambda ctx: folder_with(
        ctx, {"cats": ["0.png"], "dogs": ["1.png"], "notes": ["todo.txt"]}), ValueError,
        r"\['notes'\].*hold no images.*remove them"),
    # models and checkpoints
    ctx_case("checkpoint truncated", truncated_checkpoint, ChecksumError, r"save_checkpoint\(model.state_dict\(\)"),
    ctx_case("checkpoint tampered (sha256 given)", tampered_checkpoint, ChecksumError,
             "refusing to load a changed or corrupted file; restore the original file or save it again"),
    ctx_case("checkpoint with pickled objects", pickled_objects, ChecksumError,
             r"not a loadable tensor checkpoint.*save_checkpoint\(model.state_dict\(\)"),
    ctx_case("checkpoint that is a plain pickle", plain_pickle, ChecksumError, r"save_checkpoint\(model.state_dict",
             marks=pytest.mark.filterwarnings("ignore:Detected pickle protocol")),
    ctx_case("checkpoint of another architecture", resnet18_into_course_backbone, ValueError,
             r"another architecture.*unexpected \['layer1.1.*load it into the architecture it was saved from"),
    ctx_case("checkpoint with another number of classes", seven_classes_into_five, ValueError,
             r"head for 7 classes.*course_backbone\(num_classes=7\).*replace_head\(model, 5\)"),
    ctx_case("save_checkpoint of a model", lambda ctx: ftcourse.save_checkpoint(small(), ctx.tmp_path / "m.pt"),
             TypeError, r"save_checkpoint\(model.state_dict\(\), path\)"),
    case("replace_head zero classes", lambda: ftcourse.replace_head(small(), 0), ValueError,
         r"positive int \(e.g. task.num_classes\)"),
    case("load_pretrained zero classes", lambda: ftcourse.load_pretrained(num_classes=0), ValueError,
         "num_classes must be a positive int"),
    case("replace_head without a Linear", lambda: ftcourse.replace_head(nn.Sequential(nn.Conv2d(3, 4, 3)), 2),
         ValueError, "replace its head by hand"),
    case("torchvision_backbone unknown name", lambda: ftcourse.torchvision_backbone("resnet19"), ValueError,
         "e.g. resnet18, resnet50"),
    # training
    case("fit epochs=0", lambda: ftcourse.fit(small(), loader(), epochs=0, progress=False), ValueError,
         "epochs must be an int >= 1"),
    case("fit steps=0", lambda: ftcourse.fit(small(), loader(), steps=0, progress=False), ValueError,
         "steps must be an int >= 1"),
    case("fit epochs and steps", lambda: ftcourse.fit(small(), loader(), epochs=1, steps=1, progress=False),
         ValueError, "give epochs or steps, not both"),
    case("fit empty loader", lambda: ftcourse.fit(small(), empty_loader(), epochs=1, progress=False), ValueError,
         "the training loader is empty"),
    case("fit an (x, y) pair", lambda: ftcourse.fit(small(), batch(), epochs=1, progress=False), TypeError,
         r"ftcourse.make_loader\(x, y"),
    case("fit nothing trainable", lambda: ftcourse.fit(frozen(), loader(), epochs=1, progress=False), ValueError,
         r"freeze_to\(model, -1\)"),
    case("evaluate empty loader", lambda: ftcourse.evaluate(small(), empty_loader()), ValueError,
         "evaluate on a non-empty loader"),
    ctx_case("get_device('cuda') without CUDA", cuda_without_cuda, RuntimeError, r"pass 'cpu'"),
    ctx_case("FTCOURSE_DEVICE=cuda without CUDA", lambda ctx: cuda_without_cuda(ctx, env=True), RuntimeError,
             "unset FTCOURSE_DEVICE"),
    case("get_device unknown string", lambda: ftcourse.get_device("gpu"), ValueError,
         "valid choices: 'cpu', 'cuda'"),
    ctx_case("FTCOURSE_DEVICE unknown string", bad_device_in_env, ValueError,
             r"FTCOURSE_DEVICE='gpu' is not a device; valid choices"),
    case("seed_everything(-1)", lambda: ftcourse.seed_everything(-1), ValueError, "non-negative int"),
    case("seed_everything('0')", lambda: ftcourse.seed_everything("0"), ValueError, "non-negative int"),
    case("seed_everything threads=-1", lambda: ftcourse.seed_everything(0, threads=-1), ValueError,
         "threads must be an int >= 1"),
    # BatchNorm
    case("fold_bn BN without running stats", lambda: ftcourse.fold_bn(conv_bn_without_stats()), ValueError,
         r"track_running_stats=False.*leave it as it is"),
    case("bn_to_affine BN without running stats", lambda: ftcourse.bn_to_affine(conv_bn_without_stats()),
         ValueError, "build it with track_running_stats=True"),
    case("fold_bn of a state dict", lambda: ftcourse.fold_bn(small().state_dict()), TypeError,
         "fold_bn takes an nn.Module"),
    case("adabn empty loader", adabn_on_empty_loader, ValueError, r"needs some target images.*make_loader"),
    case("adabn model without BN", lambda: ftcourse.adabn(nn.Sequential(nn.Conv2d(3, 3, 1)), [images()]),
         ValueError, "no BN layers with running statistics"),
    case("adabn max_batches 0", lambda: ftcourse.adabn(small(), [images()], max_batches=0), ValueError,
         "max_batches must be a positive number of batches"),
    # gradient recorder, update ratios, audit
    case("GradientRecorder unknown architecture", lambda: ftcourse.GradientRecorder(nn.Sequential(nn.Linear(2, 2))),
         TypeError, "pass the groups by hand"),
    case("GradientRecorder groups of another model", lambda: ftcourse.GradientRecorder(
        small(), groups=ftcourse.layer_groups(small())), ValueError, "build the groups from this model"),
    case("GradientRecorder no groups", lambda: ftcourse.GradientRecorder(small(), groups=[]), ValueError,
         "groups is empty"),
    case("update_ratios snapshot of another architecture", lambda: ftcourse.update_ratios(
        ftcourse.snapshot(resnet18(num_classes=5)), small()), ValueError,
        r"snapshot is not of this model.*ftcourse.snapshot\(model\)"),
    case("update_ratios snapshot missing names", lambda: ftcourse.update_ratios(
        ftcourse.snapshot(nn.Sequential(nn.Linear(2, 2))), small()), ValueError,
        r"conv1.weight: missing in the snapshot.*ftcourse.snapshot\(model\)"),
    case("update_ratios model instead of snapshot", lambda: ftcourse.update_ratios(small(), small()), TypeError,
         r"before = ftcourse.snapshot\(model\)"),
    case("freeze_audit images without labels", lambda: (lambda m: ftcourse.freeze_audit(
        m, torch.optim.SGD(m.parameters(), lr=0.1), batch()[0]))(small()), TypeError,
        r"\(inputs, targets\) pair, e.g. next\(iter\(train_loader\)\)"),
    case("freeze_audit optimizer class", lambda: ftcourse.freeze_audit(small(), torch.optim.SGD, batch()),
         TypeError, "optimizer must be a torch.optim.Optimizer"),
]


class _Ctx:
    def __init__(self, tmp_path, monkeypatch):
        self.tmp_path, self.monkeypatch = tmp_path, monkeypatch


@pytest.mark.parametrize("call,exc,match,needs_ctx", CASES)
def test_bad_input_fails_early_and_names_the_fix(call, exc, match, needs_ctx, tmp_path, monkeypatch):
    with pytest.raises(exc, match=match) as info:
        call(_Ctx(tmp_path, monkeypatch)) if needs_ctx else call()
    assert type(info.value) is exc  # not a subclass raised by something deeper (e.g. a bare KeyError)


def test_the_catalogue_is_long_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


def test_bad_task_arguments_fail_before_any_image_is_made(monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("images were loaded or rendered before the arguments were checked")

    task = ftcourse.Task("target", images(), torch.zeros(2), images(), torch.zeros(2), tuple("56789"),
                         (0.0,) * 3, (1.0,) * 3)
    for name in ("load_digits", "render", "_target_pool_val_test", "source_indices"):
        monkeypatch.setattr(ftcourse.data, name, no_work)
    monkeypatch.setattr(ftcourse.models, "load_checkpoint", no_work)
    calls = [lambda: ftcourse.target_task(shots=251), lambda: ftcourse.target_task(shift="sepia"),
             lambda: ftcourse.target_task(shift="blur", severity=2.0), lambda: ftcourse.target_task(norm="imagenet"),
             lambda: ftcourse.target_task(seed=-1), lambda: ftcourse.source_task(norm="imagenet"),
             lambda: ftcourse.shifted_test_set(task, "sepia"), lambda: ftcourse.load_pretrained(num_classes=0),
             lambda: ftcourse.fresh_model(num_classes=0), lambda: ftcourse.fresh_model(device="gpu")]
    for call in calls:
        with pytest.raises(ValueError):
            call()


# ---------------------------------------------------------------- documented decisions on odd but valid inputs
def test_rate_zero_is_allowed_for_some_groups():
    model = small()
    out = ftcourse.param_groups(model, np.array([0.0, 1e-3, 1e-1]))
    assert [g["lr"] for g in out] == [0.0, 1e-3, 1e-1]
    ftcourse.freeze_to(model, 1)  # group 0 frozen: its rate 0 is dropped with it, the others train
    assert [g["lr"] for g in ftcourse.param_groups(model, [0.0, 0.0, 1e-2])] == [0.0, 1e-2]
    assert ftcourse.make_optimizer(model, lr=0.0).param_groups[0]["lr"] == 0.0  # one plain rate: torch's rule


def test_param_groups_without_model_keeps_sharing_groups_by_hand():
    m = small()
    out = ftcourse.param_groups([[m.layer4], [m.layer4, m.fc]], 1e-3)  # no model: held once, by the first
    ids = [id(p) for g in out for p in g["params"]]
    assert len(ids) == len(set(ids))


def test_fold_bn_without_bn_returns_an_unchanged_eval_copy():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).train()
    folded, report = ftcourse.fold_bn(model, return_report=True)
    assert report == {"folded": [], "frozen_affine": []}
    assert folded is not model and not folded.training and model.training
    x = images()
    torch.testing.assert_close(folded(x), model(x))


def test_fold_bn_twice_changes_nothing_the_second_time():
    model = small().eval()
    once, first = ftcourse.fold_bn(model, return_report=True)
    twice, second = ftcourse.fold_bn(once, return_report=True)
    assert first["folded"] and second == {"folded": [], "frozen_affine": []}
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(twice(x), once(x))


def test_fold_bn_in_train_mode_folds_the_running_statistics():
    model = small()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))  # running statistics away from (0, 1)
    model.train()
    folded = ftcourse.fold_bn(model)
    assert model.training  # the caller's mode is left alone
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-4, atol=1e-4)


def test_bn_to_affine_twice_changes_nothing_the_second_time():
    model = ftcourse.bn_to_affine(small())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    again = ftcourse.bn_to_affine(model)
    assert again is model and ftcourse.bn_modules(model) == []
    assert all(torch.equal(before[k], v) for k, v in again.state_dict().items())


def test_gradient_recorder_on_a_frozen_model_records_nan_until_unfrozen():
    model = frozen()
    with ftcourse.GradientRecorder(model) as rec:
        assert rec.frozen == [True, True, True]
        assert all(math.isnan(v) for v in rec.step())
        ftcourse.unfreeze(model.fc)
        rec.step()  # hooks the newly trainable head
        x, y = batch()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        row = rec.step()
    assert math.isnan(row[0]) and math.isnan(row[1]) and row[2] > 0


def test_freeze_audit_reports_an_optimizer_of_another_model():
    model, other = small(), small()
    report = ftcourse.freeze_audit(model, torch.optim.SGD(other.parameters(), lr=0.1), batch())
    assert not report.ok
    assert any("not in the model" in t and "rebuild the optimizer" in t for t in report.traps)
    assert any("not in the optimizer" in t for t in report.traps)
