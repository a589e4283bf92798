"""The course backbone (a real torchvision ResNet), torchvision backbones, heads and safe checkpoints."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet
from torchvision.models.resnet import BasicBlock

from .files import ChecksumError, atomic_path, read_manifest, sha256_file, verified_path
from .inputs import require_int
from .runtime import get_device

__all__ = [
    "BACKBONE_WIDTHS", "course_backbone", "load_pretrained", "torchvision_backbone", "find_head",
    "replace_head", "split_head", "fresh_model", "save_checkpoint", "load_checkpoint",
]

BACKBONE_WIDTHS = (32, 64, 128, 256)


def _init_like_torchvision(module: nn.Module) -> None:
    """The initialisation torchvision's ResNet.__init__ applies, for modules we rebuilt."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def course_backbone(num_classes: int = 5, widths=BACKBONE_WIDTHS, blocks=(1, 1, 1, 1)) -> ResNet:
    """A torchvision `ResNet` of BasicBlocks sized for 32x32 images.

    Same module names as resnet18-152 (conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc), so
    every helper written for it runs on torchvision's models. Changes: a 3x3 stride-1 stem and
    narrower stages (`widths`), one block per stage by default.
    """
    if len(widths) != 4 or len(blocks) != 4:
        raise ValueError("widths and blocks need one entry per stage (4 each)")
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
    model.bn1 = nn.BatchNorm2d(widths[0])
    model.inplanes = widths[0]
    model.layer1 = model._make_layer(BasicBlock, widths[0], blocks[0])
    model.layer2 = model._make_layer(BasicBlock, widths[1], blocks[1], stride=2)
    model.layer3 = model._make_layer(BasicBlock, widths[2], blocks[2], stride=2)
    model.layer4 = model._make_layer(BasicBlock, widths[3], blocks[3], stride=2)
    model.fc = nn.Linear(widths[3], num_classes)
    _init_like_torchvision(model)
    return model


def save_checkpoint(state_dict: dict, path: str | os.PathLike) -> str:
    """Save tensors only (loadable with weights_only=True), atomically; return the file's sha256.

    Written to a temporary file next to `path`, then moved onto it (files.atomic_path): an
    interrupted save leaves the previous checkpoint intact, never a truncated one.
    """
    if isinstance(state_dict, nn.Module):
        raise TypeError("save_checkpoint takes a state dict, not a model: save_checkpoint(model.state_dict(), path)")
    if not isinstance(state_dict, dict):
        raise TypeError(f"save_checkpoint takes a state dict (model.state_dict()), got {type(state_dict).__name__}")
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"checkpoint values must be tensors; not tensors: {bad[:5]}")
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp)
        digest = sha256_file(tmp)
    return digest


_RESAVE = "save it again with ftcourse.save_checkpoint(model.state_dict(), path)"


