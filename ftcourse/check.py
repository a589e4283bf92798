"""Exercise checkers: each prints "Correct: ..." (returns None) or raises AssertionError with a hint;
None = not attempted.

Neuromatch style: a checker says what your answer was and what was expected. An answer still set
to its placeholder `None` prints "Not attempted yet" (and fails nothing), so a notebook with
unanswered exercises still runs top to bottom.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import bn as _bn
from .audit import freeze_audit
from .cost import ring_allreduce_seconds
from .bn import bn_stats_frozen
from .data import normalize
from .features import representation_change
from .groups import LayerGroups, group_label, layer_groups, params_of, unit_groups
from .models import find_head, torchvision_backbone
from .optim import param_group_problems
from .train import evaluate

__all__ = ["not_attempted", "frozen_head_only", "trains_only", "audit_clean", "number", "param_count", "normalised",
           "bn_affine", "folded_conv", "adabn_adapted", "param_groups_match", "learning_rates", "feature_change_ratios",
           "ddp_bytes", "allreduce_ms", "ddp_allreduce_ms", "ddp_rewrap", "sync_bn_keeps_pins", "cell_mean_differences",
           "validation_images"]


def not_attempted(answer, what: str) -> bool:
    """True (and a message) if the answer is still the placeholder None."""
    if answer is None:
        print(f"Not attempted yet: {what}. Replace the None above with your answer and run this cell again.")
        return True
    return False


def _require_module(model) -> None:
    if not isinstance(model, nn.Module):
        raise AssertionError(f"Your answer is a {type(model).__name__}, expected an nn.Module (the model itself)")


def _top_level(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_children())


def trains_only(model, names, what: str | None = None) -> None:
    """Check that exactly the top-level modules in `names` have trainable parameters, every other BN is pinned, and
    the BN layers of `names` are not (their statistics follow the data)."""
    what = what or f"train only {', '.join(names)}"
    if not_attempted(model, what):
        return
    _require_module(model)
    children = _top_level(model)
    unknown = [n for n in names if n not in children]
    if unknown:
        raise AssertionError(f"{unknown} are not top-level modules of this model; it has {list(children)}")
    trainable = [n for n, m in children.items() if any(p.requires_grad for p in m.parameters())]
    wanted = [n for n in children if n in names]
    if trainable != wanted:
        raise AssertionError(f"Your trainable modules = {trainable}, expected {wanted}. "
                             "Hint: requires_grad_(False) on everything, then requires_grad_(True) on those "
                             "(or ftcourse.freeze / unfreeze); `module.requires_grad = False` does nothing.")
    partly = [n for n in wanted if not all(p.requires_grad for p in children[n].parameters())]
    if partly:
        raise AssertionError(f"{partly} are only partly trainable; expected every parameter in them trainable")
    loose = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm) and n.split(".")[0] not in names
             and not bn_stats_frozen(m)]
    if loose:
        raise AssertionError(f"{len(loose)} BN layers in the frozen part are not pinned in eval mode "
                             f"(e.g. {loose[:2]}): "
                             "their running statistics would still change in model.train(). "
                             "Hint: ftcourse.freeze(...) or ftcourse.freeze_bn_stats(...) on the frozen modules")
    stuck = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm) and n.split(".")[0] in names
             and bn_stats_frozen(m)]
    if stuck:
        raise AssertionError(f"{len(stuck)} BN layers in the part that trains are still pinned (e.g. {stuck[:2]}): "
                             "their statistics would not follow the new data. Hint: ftcourse.unfreeze(...) "
                             "unpins them; requires_grad_(True) alone does not")
    print(f"Correct: only {', '.join(wanted)} train, and the frozen part's BN statistics are pinned.")


def frozen_head_only(model) -> None:
    """Check that only the classification head is trainable and the body is frozen for real (BN pinned)."""
    if not_attempted(model, "freeze everything but the head"):
        return
    _require_module(model)
    head_name, head = find_head(model)
    if head_name not in _top_level(model):
        raise AssertionError(f"the head {head_name!r} is not a top-level module; use trains_only for this model")
    return trains_only(model, [head_name], what="freeze everything but the head")


def audit_clean(model, optimizer, batch, loss_fn=F.cross_entropy) -> None:
    """Check that a (partly frozen) model and its optimizer pass ftcourse.freeze_audit in train mode."""
    if not_attempted(model, "fix the setup so that the freeze audit passes"):
        return
    _require_module(model)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise AssertionError(f"Your optimizer is a {type(optimizer).__name__}, expected a torch.optim.Optimizer")
    if all(p.requires_grad for p in model.parameters()):
        raise AssertionError("Nothing is frozen: the exercise is to keep the body frozen and fix the traps")
    was = model.training
    model.train()  # the trap shows in train mode: that is how a training loop runs
    try:
        report = freeze_audit(model, optimizer, batch, loss_fn)
    finally:
        model.train(was)
    if not report.ok:
        raise AssertionError("The freeze audit (model in train mode) still finds: " + " | ".join(report.traps))
    print("Correct: one training step in train mode changes nothing that is frozen.")


def number(answer, expected: float, what: str, rel: float = 1e-3) -> None:
    """Check a numeric answer against the expected value (relative tolerance `rel`)."""
    if not_attempted(answer, what):
        return
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise AssertionError(f"Your {what} = {answer!r}, expected a number") from None
    if not math.isclose(value, float(expected), rel_tol=rel, abs_tol=1e-12):
        # the direction, not the value: a check that printed the answer could be passed by copying it
        side = "too high" if value > float(expected) else "too low"
        margin = "an exact answer is expected" if rel < 1e-6 else f"by more than {rel:.1%} of the answer"
        raise AssertionError(f"Your {what} = {value:.6g} is {side} ({margin}): recompute it; the solution cell "
                             "below shows the way")
    print(f"Correct: {what} = {value:.6g}")


def param_count(answer, modules, what: str = "number of parameters") -> None:
    """Check a count of scalar parameters against the modules' own count (each parameter counted once)."""
    if not_attempted(answer, what):
        return
    mods = [modules] if isinstance(modules, nn.Module) else list(modules)
    seen = {id(p): p for m in mods for p in m.parameters()}
    expected = sum(p.numel() for p in seen.values())
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != expected:
        hint = " Hint: sum(p.numel() for p in module.parameters()) over the group's modules"
        raise AssertionError(f"Your {what} = {answer!r}, expected {expected:,}.{hint}")
    print(f"Correct: {what} = {expected:,}")


