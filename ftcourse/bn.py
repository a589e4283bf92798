"""BatchNorm when fine-tuning: the four BN states made explicit, with checked conversions."""
from __future__ import annotations

import copy
import functools
import itertools
import math
from typing import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops import FrozenBatchNorm2d

from .inputs import require_int

__all__ = [
    "freeze_bn_stats", "unfreeze_bn_stats", "bn_stats_frozen", "bn_modules", "convert_sync_batchnorm",
    "BN_STATES", "BNAffine", "bn_to_affine", "affine_to_bn", "bn_scale_shift", "fold_conv_bn", "fold_bn",
    "adabn", "bn_state", "bn_report",
]


def bn_modules(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """(name, module) of every BatchNorm layer (1d, 2d, 3d, SyncBatchNorm) in the model."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm)]


# The pin is two plain attributes on the layer instance, partials of the module-level functions below:
# `train` (called by every parent's model.train()/eval()) and `extra_repr` (print(model) shows
# "stats=frozen"). Partials of module-level functions pickle and deepcopy (a bound method does not
# unpickle), and the layer's class stays what it was (nn.BatchNorm2d ...), so torch.fx tracing,
# feature extractors, fusers and isinstance/type checks see an ordinary BN layer.
# Whole-model pickles refer to _pinned_train and _pinned_extra_repr by name: do not rename them.
def _pinned_train(m: _BatchNorm, mode: bool = True) -> _BatchNorm:
    """A pinned layer's train(mode): eval mode whatever `mode` says."""
    return type(m).train(m, False)


def _pinned_extra_repr(m: _BatchNorm) -> str:
    """A pinned layer's extra_repr: the usual one plus ', stats=frozen'."""
    return f"{type(m).extra_repr(m)}, stats=frozen"


def freeze_bn_stats(model: nn.Module) -> int:
    """Put every BN layer in eval mode for good: running statistics stop updating, even after model.train().

    Done per instance (the layer's `train` and `extra_repr` are overridden by picklable partials; its
    class is unchanged): survives model.train(), deepcopy, whole-model torch.save/load, .to()/.half(),
    torch.compile and DDP; print(model) shows `stats=frozen`. `unfreeze_bn_stats` undoes it.
    Returns the number of BN layers affected.
    """
    layers = bn_modules(model)
    for _, m in layers:
        m.train = functools.partial(_pinned_train, m)
        m.extra_repr = functools.partial(_pinned_extra_repr, m)
        m.eval()
    return len(layers)


def unfreeze_bn_stats(model: nn.Module) -> int:
    """Undo freeze_bn_stats; the layers take the model's mode again at its next train()/eval()."""
    count = 0
    for _, m in bn_modules(model):
        if bn_stats_frozen(m):
            del m.__dict__["train"]
            m.__dict__.pop("extra_repr", None)
            m.training = model.training
            count += 1
    return count


def bn_stats_frozen(m: nn.Module) -> bool:
    """True if freeze_bn_stats pinned this BN layer in eval mode."""
    return getattr(m.__dict__.get("train"), "func", None) is _pinned_train


def convert_sync_batchnorm(model: nn.Module, process_group=None) -> nn.Module:
    """nn.SyncBatchNorm.convert_sync_batchnorm keeping freeze_bn_stats pins (torch's builds new, unpinned layers).

    Layers that were pinned become pinned SyncBatchNorm layers, the others plain SyncBatchNorm.
    Returns the converted model (a new module if `model` itself is a BN layer).
    """
    pinned = {name for name, m in bn_modules(model) if bn_stats_frozen(m)}
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group)
    for name, m in bn_modules(model):
        if name in pinned:
            freeze_bn_stats(m)
    return model


# ---------------------------------------------------------------------------------------------
# The four states of a BN layer when fine-tuning:
#   1. "batch-stats"       plain BN in train mode: normalises by the batch, updates running stats;
#   2. "frozen-stats"      BN pinned in eval mode by freeze_bn_stats, weight/bias still trainable;
#   3. "frozen-affine"     nothing trainable, fixed per-channel map (torchvision's FrozenBatchNorm2d,
#                          BNAffine(trainable=False), or a pinned BN whose weight/bias are frozen);
#   4. folded              merged into the conv before it by fold_bn: the layer is gone.
# BNAffine(trainable=True) is the variant between 2 and 3: the same map, scale/shift trained directly.
# "eval" marks a BN in eval mode that is not pinned: the next model.train() puts it back in state 1.
# ---------------------------------------------------------------------------------------------

BN_STATES = ("batch-stats", "frozen-stats", "frozen-affine", "trainable-affine", "eval")


