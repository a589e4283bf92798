"""fastai 2.8's one call, `Learner.fine_tune`, in plain PyTorch: `fastai_fine_tune(task)`, and its schedule.

`FastaiOneCycle` is fastai's `fit_one_cycle` schedule (learning rate and beta1/momentum, cosine warm-up
and annealing) on any torch optimizer; `fastai_phase` builds one phase (optimizer + schedule) the way
`Learner.fit_one_cycle` does. The file:line quotes from fastai 2.8.12 that each default follows are in
`tests/unit/test_fastai_schedule.py`, beside the test that checks them; `benchmarks/fastai_schedule_check.py`
compares the whole call with real fastai (a side environment).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .data import Task, make_loader
from .groups import freeze_to, layer_groups
from .models import fresh_model
from .optim import param_groups
from .recipes import DEFAULTS
from .runtime import seed_everything
from .train import evaluate, fit

__all__ = ["FASTAI_MOMS", "FASTAI_GROUPS", "fastai_cos", "FastaiOneCycle", "fastai_phase", "fastai_fine_tune"]

FASTAI_MOMS = (0.95, 0.85, 0.95)  # beta1 at the start, peak-lr point and end of each cycle
FASTAI_GROUPS = 3  # vision_learner's split of a torchvision ResNet: [stem..layer2], [layer3, layer4], head


def fastai_cos(pct_start: float, start: float, middle: float, end: float, pos: float) -> float:
    """fastai's combined_cos(pct_start, start, middle, end)(pos): cosine start->middle until pct_start, then ->end."""
    if pos >= 1:  # the cycle's end (fastai never steps there; with pct_start=1 its formula gives 0/0)
        return end
    if pos < pct_start:
        a, b, t = start, middle, pos / pct_start
    else:
        a, b, t = middle, end, (pos - pct_start) / (1 - pct_start)
    return a + (1 + math.cos(math.pi * (1 - t))) * (b - a) / 2


class FastaiOneCycle:
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
        mom = fastai_cos(self.pct, *self.moms, pos)
        for g, peak in zip(self.opt.param_groups, self.peaks):
            g["lr"] = fastai_cos(self.pct, peak / self.div, peak, peak / self.div_final, pos)
            if "betas" in g:
                g["betas"] = (mom, g["betas"][1])
            else:
                g["momentum"] = mom


def fastai_phase(model: nn.Module, groups, lr, n_steps: int, pct_start: float, div: float, wd: float = 0.01,
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
    return optimizer, FastaiOneCycle(optimizer, n_steps, pct_start, div)


def fastai_fine_tune(task: Task, seed: int = 0, epochs: int = 28, base_lr: float = 2e-3, freeze_epochs: int = 1,
                     lr_mult: float = 100, pct_start: float = 0.3, div: float = 5.0,
                     batch_size: int = DEFAULTS.batch_size,
                     model: nn.Module | None = None, progress: bool = False, device=None, *, wd: float = 0.01,
                     train_bn: bool = True, opt: str = "adam", augment=None) -> tuple[nn.Module, float]:
    """fastai 2.8's `Learner.fine_tune(epochs, base_lr, ...)` with plain PyTorch; returns (model, test accuracy).

    Three layer groups (fastai's resnet split, `layer_groups(model, FASTAI_GROUPS)`). Phase 1: body frozen except
    its BatchNorm layers (trainable, statistics updating), one cycle of `freeze_epochs` at slice(base_lr)
    (body base_lr/10, head base_lr), pct_start 0.99, div 25. Phase 2: everything trainable, a new
    optimizer here, one cycle of `epochs` at slice(base_lr/2/lr_mult, base_lr/2), `pct_start`, `div`.
    AdamW(betas=(0.95, 0.99), eps=1e-5), decay `wd` except BN and biases; beta1 cycled 0.95-0.85-0.95.
    An epoch is len(train) // batch_size steps (fastai drops the last incomplete batch): 250 images,
    batch 32 -> 7, so the default 1 + 28 epochs make 203 steps. Not reproduced: vision_learner's own
    head (the model's head is kept), fastai's shuffling RNG, and its optimizer state across the phases (fastai's
    fit_one_cycle keeps the optimizer, reset_opt=False, so the head's and BN's AdamW moments from phase 1 carry
    into phase 2; here phase 2 starts a new AdamW, which loses the history of the 1-15 phase-1 steps of the
    course's tasks). benchmarks/fastai_schedule_check.py compares with real fastai. Ablations (not fastai): wd,
    train_bn=False (a true freeze in phase 1), opt="sgd", freeze_epochs=0 (no phase 1; base_lr is halved all the
    same). augment(x) changes every training batch of both phases (e.g. ftcourse.RandomShift(4, seed)), as fastai's
    batch transforms do.
    """
    if len(task.y_train) < batch_size:
        raise ValueError(f"{len(task.y_train)} training images and batch_size={batch_size}: fastai drops the last "
                         "incomplete batch, so an epoch would have no step; use a smaller batch_size")
    seed_everything(seed)
    if model is None:
        model = fresh_model(task.num_classes, seed=None)
    train = make_loader(task.x_train, task.y_train, batch_size, shuffle=True, seed=seed, drop_last=True)
    groups = layer_groups(model, FASTAI_GROUPS)
    phases = [  # (epochs, first trainable group, rates, pct_start, div)
        (freeze_epochs, -1, slice(base_lr), 0.99, 25.0),
        (epochs, 0, slice(base_lr / 2 / lr_mult, base_lr / 2), pct_start, div),
    ]
    for n_epochs, first, lr, pct, div_ in phases:
        freeze_to(model, first, groups=groups, train_bn=train_bn)
        if n_epochs > 0:
            steps = n_epochs * len(train)
            optimizer, schedule = fastai_phase(model, groups, lr, steps, pct, div_, wd=wd, opt=opt)
            fit(model, train, steps=steps, optimizer=optimizer, schedule=None, on_step=schedule, progress=progress,
                device=device, augment=augment)
    return model, evaluate(model, (task.x_test, task.y_test), device=device)


