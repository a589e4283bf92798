"""Training recipes: the baselines (scratch, linear probe, fine-tune), LP-FT, gradual unfreezing, short probes.

Every recipe trains for a fixed number of optimizer steps (`fit(steps=...)`), seeds itself, and runs
on `device` (default: ftcourse.get_device(), i.e. $FTCOURSE_DEVICE or the CPU). `run_frozen_steps`
and `run_lr_steps` are the few-step runs behind the explorer widgets; they work without ipywidgets.
"""
from __future__ import annotations

import copy
import math
import numbers
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import models as tvm

from .cost import backward_graph_size
from .data import Task, make_loader, shifted_test_set
from .grads import GradientRecorder, snapshot, update_ratios
from .groups import (N_GROUPS, freeze, freeze_to, layer_groups, model_units, short_group_names, unfreeze,
                     unit_groups, unit_names)
from .models import course_backbone, find_head, load_pretrained, replace_head
from .optim import make_optimizer, param_groups
from .runtime import get_device, seed_everything
from .train import evaluate, fit, precompute_features

__all__ = ["RECIPE_DEFAULTS", "OOD_SHIFTS", "train_from_scratch", "linear_probe", "fine_tune", "lp_ft",
           "gradual_unfreeze", "shifted_accuracy", "compare_baselines", "run_frozen_steps", "run_lr_steps",
           "FASTAI_MOMS", "fastai_fine_tune", "surgical_blocks", "surgical_fine_tune"]

OOD_SHIFTS = ("contrast", "colour", "blur")  # out-of-distribution test sets for LP vs FT, at severity 0.5

RECIPE_DEFAULTS = dict(steps=200, batch_size=32, weight_decay=5e-4,
                       lr_scratch=0.05, lr_probe=0.05, lr_finetune=0.01)