def normalised(answer, raw: torch.Tensor, mean, std) -> None:
    """Check that `answer` is `raw` (N, 3, H, W) normalised per channel with (mean, std)."""
    if not_attempted(answer, "normalise the images"):
        return
    if not isinstance(answer, torch.Tensor):
        raise AssertionError(f"Your answer is a {type(answer).__name__}, expected a tensor")
    if answer.shape != raw.shape:
        raise AssertionError(f"Your tensor has shape {tuple(answer.shape)}, expected {tuple(raw.shape)}")
    expected = normalize(raw, mean, std)
    err = float((answer.float() - expected).abs().max())
    if err > 1e-4:
        got = answer.float().mean(dim=(0, 2, 3)).tolist()
        raise AssertionError(f"Your images have per-channel means {[round(v, 3) for v in got]}, expected "
                             f"{[round(v, 3) for v in expected.mean(dim=(0, 2, 3)).tolist()]} (max difference "
                             f"{err:.3g}). Hint: (x - mean) / std with mean and std shaped (1, 3, 1, 1)")
    print("Correct: (x - mean) / std per channel; these are what the backbone saw in pretraining.")


# ---------------------------------------------------------------- BatchNorm as an affine map, folding, AdaBN
def bn_affine(scale, shift, layer):
    """The per-channel (scale, shift) a BN layer applies in eval mode (ftcourse.bn.bn_scale_shift computes it)."""
    if not_attempted(scale, "scale and shift of the BN layer"):
        return
    want_scale, want_shift = _bn.bn_scale_shift(layer)
    for got, want, what in [(scale, want_scale, "scale"), (shift, want_shift, "shift")]:
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise AssertionError(f"Your {what} should be a tensor of shape {tuple(want.shape)} (one value per channel)")
        if not torch.allclose(got, want, atol=1e-6):
            raise AssertionError(f"Your {what} differs from the expected one by up to {(got - want).abs().max():.3g}. "
                                 "Hint: scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale")
    print("Correct: this layer computes x * scale + shift in eval mode.")