def _gist(exc: Exception) -> str:
    """The first sentence of torch.load's error: the unpickler's reason if it gave one (not its advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    reason = next((line for line in lines if line.startswith("WeightsUnpickler error:")), lines[0])
    return re.sub(r"\x1b\[[0-9;]*m", "", reason).split(". ")[0][:200]  # its first sentence


def load_checkpoint(path: str | os.PathLike, sha256: str | None = None, model: nn.Module | None = None) -> dict:
    """Load a state dict safely: sha256 checked first (if given), then torch.load(weights_only=True).

    With `model`, the state dict must fit it (same parameter names and shapes; a ValueError says what
    differs) and is loaded into it. Returns the state dict.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if sha256 is not None:
        digest = sha256_file(path)
        if digest != sha256:
            raise ChecksumError(f"checkpoint {path} has sha256 {digest[:12]}..., expected {sha256[:12]}...: "
                                "refusing to load a changed or corrupted file; restore the original file or "
                                f"{_RESAVE} and use the sha256 it returns")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, arbitrary pickled objects, not a checkpoint at all
        raise ChecksumError(f"{path} is not a loadable tensor checkpoint ({type(exc).__name__}: {_gist(exc)}); "
                            f"only tensors are loaded, never pickled objects: {_RESAVE}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ChecksumError(f"{path} does not hold a state dict of tensors: {_RESAVE}")
    if model is not None:
        _check_fits(state, model, path)
        model.load_state_dict(state)
    return state


def _check_fits(state: dict, model: nn.Module, source) -> None:
    """A ValueError naming the difference if `state` is not a state dict for this model."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return
    head = find_head(model)[0] if any(isinstance(m, nn.Linear) for m in model.modules()) else None
    if not (missing or unexpected) and {k.rpartition(".")[0] for k in shapes} == {head}:
        saved, wanted = len(state[f"{head}.weight"]), len(own[f"{head}.weight"])
        raise ValueError(f"{source} has a head for {saved} classes, the model one for {wanted}: build the model "
                         f"with num_classes={saved} (e.g. course_backbone(num_classes={saved})) to load it, then "
                         f"replace_head(model, {wanted}) if you need {wanted} classes")
    differences = ([f"missing {missing[:3]}"] if missing else []) + (
        [f"unexpected {unexpected[:3]}"] if unexpected else []) + [
        f"{k} is {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model" for k in shapes[:3]]
    raise ValueError(f"{source} is a checkpoint of another architecture than this {type(model).__name__} "
                     f"({'; '.join(differences)}): load it into the architecture it was saved from")


def load_pretrained(num_classes: int | None = None) -> ResNet:
    """The course's pretrained backbone (digits 0-4), checksum-verified; new head if num_classes given."""
    if num_classes is not None:
        _check_num_classes(num_classes)
    info = read_manifest().get("backbone")
    if not isinstance(info, dict):
        raise ChecksumError("data/MANIFEST.json has no 'backbone' entry: restore it with `git checkout -- data/` "
                            "(or run `ftcourse pretrain`)")
    model = course_backbone(num_classes=info["num_classes"], widths=tuple(info["widths"]), blocks=tuple(info["blocks"]))
    model.load_state_dict(load_checkpoint(verified_path(info["file"])))
    if num_classes is not None:
        replace_head(model, num_classes)
    return model


def fresh_model(num_classes: int = 5, seed: int | None = 0, device=None) -> ResNet:
    """The pretrained backbone with a new `num_classes` head drawn with `seed`: the same model every call.

    seed=None draws the head from torch's global generator (a recipe that seeded everything itself).
    """
    _check_num_classes(num_classes)
    get_device(device)  # a bad device fails before the backbone is loaded
    model = load_pretrained()
    replace_head(model, num_classes, seed=seed)
    return model.to(get_device(device))


def torchvision_backbone(name: str = "resnet18", weights=None, num_classes: int | None = None) -> nn.Module:
    """Any torchvision classification model by name; `weights` as in torchvision ("DEFAULT", an enum, None).

    Real mode: `torchvision_backbone("resnet50", weights="DEFAULT", num_classes=10)`. Weights come from
    torchvision's cache ($TORCH_HOME/hub/checkpoints) if present, else are downloaded once.
    """
    from torchvision import models

    if name not in models.list_models(module=models):
        raise ValueError(f"unknown torchvision model {name!r}; e.g. resnet18, resnet50, efficientnet_b0, convnext_tiny")
    model = models.get_model(name, weights=weights)
    if num_classes is not None:
        replace_head(model, num_classes)
    return model


def _check_num_classes(num_classes) -> int:
    return require_int("num_classes", num_classes, low=1, expected="a positive int", hint="e.g. task.num_classes")


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """(qualified name, module) of the classification head: the last nn.Linear in the model."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head; replace its head by hand")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int, seed: int | None = None) -> nn.Linear:
    """Put a new randomly initialised nn.Linear head (num_classes outputs) in place; return it."""
    num_classes = _check_num_classes(num_classes)
    name, old = find_head(model)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    model.set_submodule(name, new)
    return new


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """(body, head): a copy of the model whose head is nn.Identity (outputs features), and the head."""
    name, head = find_head(model)
    body = copy.deepcopy(model)
    body.set_submodule(name, nn.Identity())
    return body, head