def _scale_shift(weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """BN at inference as y = x * scale + shift: scale = gamma / sqrt(var + eps), shift = beta - mean * scale."""
    scale = weight / torch.sqrt(var + eps)
    return scale, bias - mean * scale


class BNAffine(nn.Module):
    """A BN layer at inference, written as what it is: a per-channel affine map y = x * scale + shift.

    Built from (gamma, beta, running_mean, running_var, eps). trainable=True: scale and shift are
    parameters, initialised from the pretrained statistics and trained directly (no batch statistics
    ever); trainable=False: they are buffers (what torchvision.ops.FrozenBatchNorm2d computes).
    The original BN values are kept as buffers (bn_weight, bn_bias, bn_running_mean, bn_running_var,
    bn_num_batches_tracked) so `to_bn` gives the original layer back exactly if scale/shift are untouched.
    """

    def __init__(self, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
                 eps: float = 1e-5, trainable: bool = True):
        super().__init__()
        self.num_features, self.eps = running_mean.numel(), float(eps)
        self.bn_class, self.bn_momentum, self.bn_affine = nn.BatchNorm2d, 0.1, True  # from_bn overwrites
        originals = {"bn_weight": weight, "bn_bias": bias,
                     "bn_running_mean": running_mean, "bn_running_var": running_var}
        for name, value in originals.items():
            self.register_buffer(name, value.detach().clone())
        self.register_buffer("bn_num_batches_tracked", torch.tensor(0, dtype=torch.long))
        scale, shift = _scale_shift(self.bn_weight, self.bn_bias, self.bn_running_mean, self.bn_running_var, self.eps)
        if trainable:
            self.scale, self.shift = nn.Parameter(scale), nn.Parameter(shift)
        else:
            self.register_buffer("scale", scale)
            self.register_buffer("shift", shift)

    @classmethod
    def from_bn(cls, bn: _BatchNorm, trainable: bool = True) -> "BNAffine":
        """The BNAffine computing what `bn` computes in eval mode (its running statistics, not the batch's)."""
        if not isinstance(bn, _BatchNorm):
            raise TypeError(f"expected a BatchNorm layer, got {type(bn).__name__}")
        if bn.running_mean is None:
            raise ValueError("this BN layer has track_running_stats=False: it always uses batch statistics, "
                             "so there is no fixed affine map to convert it to; leave it as it is, or build it "
                             "with track_running_stats=True and compute statistics (ftcourse.adabn) first")
        ones, zeros = torch.ones_like(bn.running_var), torch.zeros_like(bn.running_mean)
        weight = bn.weight if bn.affine else ones
        bias = bn.bias if bn.affine else zeros
        layer = cls(weight, bias, bn.running_mean, bn.running_var, bn.eps, trainable)
        layer.bn_class, layer.bn_momentum, layer.bn_affine = type(bn), bn.momentum, bn.affine
        if bn.num_batches_tracked is not None:
            layer.bn_num_batches_tracked.copy_(bn.num_batches_tracked)
        return layer.to(bn.running_mean.device)

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # channels on dim 1, as in BN: (N, C), (N, C, L), (N, C, H, W)
        return x * self.scale.view(shape) + self.shift.view(shape)

    def changed(self) -> bool:
        """True if scale/shift differ from the values computed from the stored BN (e.g. after training)."""
        scale, shift = _scale_shift(self.bn_weight, self.bn_bias, self.bn_running_mean, self.bn_running_var, self.eps)
        return not (torch.equal(scale, self.scale) and torch.equal(shift, self.shift))

    def to_bn(self) -> _BatchNorm:
        """An eval-mode BN layer with the same map: the original one if unchanged, else a BN with mean=0, var=1.

        After training, the map x * scale + shift is written as BN with running_mean=0, running_var=1,
        the same eps, weight = scale * sqrt(1 + eps) and bias = shift: (x - 0) / sqrt(1 + eps) * weight + bias.
        """
        changed = self.changed()
        bn = self.bn_class(self.num_features, eps=self.eps, momentum=self.bn_momentum, affine=self.bn_affine or changed)
        bn = bn.to(device=self.scale.device, dtype=self.scale.dtype)
        with torch.no_grad():
            if changed:
                bn.weight.copy_(self.scale * math.sqrt(1 + self.eps))
                bn.bias.copy_(self.shift)
            else:
                bn.running_mean.copy_(self.bn_running_mean)
                bn.running_var.copy_(self.bn_running_var)
                bn.num_batches_tracked.copy_(self.bn_num_batches_tracked)
                if bn.affine:
                    bn.weight.copy_(self.bn_weight)
                    bn.bias.copy_(self.bn_bias)
        for p in bn.parameters():
            p.requires_grad_(self.scale.requires_grad)
        return bn.eval()

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, trainable={isinstance(self.scale, nn.Parameter)}"


def _replace(model: nn.Module, wanted: Callable[[nn.Module], bool],
             make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Swap every submodule for which wanted(m) is true by make(m), in place; returns the (new, if root) model."""
    if wanted(model):
        return make(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if wanted(child):
                setattr(parent, name, make(child))
    return model


def bn_to_affine(model: nn.Module, trainable: bool = True) -> nn.Module:
    """Replace every BN layer (1d/2d/3d) by its BNAffine, in place; outputs equal model.eval()'s.

    A model without BN layers comes back unchanged (bn_report shows zero layers). Returns the model
    (a new BNAffine if `model` itself is a BN layer).
    """
    return _replace(model, lambda m: isinstance(m, _BatchNorm), lambda m: BNAffine.from_bn(m, trainable))


def affine_to_bn(model: nn.Module, freeze_stats: bool = True) -> nn.Module:
    """Replace every BNAffine by a BN layer computing the same map (BNAffine.to_bn), in place.

    With freeze_stats=True the new BN layers are pinned in eval mode (freeze_bn_stats), so they keep
    computing the affine map after model.train(), as the BNAffine did. Returns the model.
    """
    def make(m: nn.Module) -> nn.Module:
        bn = m.to_bn()
        if freeze_stats:
            freeze_bn_stats(bn)
        return bn
    return _replace(model, lambda m: isinstance(m, BNAffine), make)


def bn_scale_shift(m: nn.Module) -> tuple[Tensor, Tensor]:
    """The per-channel (scale, shift) a BN layer, BNAffine or FrozenBatchNorm2d applies at inference."""
    if isinstance(m, BNAffine):
        return m.scale.detach(), m.shift.detach()
    if not isinstance(m, (_BatchNorm, FrozenBatchNorm2d)):
        raise TypeError(f"expected a BatchNorm layer, BNAffine or FrozenBatchNorm2d, got {type(m).__name__}")
    if m.running_mean is None:
        raise ValueError("this BN layer has track_running_stats=False: it has no fixed inference map")
    weight = m.weight.detach() if m.weight is not None else torch.ones_like(m.running_var)
    bias = m.bias.detach() if m.bias is not None else torch.zeros_like(m.running_mean)
    return _scale_shift(weight, bias, m.running_mean, m.running_var, m.eps)


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """A new conv computing bn(conv(x)) in eval mode: w' = w * scale, b' = (b - mean) * scale + beta.

    Works for Conv1d/2d/3d (any stride, padding, dilation, groups) followed by a BN layer, BNAffine or
    FrozenBatchNorm2d; the inputs are not modified. Same maths as torch.nn.utils.fusion.fuse_conv_bn_eval.
    """
    if not isinstance(conv, _CONVS):
        raise TypeError(f"expected nn.Conv1d/2d/3d, got {type(conv).__name__}")
    scale, shift = bn_scale_shift(bn)
    if scale.numel() != conv.out_channels:
        raise ValueError(f"the BN has {scale.numel()} channels but the conv has {conv.out_channels} output channels")
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    folded = copy.deepcopy(conv)
    per_out_channel = (-1,) + (1,) * (conv.weight.dim() - 1)
    folded.weight = nn.Parameter(conv.weight.detach() * scale.view(per_out_channel), conv.weight.requires_grad)
    folded.bias = nn.Parameter(bias * scale + shift, conv.weight.requires_grad)  # = (b - mean) * scale + beta
    return folded


_RESNET_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _fold_pairs(model: nn.Module) -> list[tuple[str, nn.Module, str, str]]:
    """(parent name, parent, conv name, bn name) where the conv's output goes only into the BN.

    Known from the code, not guessed from names: torchvision's ResNet/BasicBlock/Bottleneck (conv1->bn1,
    conv2->bn2, conv3->bn3) and consecutive children of a plain nn.Sequential (downsample, VGG, MobileNet,
    EfficientNet, RegNet ...).
    """
    pairs = []
    for parent_name, parent in model.named_modules():
        if type(parent) in (ResNet, BasicBlock, Bottleneck):
            candidates = _RESNET_PAIRS
        elif isinstance(parent, nn.Sequential) and type(parent).forward is nn.Sequential.forward:
            names = list(parent._modules)
            candidates = tuple(zip(names, names[1:]))
        else:
            continue
        for conv_name, bn_name in candidates:
            if _foldable(getattr(parent, conv_name, None), getattr(parent, bn_name, None)):
                pairs.append((parent_name, parent, conv_name, bn_name))
    return pairs


def _foldable(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    """A (non-transposed) conv followed by a BN with running statistics, or a BNAffine, of matching width."""
    if not isinstance(conv, _CONVS) or not isinstance(bn, (_BatchNorm, BNAffine)):
        return False
    has_map = isinstance(bn, BNAffine) or bn.running_mean is not None
    return has_map and bn.num_features == conv.out_channels


def fold_bn(model: nn.Module, return_report: bool = False):
    """A new eval-mode model with each BN folded into the conv before it (the input model is untouched).

    One way only: the folded model is for inference. BN layers with no conv right before them (e.g.
    DenseNet's pre-activation BN) become frozen BNAffine layers. With return_report=True, returns
    (model, {"folded": [bn names], "frozen_affine": [bn names]}).
    Folding always uses the running statistics, whatever mode the model is in: the result computes
    what model.eval() computes (a model in train mode is folded as if in eval mode; its mode is not
    changed). A model without BN layers (or one folded already) comes back as an unchanged eval-mode
    copy with an empty report. BN layers without running statistics (track_running_stats=False)
    cannot be folded: ValueError.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_bn takes an nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model).eval()
    folded = []
    for parent_name, parent, conv_name, bn_name in _fold_pairs(model):
        setattr(parent, conv_name, fold_conv_bn(getattr(parent, conv_name), getattr(parent, bn_name)))
        setattr(parent, bn_name, nn.Identity())
        folded.append(f"{parent_name}.{bn_name}".lstrip("."))
    leftover = [name for name, _ in bn_modules(model)]
    model = bn_to_affine(model, trainable=False).eval()
    report = {"folded": folded, "frozen_affine": leftover}
    return (model, report) if return_report else model


def _inputs(batch) -> Tensor:
    """The images of a batch: the tensor itself, or the first item of an (x, y) tuple/list."""
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise TypeError(f"the loader must yield tensors or (x, y) tuples, got {type(batch).__name__}")
    return batch


def adabn(model: nn.Module, loader: Iterable, device=None, max_batches: int | None = None,
          momentum: float | None = None) -> nn.Module:
    """AdaBN (Li et al. 2016): recompute every BN layer's running statistics on unlabelled target images.

    Only statistics change: BN layers run in train mode, every other module in eval mode, under
    torch.no_grad(); momentum=None averages all batches equally. Modes, momentum and freeze_bn_stats
    pins are restored afterwards. The loader yields tensors or (x, y) tuples. Returns the model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"adabn takes an nn.Module, got {type(model).__name__}")
    layers = [m for _, m in bn_modules(model) if m.running_mean is not None]
    if not layers:
        raise ValueError("the model has no BN layers with running statistics: nothing for AdaBN to recompute")
    if max_batches is not None:
        max_batches = require_int("max_batches", max_batches, low=1, expected="a positive number of batches or None")
    batches = iter(loader)
    first = next(batches, None)
    if first is None:
        raise ValueError("the loader yielded no batches: AdaBN needs some target images, e.g. "
                         "ftcourse.make_loader(x_target, y, batch_size=64)")
    batches = itertools.islice(itertools.chain([first], batches), max_batches)
    device = device if device is not None else next(itertools.chain(model.parameters(), model.buffers())).device
    modes = {m: m.training for m in model.modules()}
    saved = [(m, m.momentum, bn_stats_frozen(m)) for m in layers]
    try:
        model.eval()
        for m in layers:
            unfreeze_bn_stats(m)
            m.reset_running_stats()
            m.momentum = momentum
            m.train()
        with torch.no_grad():
            for batch in batches:
                model(_inputs(batch).to(device))
    finally:
        for m, old_momentum, pinned in saved:
            m.momentum = old_momentum
            if pinned:
                freeze_bn_stats(m)
        for m, mode in modes.items():
            m.training = mode
    return model


def bn_state(m: nn.Module) -> str:
    """Which BN state a layer is in: batch-stats, frozen-stats, frozen-affine, trainable-affine or eval.

    "eval" means in eval mode but not pinned: the next model.train() puts it back to batch statistics.
    """
    if isinstance(m, BNAffine):
        return "trainable-affine" if m.scale.requires_grad else "frozen-affine"
    if isinstance(m, FrozenBatchNorm2d):
        return "frozen-affine"
    if not isinstance(m, _BatchNorm):
        raise TypeError(f"{type(m).__name__} is not a BN layer (BatchNorm, BNAffine or FrozenBatchNorm2d)")
    if m.training or m.running_mean is None:
        return "batch-stats"
    if not bn_stats_frozen(m):
        return "eval"
    trainable = any(p.requires_grad for p in m.parameters(recurse=False))
    return "frozen-stats" if trainable else "frozen-affine"


def bn_report(model: nn.Module) -> dict[str, int]:
    """How many BN-like layers are in each state (all states listed, zeros included)."""
    counts = dict.fromkeys(BN_STATES, 0)
    for m in model.modules():
        if isinstance(m, (_BatchNorm, BNAffine, FrozenBatchNorm2d)):
            counts[bn_state(m)] += 1
    return counts