def train_from_scratch(task: Task, seed: int = 0, steps: int = 200, lr: float = 0.05, batch_size: int = 32,
                       progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """A randomly initialised course backbone trained on the task; returns (model, test accuracy)."""
    seed_everything(seed)
    model = course_backbone(num_classes=task.num_classes)
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    fit(model, train, steps=steps, device=device,
        optimizer=make_optimizer(model, lr=lr, weight_decay=RECIPE_DEFAULTS["weight_decay"]), progress=progress)
    return model, evaluate(model, test, device=device)


def linear_probe(task: Task, seed: int = 0, steps: int = 200, lr: float = 0.05, batch_size: int = 32,
                 model: nn.Module | None = None, progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """Pretrained body frozen, new head trained on cached features; returns (model with head, accuracy)."""
    seed_everything(seed)
    model = model if model is not None else load_pretrained()
    head = replace_head(model, task.num_classes)
    feats, labels = precompute_features(model, (task.x_train, task.y_train), device=device)
    loader = make_loader(feats, labels, batch_size=batch_size, shuffle=True, seed=seed)
    fit(head, loader, steps=steps, device=device,
        optimizer=make_optimizer(head, lr=lr, weight_decay=RECIPE_DEFAULTS["weight_decay"]), progress=progress)
    return model, evaluate(model, (task.x_test, task.y_test), device=device)


def fine_tune(task: Task, seed: int = 0, steps: int = 200, lr=0.01, batch_size: int = 32,
              model: nn.Module | None = None, optimizer=None, progress: bool = False,
              device=None) -> tuple[nn.Module, float]:
    """Every layer trained from the pretrained weights; returns (model, test accuracy).

    lr: one rate for all, or one per layer group (a list / np.array, input to output) or fastai's
    slice(lo, hi): discriminative rates through `param_groups`. Or pass your own optimizer.
    """
    seed_everything(seed)
    if model is None:
        model = load_pretrained()
        replace_head(model, task.num_classes)
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    wd = RECIPE_DEFAULTS["weight_decay"]
    if optimizer is not None:
        opt = optimizer
    elif isinstance(lr, numbers.Real):
        opt = make_optimizer(model, lr=lr, weight_decay=wd)
    else:
        opt = make_optimizer(param_groups(model, lr, weight_decay=wd))
    fit(model, train, steps=steps, optimizer=opt, device=device,
        progress=progress)
    return model, evaluate(model, test, device=device)


def lp_ft(task: Task, seed: int = 0, steps: int = 200, lr=0.01, lr_probe: float = 0.05, batch_size: int = 32,
          progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """Linear probe, then fine-tune everything from the warmed-up head (LP-FT, Kumar et al. 2022).

    Also the "two-stage" recipe: freeze the body and train the head, then unfreeze and train all
    layers at `lr` (one rate, or per group as in fine_tune). `steps` for each stage.
    """
    model, _ = linear_probe(task, seed, steps, lr_probe, batch_size, device=device)
    return fine_tune(task, seed, steps, lr, batch_size, model=model, progress=progress, device=device)


def gradual_unfreeze(task: Task, seed: int = 0, steps: int = 200, lr=0.01, n_groups: int = N_GROUPS, batch_size: int = 32,
                     progress: bool = False, device=None) -> tuple[nn.Module, float]:
    """ULMFiT's gradual unfreezing: head first, then one more layer group per stage; `steps` in all.

    lr: one rate or one per group (list / slice); each stage trains the unfrozen groups with their
    rates (a fresh one-cycle schedule per stage). Returns (model, test accuracy).
    """
    seed_everything(seed)
    model = load_pretrained()
    replace_head(model, task.num_classes)
    groups = layer_groups(model, n_groups)
    rates = [g["lr"] for g in param_groups(groups, lr)]  # one per group, validated
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    for first in range(n_groups - 1, -1, -1):
        freeze_to(model, first, groups=groups)
        opt = make_optimizer(param_groups(groups[first:], rates[first:], weight_decay=RECIPE_DEFAULTS["weight_decay"]))
        fit(model, train, steps=max(1, steps // n_groups), optimizer=opt, progress=progress, device=device)
    return model, evaluate(model, test, device=device)


def shifted_accuracy(model: nn.Module, task: Task, shifts=OOD_SHIFTS, severity: float = 0.5,
                     device=None) -> dict[str, float]:
    """Test accuracy on the target's test set under each shift (out of distribution), and their mean."""
    accs = {s: evaluate(model, shifted_test_set(task, s, severity), device=device) for s in shifts}
    accs["mean"] = statistics.fmean(accs.values())
    return accs


def compare_baselines(task: Task, seed: int = 0, steps: int = 200, device=None) -> dict[str, float]:
    """Test accuracy of scratch, linear probe and fine-tune on one task and seed."""
    return {
        "scratch": train_from_scratch(task, seed, steps, device=device)[1],
        "linear probe": linear_probe(task, seed, steps, device=device)[1],
        "fine-tune": fine_tune(task, seed, steps, device=device)[1],
    }


# ---------------------------------------------------------------- a few steps, measured (the explorers' runs)
def run_frozen_steps(model: nn.Module, task: Task, n: int, steps: int = 5, batch_size: int = 32, lr: float = 0.01,
                     train_bn: bool = False, seed: int = 0, device=None) -> dict:
    """Freeze the units below index `n` (freeze_to on one group per unit), train `steps` SGD steps, record gradients.

    Returns {"recorder", "names", "frozen", "step_ms" (median time between steps), "nodes" (backward
    graph of one step)}. The model is changed in place.
    """
    device = get_device(device)
    model.to(device)
    groups = unit_groups(model)
    freeze_to(model, n, groups=groups, train_bn=train_bn)
    loader = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed)
    xb, yb = next(iter(loader))
    nodes = backward_graph_size(F.cross_entropy(copy.deepcopy(model).train()(xb.to(device)), yb.to(device)))
    stamps = [time.perf_counter()]
    rec = GradientRecorder(model, groups=groups, names=unit_names(model))
    fit(model, loader, steps=steps, optimizer=make_optimizer(model, lr=lr), schedule=None, progress=False,
        device=device, on_step=lambda _: (rec.step(), stamps.append(time.perf_counter())))
    rec.remove()
    return {"recorder": rec, "names": rec.group_names, "frozen": rec.frozen,
            "step_ms": 1e3 * statistics.median(np.diff(stamps)), "nodes": nodes}


def _n_rates(lrs) -> int:
    """How many layer groups a rate specification asks for (a slice: N_GROUPS, fastai's default)."""
    return N_GROUPS if isinstance(lrs, slice) else int(np.asarray(lrs, dtype=float).size)


def run_lr_steps(model: nn.Module, task: Task, lrs, steps: int = 20, batch_size: int = 32, momentum: float = 0.9,
                 seed: int = 0, device=None) -> dict:
    """Train `steps` SGD steps (constant rates, no schedule) with one learning rate per layer group.

    lrs: one rate per group (list / np.array: the model is cut into len(lrs) groups) or slice(lo, hi)
    (N_GROUPS groups). Returns {"lrs", "names", "update_ratios" (||dW|| / ||W|| per group),
    "grad_norms" (median per group), "loss" (mean over the last pass), "accuracy" (test set)}.
    The model is changed in place.
    """
    device = get_device(device)
    model.to(device)
    groups = layer_groups(model, _n_rates(lrs))
    optimizer = make_optimizer(param_groups(groups, lrs, model=model), momentum=momentum)
    names = short_group_names(model, groups)
    before = snapshot(model)
    loader = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed)
    with GradientRecorder(model, groups=groups, names=names) as rec:
        hist = fit(model, loader, steps=steps, optimizer=optimizer, schedule=None, progress=False, device=device,
                   on_step=rec)
    return {"lrs": [g["lr"] for g in optimizer.param_groups], "names": names,
            "update_ratios": update_ratios(before, model, groups),
            "grad_norms": np.nanmedian(rec.as_array(), axis=0).tolist(), "loss": hist.loss[-1],
            "accuracy": evaluate(model, (task.x_test, task.y_test), device=device)}


# ---------------------------------------------------------------- fastai's one-call Learner.fine_tune, in plain PyTorch
# Quoted from fastai 2.8.12 (the PyPI wheel; fastcore 2.2.41), file:line:
#   callback/schedule.py:164-171  fine_tune(epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, pct_start=0.3, div=5.0):
#                                 freeze(); fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99); base_lr /= 2;
#                                 unfreeze(); fit_one_cycle(epochs, slice(base_lr/lr_mult, base_lr), pct_start, div)
#   callback/schedule.py:114-121  fit_one_cycle(div=25., div_final=1e5, ...): lr combined_cos(pct_start, lr_max/div,
#                                 lr_max, lr_max/div_final); mom combined_cos(pct_start, *moms)
#   callback/schedule.py:49, 84-86  sched_cos and combined_cos (cosine start->middle over pct_start, middle->end)
#   callback/schedule.py:96 + callback/core.py:89,97  set before each batch at pos = pct_train = i / (epochs * batches)
#   optimizer.py:233-245          Adam(mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True); steps at :138-141
#                                 (p *= 1 - lr*wd), :152-168 (dampened averages), :223-228 (debiased step) = torch AdamW
#   optimizer.py:57-61, fastcore basics.py:1325  slice(lo, hi): even_mults; slice(hi): hi/10 for all groups but the last
#   learner.py:113-123            Learner(opt_func=Adam, wd=None, wd_bn_bias=False, train_bn=True,
#                                 moms=(0.95,0.85,0.95))
#   learner.py:198-201 + torch_core.py:685-693  no decay on norm-layer params and biases; norm params stay trainable
#   learner.py:662-665            freeze_to / unfreeze clear the optimizer state (a fresh AdamW for the second phase)
#   vision/learner.py:122, 130, 142  torchvision resnets split as m[0][:6], m[0][6:], m[1:]: [conv1, bn1, relu, maxpool,
#                                 layer1, layer2], [layer3, layer4], head = ftcourse's layer_groups(model, 3)
#   data/core.py:264              the training DataLoader shuffles and drops its last incomplete batch
FASTAI_MOMS = (0.95, 0.85, 0.95)  # beta1 at the start, peak-lr point and end of each cycle


def _fastai_cos(pct_start: float, start: float, middle: float, end: float, pos: float) -> float:
    """fastai's combined_cos(pct_start, start, middle, end)(pos): cosine start->middle until pct_start, then ->end."""
    if pos >= 1:  # the cycle's end (fastai never steps there; with pct_start=1 its formula gives 0/0)
        return end
    if pos < pct_start:
        a, b, t = start, middle, pos / pct_start
    else:
        a, b, t = middle, end, (pos - pct_start) / (1 - pct_start)
    return a + (1 + math.cos(math.pi * (1 - t))) * (b - a) / 2


class _FastaiOneCycle:
    """fit_one_cycle's lr and beta1 (momentum for SGD) on a torch optimizer whose group lrs are the peaks.

    Sets step 0's values at once; fit's on_step(i) then sets the values of step i, at pos = i / n_steps.
    (torch's OneCycleLR is not the same: it peaks one step earlier and reaches the final rate at the
    last step, so with pct_start=0.99 the frozen phase's last step would run at ~0.)
    """

    def __init__(self, opt, n_steps: int, pct_start: float, div: float, div_final: float = 1e5, moms=FASTAI_MOMS):
        self.opt, self.n, self.pct, self.div, self.div_final, self.moms = opt, n_steps, pct_start, div, div_final, moms
        self.peaks = [g["lr"] for g in opt.param_groups]
        self(0)

    def __call__(self, step: int) -> None:
        pos = step / self.n
        mom = _fastai_cos(self.pct, *self.moms, pos)
        for g, peak in zip(self.opt.param_groups, self.peaks):
            g["lr"] = _fastai_cos(self.pct, peak / self.div, peak, peak / self.div_final, pos)
            if "betas" in g:
                g["betas"] = (mom, g["betas"][1])
            else:
                g["momentum"] = mom


def _fastai_phase(model: nn.Module, groups, lr, n_steps: int, pct_start: float, div: float, wd: float = 0.01,
                  opt: str = "adam"):
    """(optimizer, schedule) for one fit_one_cycle: AdamW (fastai's Adam) or SGD over the trainable params of `groups`.

    lr: fastai's slice; decay `wd` except on BN params and biases (wd_bn_bias=False).
    """
    dicts = param_groups(groups, lr, weight_decay=wd, bn_weight_decay=0.0, model=model)
    if opt == "adam":
        optimizer = torch.optim.AdamW(dicts, betas=(FASTAI_MOMS[0], 0.99), eps=1e-5)
    elif opt == "sgd":  # an ablation, not fastai's default: L2 decay, momentum cycled like beta1
        optimizer = torch.optim.SGD(dicts, momentum=FASTAI_MOMS[0])
    else:
        raise ValueError(f"opt must be 'adam' or 'sgd', got {opt!r}")
    return optimizer, _FastaiOneCycle(optimizer, n_steps, pct_start, div)


def fastai_fine_tune(task: Task, seed: int = 0, epochs: int = 28, base_lr: float = 2e-3, freeze_epochs: int = 1,
                     lr_mult: float = 100, pct_start: float = 0.3, div: float = 5.0, batch_size: int = 32,
                     model: nn.Module | None = None, progress: bool = False, device=None, *, wd: float = 0.01,
                     train_bn: bool = True, opt: str = "adam") -> tuple[nn.Module, float]:
    """fastai 2.8's `Learner.fine_tune(epochs, base_lr, ...)` with plain PyTorch; returns (model, test accuracy).

    Three layer groups (fastai's resnet split, `layer_groups(model, 3)`). Phase 1: body frozen except
    its BatchNorm layers (trainable, statistics updating), one cycle of `freeze_epochs` at slice(base_lr)
    (body base_lr/10, head base_lr), pct_start 0.99, div 25. Phase 2: everything trainable, a fresh
    optimizer, one cycle of `epochs` at slice(base_lr/2/lr_mult, base_lr/2), `pct_start`, `div`.
    AdamW(betas=(0.95, 0.99), eps=1e-5), decay `wd` except BN and biases; beta1 cycled 0.95-0.85-0.95.
    An epoch is len(train) // batch_size steps (fastai drops the last incomplete batch): 250 images,
    batch 32 -> 7, so the default 1 + 28 epochs make 203 steps. Not reproduced: vision_learner's own
    head (the model's head is kept) and fastai's shuffling RNG. benchmarks/fastai_schedule_check.py
    compares with real fastai. Ablations (not fastai): wd, train_bn=False (a true freeze in phase 1),
    opt="sgd", freeze_epochs=0 (no phase 1; base_lr is halved all the same).
    """
    if len(task.y_train) < batch_size:
        raise ValueError(f"{len(task.y_train)} training images and batch_size={batch_size}: fastai drops the last "
                         "incomplete batch, so an epoch would have no step; use a smaller batch_size")
    seed_everything(seed)
    if model is None:
        model = load_pretrained()
        replace_head(model, task.num_classes)
    train = DataLoader(TensorDataset(task.x_train, task.y_train), batch_size=batch_size, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(seed))
    groups = layer_groups(model, 3)
    phases = [  # (epochs, first trainable group, rates, pct_start, div)
        (freeze_epochs, -1, slice(base_lr), 0.99, 25.0),
        (epochs, 0, slice(base_lr / 2 / lr_mult, base_lr / 2), pct_start, div),
    ]
    for n_epochs, first, lr, pct, div_ in phases:
        freeze_to(model, first, groups=groups, train_bn=train_bn)
        if n_epochs > 0:
            steps = n_epochs * len(train)
            optimizer, schedule = _fastai_phase(model, groups, lr, steps, pct, div_, wd=wd, opt=opt)
            fit(model, train, steps=steps, optimizer=optimizer, schedule=None, on_step=schedule, progress=progress,
                device=device)
    return model, evaluate(model, (task.x_test, task.y_test), device=device)


# ---------------------------------------------------------------- surgical fine-tuning (Lee et al. 2023)
def surgical_blocks(model: nn.Module) -> list[list[nn.Module]]:
    """The body in blocks for surgical fine-tuning, input to output (the head is not a block).

    A ResNet's stem joins its first stage: [[conv1, bn1, relu, maxpool, layer1], [layer2], [layer3], [layer4]],
    the four blocks of Lee et al. Other families: one block per unit of `model_units` (the head left out).
    """
    body = model_units(model)[:-1]
    if isinstance(model, tvm.ResNet) and len(body) == 5:  # stem + 4 stages
        return [body[0] + body[1], *body[2:]]
    return body


def surgical_fine_tune(task: Task, block, seed: int = 0, steps: int = 200, lr: float = 0.01, batch_size: int = 32,
                       model: nn.Module | None = None, progress: bool = False,
                       device=None) -> tuple[nn.Module, float]:
    """Train one block of the body alone, everything else frozen (head and BN statistics included); (model, accuracy).

    block: an index into `surgical_blocks(model)` (0 the first block, -1 the last) or "all" (every layer
    trains: the baseline). `model` is the start point and must already have a head for the task's labels:
    the pretrained head when only the inputs shifted, a linear probe's head for new labels. Default: the
    linear probe of `task` (ftcourse.linear_probe, same seed). SGD at one rate, the course's one-cycle.
    Lee et al. 2023 ("Surgical fine-tuning"): for a shift of the inputs the first block is the one to
    train, for a change of the labels the last.
    """
    blocks_of = None if model is None else surgical_blocks(model)
    n = len(blocks_of) if blocks_of is not None else 4
    if not (block == "all" or (isinstance(block, int) and not isinstance(block, bool) and -n <= block < n)):
        raise ValueError(f"block must be 'all' or a block index from {-n} to {n - 1} (0 = first, -1 = last), "
                         f"got {block!r}")
    if model is None:
        model, _ = linear_probe(task, seed=seed, device=device)
    elif find_head(model)[1].out_features != task.num_classes:
        raise ValueError(f"the model's head has {find_head(model)[1].out_features} outputs and {task.name!r} has "
                         f"{task.num_classes} classes: warm a head for the task first (ftcourse.linear_probe)")
    seed_everything(seed)
    blocks = surgical_blocks(model)
    if block == "all":
        unfreeze(model)
    else:
        freeze(model)
        unfreeze(blocks[block])
    opt = make_optimizer(model, lr=lr, weight_decay=RECIPE_DEFAULTS["weight_decay"])
    train, test = task.loaders(batch_size=batch_size, seed=seed)
    fit(model, train, steps=steps, optimizer=opt, device=device, progress=progress)
    unfreeze(model)  # hand back a model that trains and evaluates normally
    return model, evaluate(model, test, device=device)