def folded_conv(weight, bias, conv, layer):
    """The weight and bias of conv followed by BN, folded into one conv."""
    if not_attempted(weight, "weight and bias of the folded conv"):
        return
    want = _bn.fold_conv_bn(conv, layer)
    for got, ref, what in [(weight, want.weight, "weight"), (bias, want.bias, "bias")]:
        if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
            raise AssertionError(f"Your {what} should be a tensor of shape {tuple(ref.shape)}")
        if not torch.allclose(got, ref.detach(), atol=1e-6):
            raise AssertionError(f"Your {what} is off by up to {(got - ref).abs().max():.3g}. Hint: multiply each "
                                 "output channel of the weight by scale; the conv has no bias, so bias = shift")
    print("Correct: conv(x, weight, bias) equals bn(conv(x)) in eval mode.")


def adabn_adapted(model, reference, test):
    """A copy of `reference` adapted with AdaBN: same weights, new statistics, better accuracy."""
    if not_attempted(model, "adapt the probe to the colour shift with AdaBN"):
        return
    if model is reference:
        raise AssertionError("Your model is the probe itself: adapt a copy (copy.deepcopy) "
                             "and keep the probe unchanged")
    same = all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    if not same:
        raise AssertionError("Some weights changed: AdaBN only recomputes the BN running statistics")
    moved = [n for (n, a), (_, b) in zip(_bn.bn_modules(model), _bn.bn_modules(reference))
             if torch.equal(a.running_mean, b.running_mean)]
    if moved:
        raise AssertionError(f"{len(moved)} BN layers still have the pretrained statistics "
                             f"(e.g. {moved[0]}): run ftcourse.adabn")
    new, old = evaluate(model, test), evaluate(reference, test)
    if new <= old:
        raise AssertionError(f"Accuracy {new:.3f} is not above the unadapted {old:.3f}: use colour-shifted images")
    print(f"Correct: same weights, new statistics; accuracy on the colour-shifted test {old:.3f} -> {new:.3f}.")


# ---------------------------------------------------------------- parameter groups and learning rates
def _held(answer) -> list[tuple[torch.Tensor, float]]:
    """(parameter, lr) for every tensor an optimizer or a list of param-group dicts holds."""
    groups = answer.param_groups if isinstance(answer, torch.optim.Optimizer) else answer
    if isinstance(groups, dict) or not isinstance(groups, (list, tuple)):
        raise AssertionError(f"Your answer is a {type(answer).__name__}, expected a torch optimizer or a list of "
                             "dicts like [{'params': [...], 'lr': 1e-4}, ...]")
    held = []
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or "params" not in g:
            raise AssertionError(f"Entry {i} of your list is a {type(g).__name__}, "
                                 "expected a dict with 'params' and 'lr'")
        if "lr" not in g:
            raise AssertionError(f"Group {i} has no 'lr': without it the optimizer's default rate applies to it")
        params = [g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"])
        held += [(p, float(g["lr"])) for p in params]
    return held


def param_groups_match(answer, model: nn.Module, rates, groups=None) -> None:
    """Check an optimizer (or param-group dicts) against one rate per layer group; None = a frozen group.

    Every trainable parameter of layer group i (`layer_groups(model, len(rates))`, as ftcourse.param_groups
    cuts it) must be held exactly once with rate rates[i]; frozen parameters and other models' tensors not at all.
    """
    if not_attempted(answer, "build the parameter groups"):
        return
    held = _held(answer)
    groups = layer_groups(model, len(rates)) if groups is None else LayerGroups.of(model, groups)
    if len(groups) != len(rates):
        raise ValueError(f"{len(rates)} rates for {len(groups)} groups: give one rate (or None) per group")
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {id(p): lr for p, lr in held}
    for i, (group, rate) in enumerate(zip(groups, rates)):
        trainable = [names[id(p)] for p in params_of(group) if p.requires_grad]
        if rate is None and trainable:
            raise AssertionError(f"Group {i} ({group_label(group, model)}) should be frozen, but {len(trainable)} "
                                 f"tensor(s) are trainable (e.g. {trainable[:2]}). "
                                 f"Hint: ftcourse.freeze_to(model, {i + 1})")
    problems = param_group_problems(answer.param_groups if isinstance(answer, torch.optim.Optimizer) else answer, model)
    if problems:  # the same check as describe_param_groups' warnings
        raise AssertionError(f"{problems[0][0].upper()}{problems[0][1:]}")
    for i, (group, rate) in enumerate(zip(groups, rates)):
        params = [p for p in params_of(group) if id(p) in lr_of]
        wrong = sorted({lr_of[id(p)] for p in params if rate is not None and not math.isclose(lr_of[id(p)], rate,
                                                                                              rel_tol=1e-6)})
        if wrong:
            raise AssertionError(f"Group {i} ({group_label(group, model)}) should learn at {rate:g}; some of its "
                                 f"tensors have lr {', '.join(f'{v:g}' for v in wrong)}. "
                                 "Hint: input to output, one rate per group")
    shown = ", ".join("frozen" if r is None else f"{r:g}" for r in rates)
    print(f"Correct: {len(lr_of)} tensors, each in one group, at rates {shown} (input to output), "
          "the same as ftcourse.param_groups would build.")


def learning_rates(answer, expected, what: str = "learning rates", rel: float = 1e-6) -> None:
    """Check a list of learning rates (input to output) against the expected ones."""
    if not_attempted(answer, what):
        return
    try:
        got = [float(v) for v in (answer.tolist() if hasattr(answer, "tolist") else answer)]
    except TypeError:
        raise AssertionError(f"Your {what} = {answer!r}, expected a list of {len(expected)} numbers") from None
    want = [float(v) for v in expected]
    if len(got) != len(want):
        raise AssertionError(f"Your {what} has {len(got)} values, expected {len(want)} (one per group)")
    if not all(math.isclose(a, b, rel_tol=rel) for a, b in zip(got, want)):
        hint = " (in the wrong order? input to output: the head, last, gets the top rate)" if \
            all(math.isclose(a, b, rel_tol=rel) for a, b in zip(got, want[::-1])) else ""
        raise AssertionError(f"Your {what} = {[float(f'{v:.4g}') for v in got]}, expected "
                             f"{[float(f'{v:.4g}') for v in want]}{hint}")
    print(f"Correct: {what} = {', '.join(f'{v:.3g}' for v in got)}")


# ---------------------------------------------------------------- feature change
def feature_change_ratios(answer, models, pretrained: nn.Module, x: torch.Tensor) -> None:
    """Check {rate: (1 - CKA of FT) / (1 - CKA of LP-FT)} against the (FT, LP-FT) models trained at each rate."""
    if not_attempted(answer, "the FT / LP-FT feature-change ratio at each rate"):
        return
    if not isinstance(answer, dict) or not isinstance(models, dict) or set(answer) != set(models):
        raise AssertionError("Give a dict {rate: ratio} with the same rates as your dict of models {rate: (ft, lp_ft)}")
    measured = {}
    for rate, (ft, lpft) in models.items():
        ft_change = representation_change(pretrained, ft, x)["1 - CKA"]
        measured[rate] = ft_change / representation_change(pretrained, lpft, x)["1 - CKA"]
        if not math.isclose(float(answer[rate]), measured[rate], rel_tol=1e-3):
            raise AssertionError(f"At rate {rate:g} your ratio is {float(answer[rate]):.4g}, your models give "
                                 f"{measured[rate]:.4g}. "
                                 "Hint: ftcourse.representation_change(pretrained, model, x)['1 - CKA'] "
                                 "for each model, then FT / LP-FT")
    shown = ", ".join(f"{measured[r]:.3g}x at rate {r:g}" for r in sorted(measured))
    print(f"Correct: FT moves the features (1 - CKA) {shown} as much as LP-FT. Compare with experiment 2's "
          "ratio at 0.01 before you name a trend: one seed's differences can be noise.")


def ddp_bytes(answer, arch: str, frozen_units: int) -> None:
    """Exercise (DDP traffic): bytes DDP all-reduces per step for torchvision `arch` with its first
    `frozen_units` units frozen."""
    units = unit_groups(torchvision_backbone(arch))
    expected = 4 * sum(p.numel() for g in units[frozen_units:] for p in params_of(g))
    number(answer, expected, f"bytes per step, {arch} with its first {frozen_units} units frozen", rel=1e-9)


def allreduce_ms(answer, n_bytes: float, world_size: int, bandwidth_bytes_per_s: float, what: str) -> None:
    """Exercise (DDP traffic): milliseconds a ring all-reduce of `n_bytes` takes (bandwidth term, 2 (N - 1) / N)."""
    number(answer, 1e3 * ring_allreduce_seconds(n_bytes, world_size, bandwidth_bytes_per_s), what)


def ddp_allreduce_ms(answer, arch: str, frozen_units: int, world_size: int, bandwidth_bytes_per_s: float,
                     what: str) -> None:
    """Exercise (DDP traffic): milliseconds a ring all-reduce of one step's gradients takes for `arch` with its
    first `frozen_units` units frozen; the bytes are counted here, so a wrong or skipped earlier answer does not
    carry over."""
    units = unit_groups(torchvision_backbone(arch))
    n_bytes = 4 * sum(p.numel() for g in units[frozen_units:] for p in params_of(g))
    allreduce_ms(answer, n_bytes, world_size, bandwidth_bytes_per_s, what)


def _one_process_group():
    """A gloo group of one process in this kernel, if none exists (DDP needs one); returns whether it made it."""
    import torch.distributed as dist
    if dist.is_initialized():
        return False
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    return True


def ddp_rewrap(next_stage) -> None:
    """Exercise (DDP trap 1): `next_stage(model, ddp)` takes a model whose head alone trains, wrapped in DDP, unfreezes
    `layer4` and returns a DDP wrapper that all-reduces every parameter that now trains. Checked by running it on a
    fresh model in a one-process gloo group and counting the bytes one backward all-reduces."""
    import torch.distributed as dist
    from .distributed import ByteCounter
    from .models import fresh_model
    from .groups import freeze_to
    if not_attempted(next_stage, "unfreeze layer4 and wrap again"):
        return
    if not callable(next_stage):
        raise AssertionError(f"Your answer is a {type(next_stage).__name__}: define a function next_stage(model, ddp)")
    made = _one_process_group()
    try:
        model = fresh_model(seed=0)
        units = unit_groups(model)
        freeze_to(model, len(units) - 1, groups=units)  # the head alone trains
        old = nn.parallel.DistributedDataParallel(model)
        new = next_stage(model, old)
        if not isinstance(new, nn.parallel.DistributedDataParallel):
            raise AssertionError(f"next_stage returned a {type(new).__name__}; return the DistributedDataParallel "
                                 "wrapper the next stage trains with")
        if new.module is not model:
            raise AssertionError("the returned wrapper holds another model: wrap the same model (the weights so far)")
        trains = [n for n, m in model.named_children() if any(p.requires_grad for p in m.parameters())]
        if trains != ["layer4", "fc"]:
            raise AssertionError(f"after next_stage these modules train: {trains}; expected layer4 and fc only")
        if any(_bn.bn_stats_frozen(m) for m in model.layer4.modules() if isinstance(m, _BatchNorm)):
            raise AssertionError("layer4's BatchNorm layers are still pinned to their running statistics: unfreeze "
                                 "them too (ftcourse.unfreeze does both)")
        counter = ByteCounter().attach(new)
        x = torch.randn(4, 3, 32, 32)
        F.cross_entropy(new(x), torch.arange(4) % 5).backward()
        wanted = 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
        if counter.bytes != wanted:
            raise AssertionError(f"the wrapper all-reduced {counter.bytes:,} bytes in a backward, but the trainable "
                                 f"parameters need {wanted:,}: DDP registers what requires a gradient when it is "
                                 "built, so unfreeze first, then build a new DistributedDataParallel")
        print(f"Correct: a new wrapper around the same model all-reduces layer4 and the head ({wanted:,} bytes a step)")
    finally:
        if made:
            dist.destroy_process_group()


def sync_bn_keeps_pins(convert) -> None:
    """Exercise (DDP trap 2): `convert(model)` returns the model with every BatchNorm layer a SyncBatchNorm, written
    with torch's nn.SyncBatchNorm.convert_sync_batchnorm (not ftcourse.bn.convert_sync_batchnorm), where the
    layers that were pinned to their running statistics stay pinned after model.train(), and no other does."""
    from unittest import mock
    from .groups import freeze_to
    from .models import fresh_model
    if not_attempted(convert, "convert to SyncBatchNorm keeping the pins"):
        return
    if not callable(convert):
        raise AssertionError(f"Your answer is a {type(convert).__name__}: define a function convert(model)")
    model = fresh_model(seed=0)
    freeze_to(model, 4, groups=unit_groups(model))  # stem and layer1-layer3 frozen, their BN pinned
    pinned = {n for n, m in _bn.bn_modules(model) if _bn.bn_stats_frozen(m)}
    weights = {n: p for n, p in model.named_parameters()}

    def refuse(*args, **kwargs):
        raise AssertionError("write it with torch's nn.SyncBatchNorm.convert_sync_batchnorm and put the pins back "
                             "yourself; ftcourse.bn.convert_sync_batchnorm is the answer this exercise asks you to "
                             "rebuild")
    if convert is _bn.convert_sync_batchnorm:
        refuse()
    with mock.patch.object(_bn, "convert_sync_batchnorm", refuse):
        out = convert(model)
    if not isinstance(out, nn.Module):
        raise AssertionError(f"convert returned a {type(out).__name__}; return the converted model")
    layers = _bn.bn_modules(out)
    plain = [n for n, m in layers if not isinstance(m, nn.SyncBatchNorm)]
    if plain or not layers:
        raise AssertionError(f"these BatchNorm layers are not SyncBatchNorm: {plain[:4] or 'none found'}")
    out.train()
    now = {n for n, m in layers if not m.training}
    if now != pinned:
        lost, extra = sorted(pinned - now), sorted(now - pinned)
        raise AssertionError(f"after model.train(): {len(lost)} frozen layers train again ({lost[:3]}...), "
                             f"{len(extra)} others are pinned ({extra[:3]}); pin exactly the layers that were "
                             "pinned before, after converting (torch builds new modules)")
    if any(p is not weights[n] for n, p in out.named_parameters()):
        raise AssertionError("the converted model has new parameters: keep the model's own weights")
    print(f"Correct: every BN layer is a SyncBatchNorm and the {len(pinned)} frozen ones stay pinned after train()")


def cell_mean_differences(answer, per_seed: Mapping, arm: str, base: str, cells, split: str = "val") -> None:
    """Exercise (reading an ablation): {seed: the arm's `split` accuracy averaged over `cells` minus the base's}.

    per_seed: {seed: {"<cell> <split> <arm>": accuracy, ...}}, as the recipe's ablation file holds them.
    """
    what = f"per-seed differences of {arm!r} minus {base!r}"
    if not_attempted(answer, what):
        return
    if not isinstance(answer, Mapping):
        raise AssertionError(f"Your answer is a {type(answer).__name__}; give a dict {{seed: difference}}")
    cells = list(cells)
    expected = {s: sum(r[f"{c} {split} {arm}"] - r[f"{c} {split} {base}"] for c in cells) / len(cells)
                for s, r in per_seed.items()}
    if set(answer) != set(expected):
        raise AssertionError(f"Your answer has seeds {sorted(answer)}; give one difference for each seed of the "
                             f"ablation ({len(expected)} seeds)")
    wrong = [s for s in expected if not math.isclose(float(answer[s]), expected[s], abs_tol=1e-9)]
    if wrong:
        raise AssertionError(f"Your difference on seed(s) {wrong[:3]} is off: average the arm's {split} accuracy "
                             f"over the {len(cells)} cells and subtract the base's average")
    mean = sum(expected.values()) / len(expected)
    print(f"Correct: {len(expected)} per-seed differences, mean {100 * mean:+.1f} points")


def validation_images(answer, accuracy: float, standard_error: float) -> None:
    """Exercise (how big a validation split must be): the fewest images for which the standard error of an
    accuracy near `accuracy`, sqrt(a (1 - a) / n), is at most `standard_error`."""
    what = f"validation images for a standard error of at most {standard_error:g}"
    if not_attempted(answer, what):
        return
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != int(answer):
        raise AssertionError(f"Your answer {answer!r} is not a whole number of images")
    need = math.ceil(accuracy * (1 - accuracy) / standard_error ** 2 - 1e-9)
    if int(answer) != need:
        side = "too many: a smaller split is enough" if answer > need else "too few: its standard error is larger"
        raise AssertionError(f"Your {int(answer)} images are {side}; solve sqrt(a (1 - a) / n) <= "
                             f"{standard_error:g} for the smallest whole n")
    print(f"Correct: {need} images (one image is then {100 / need:.2f} points)")
