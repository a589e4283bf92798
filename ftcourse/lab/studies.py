"""Multi-seed studies behind the course's claims: each function measures one seed; the results files hold 3 or 10.

A lesson trains one seed live and prints the table over seeds from `data/results/<study>.json`
(`ftcourse.lab.shipped.read_results`), written by `python benchmarks/seed_studies.py`
(minutes on 2 cores). The claim tests
call the same functions, assert each claim on every seed, and compare their numbers with the shipped
file, so the file cannot drift from the code. Every choice (a rate, a policy) is made on the task's
validation split; the test set reports.
"""
from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..autopilot import RecipeConfig, choose_rate, run_recipe
from ..bn import adabn, bn_to_affine, freeze_bn_stats
from ..data import (RandomShift, Task, far_task, make_loader, near_task, relabelled_source_task, shifted_source_task,
                    target_task)
from ..fastai_style import fastai_fine_tune
from ..features import representation_change
from ..grads import body_gradient, snapshot, update_ratios
from ..groups import freeze_to, layer_groups, params_of
from ..models import fresh_model, load_pretrained
from ..optim import make_optimizer, param_groups
from ..recipes import (DEFAULTS, fine_tune, freeze_then_discriminative, gradual_unfreeze, linear_probe, lp_ft,
                       shifted_accuracy, surgical_fine_tune, train_from_scratch)
from ..runtime import seed_everything
from ..train import evaluate, fit, predict
from .unseen_tasks import UNSEEN_TASKS, unseen_task

__all__ = ["DATA_SIZES", "BN_BATCH_SIZES", "warm_up_study", "data_size_study", "RATES_RUNS", "rates_study",
           "GROUP_RATE_SETUPS", "NOISE_SCALES", "group_rates_study", "group_sensitivity", "TUNE_GRID", "FAMILIES",
           "tuned_families_study", "choose_tops", "TIME_RATES", "TIME_STEPS", "TIME_EVERY", "time_to_accuracy_study",
           "bn_policy_study",
           "adabn_study", "SHIFTED_TARGETS", "SHIFTED_BATCH", "shifted_target_study",
           "RECIPE_TASKS", "NEW_TASK_SHOTS",
           "FASTAI_BASE_LR", "fastai_epochs", "STUDIES", "ABLATION_TASKS", "ABLATION_SHOTS", "ABLATION_ARMS",
           "ABLATION_BASELINES", "ADAMW_RATES", "ABLATION_BEFORE", "recipe_ablation_study", "IN_PROGRESS",
           "SURGICAL_LEE_TASKS", "SURGICAL_LEE_SETUPS", "SURGICAL_RATES", "surgical_block", "surgical_tuned_study",
           "UNSEEN_ARMS", "unseen_study", "FLOORS", "recipe_floor_study", "LENGTH_BASE", "LENGTH_ARMS",
           "recipe_length_study"]

DATA_SIZES = (1, 10, 50, 250)  # images per class; 250 is the whole training pool
BN_BATCH_SIZES = (2, 4, 8, 32)


def _val(model: nn.Module, task: Task) -> float:
    return evaluate(model, (task.x_val, task.y_val))


# ---------------------------------------------------------------- warming up the head
def warm_up_study(seed: int) -> dict[str, float]:
    """Random vs warmed-up head (gradient into the body), and linear probe / fine-tune / LP-FT in and out of
    distribution (validation accuracy chooses, test accuracy reports)."""
    task = target_task(shots=50, seed=seed)
    x, y = next(iter(make_loader(task.x_train, task.y_train, batch_size=32, shuffle=True, seed=seed)))
    probe, acc_lp = linear_probe(task, seed=seed)
    out = {}
    for label, model in [("random", fresh_model(seed=seed)), ("warmed", copy.deepcopy(probe))]:
        g = body_gradient(model.train(), x, y)
        out |= {f"loss {label}": g["loss"], f"head norm {label}": g["head_weight_norm"],
                f"body grad {label}": g["body_grad_norm"]}
    finetuned, acc_ft = fine_tune(task, seed=seed)
    lpft, acc_lpft = lp_ft(task, seed=seed)
    pretrained = load_pretrained(5)
    for label, model, acc in [("LP", probe, acc_lp), ("FT", finetuned, acc_ft), ("LP-FT", lpft, acc_lpft)]:
        out[f"val {label}"], out[f"test {label}"] = _val(model, task), acc
        out[f"OOD {label}"] = shifted_accuracy(model, task)["mean"]
    for label, model in [("FT", finetuned), ("LP-FT", lpft)]:
        change = representation_change(pretrained, model, task.x_test)
        out[f"1 - CKA {label}"], out[f"relative change {label}"] = change["1 - CKA"], change["relative"]
    return out


def data_size_study(seed: int, sizes=DATA_SIZES) -> dict[str, float]:
    """Scratch, linear probe and fine-tune at each size (200 steps each): validation, test and training accuracy,
    epochs."""
    steps, batch = DEFAULTS.steps, DEFAULTS.batch_size
    out = {}
    for shots in sizes:
        task = target_task(shots=shots, seed=seed)
        for label, recipe in [("scratch", train_from_scratch), ("probe", linear_probe), ("fine-tune", fine_tune)]:
            model, acc = recipe(task, seed=seed)
            out[f"{shots}/class val {label}"], out[f"{shots}/class test {label}"] = _val(model, task), acc
            out[f"{shots}/class train {label}"] = evaluate(model, (task.x_train, task.y_train))
        out[f"{shots}/class epochs"] = steps / math.ceil(len(task.y_train) / batch)  # passes over the training set
    return out


# ---------------------------------------------------------------- learning rates per group
_RATE_SETUPS = {"uniform 0.01": 0.01, "np.array([1e-4,1e-3,1e-2])": np.array([1e-4, 1e-3, 1e-2]),
                "uniform 0.3": 0.3, "slice(0.003, 0.3)": slice(0.003, 0.3),
                "head 10x (0.01, 0.01, 0.1)": [0.01, 0.01, 0.1]}


RATES_RUNS = (*_RATE_SETUPS, "ULMFiT 2.6, top 0.3", "two-stage (lp_ft 0.01)",
              "fastai-style (frozen epoch, then slice(0.003, 0.3))", "group 0 frozen, slice(0.003, 0.3)",
              "gradual unfreezing 0.01")  # every run of rates_study, by label


def rates_study(seed: int, skip=()) -> dict[str, float]:
    """Uniform, discriminative, head-10x, ULMFiT, two-stage, fastai-style, group 0 frozen, gradual: test accuracy,
    feature change and update ratio per group, each at the one setting its source uses (untuned; the tuned
    comparison is `tuned_families_study`).

    skip: setups not trained here (labels as in the results); their numbers are left out.
    """
    task = target_task(shots=50, seed=seed)
    pretrained = load_pretrained(5)
    out = {}

    def record(label: str, model: nn.Module, acc: float, before: dict | None = None) -> None:
        out[f"test {label}"] = acc
        out[f"1 - CKA {label}"] = representation_change(pretrained, model, task.x_test[:500])["1 - CKA"]
        if before is not None:
            for g, r in enumerate(update_ratios(before, model, layer_groups(model))):
                out[f"update group {g} {label}"] = r

    setups = dict(_RATE_SETUPS, **{"ULMFiT 2.6, top 0.3": [0.3 / 2.6**2, 0.3 / 2.6, 0.3]})
    for label, lr in setups.items():
        if label in skip:
            continue
        model = fresh_model(seed=seed)
        before = snapshot(model)
        record(label, *fine_tune(task, seed, lr=lr, model=model), before)
    if "two-stage (lp_ft 0.01)" not in skip:
        record("two-stage (lp_ft 0.01)", *lp_ft(task, seed, lr=0.01))
    if "fastai-style (frozen epoch, then slice(0.003, 0.3))" not in skip:
        record("fastai-style (frozen epoch, then slice(0.003, 0.3))", *freeze_then_discriminative(task, seed))
    if "group 0 frozen, slice(0.003, 0.3)" not in skip:
        model = fresh_model(seed=seed)
        groups = freeze_to(model, 1)  # the learners' question: leave the first group frozen
        record("group 0 frozen, slice(0.003, 0.3)", *fine_tune(
            task, seed, model=model, optimizer=make_optimizer(param_groups(
                groups, slice(0.003, 0.3), model=model, weight_decay=DEFAULTS.weight_decay))))
    if "gradual unfreezing 0.01" not in skip:
        out["test gradual unfreezing 0.01"] = gradual_unfreeze(task, seed, lr=0.01)[1]
    return out


# ---------------------------------------------------------------- why the early groups get the low rate (question 002)
GROUP_RATE_SETUPS = {"group 0 at 1e-4": [1e-4, 1e-2, 1e-2], "group 1 at 1e-3": [1e-2, 1e-3, 1e-2]}  # one lowered
NOISE_SCALES = (0.05, 0.2)  # relative size of the random change given to every weight tensor of one group


def group_rates_study(seed: int, setups=tuple(GROUP_RATE_SETUPS), noise=NOISE_SCALES,
                      draws: int = 5) -> dict[str, float]:
    """Learner question 002. How sensitive each body group of the pretrained model is ("a resilient weight
    space"?): `group_sensitivity` of the linear probe. And which body group's low rate costs
    `np.array([1e-4, 1e-3, 1e-2])` its accuracy: each group lowered alone, the others at 0.01 (validation and test
    accuracy).
    """
    task = target_task(shots=50, seed=seed)
    probe = linear_probe(task, seed)[0].eval()
    out = group_sensitivity(probe, (task.x_val, task.y_val), noise, draws, seed)
    for label in setups:
        model, out[f"test {label}"] = fine_tune(task, seed, lr=GROUP_RATE_SETUPS[label], model=fresh_model(seed=seed))
        out[f"val {label}"] = _val(model, task)
    return out


def group_sensitivity(model: nn.Module, data, noise=NOISE_SCALES, draws: int = 5, seed: int = 0) -> dict[str, float]:
    """Loss ("probe loss ...") and accuracy ("val ...") of `model` on `data` as it is, and after every parameter
    tensor of one body group (layer_groups, the head excluded) is moved by Gaussian noise of `scale` times that
    tensor's own norm, the other groups untouched: the mean over `draws` draws (from a generator seeded with
    `seed`), per group and scale. A group whose relative change costs more is the more sensitive one.
    """
    def score(m: nn.Module) -> tuple[float, float]:
        logits, labels = predict(m, data)
        return float(nn.functional.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())

    out = dict(zip(("probe loss unperturbed", "val unperturbed"), score(model)))
    names = {id(p): n for n, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    for g, group in enumerate(layer_groups(model)[:-1]):
        chosen = [names[id(p)] for p in params_of(group)]
        for scale in noise:
            scores = []
            for _ in range(draws):
                moved = copy.deepcopy(model)
                params = dict(moved.named_parameters())
                with torch.no_grad():
                    for name in chosen:
                        p = params[name]
                        step = torch.randn(p.shape, generator=generator)
                        p.add_(step * (scale * p.norm() / step.norm().clamp_min(1e-12)))
                scores.append(score(moved))
            out[f"probe loss group {g} noise {scale:g}"] = float(np.mean([loss for loss, _ in scores]))
            out[f"val group {g} noise {scale:g}"] = float(np.mean([acc for _, acc in scores]))
    return out


# ---------------------------------------------------------------- recipe families, each tuned the same way
TUNE_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # top rates (the head's); every family gets these six on validation
# (a first grid stopped at 0.3, where slice and head 10x were still rising on validation: 1.0 was added for all)
FAMILIES = {"uniform": lambda r: r, "slice": lambda r: slice(r / 100, r), "head 10x": lambda r: [r / 10, r / 10, r],
            "two-stage": lambda r: r}  # top rate -> fine_tune's lr; two-stage starts from the linear probe


def tuned_families_study(seed: int, families=tuple(FAMILIES), grid=TUNE_GRID) -> dict[str, float]:
    """Each recipe family of lesson 03 fine-tuned at every top rate of `grid` (the same validation budget for
    each); the top rate with the best validation accuracy is chosen per family, and its test accuracy reported.

    Families (top rate r): one rate r for all; fastai's slice(r/100, r) over the three groups; the body at
    r/10 and the head at r ("head 10x"); two-stage: the linear probe's head, then everything at r.
    """
    task = target_task(shots=50, seed=seed)
    probe = linear_probe(task, seed)[0] if "two-stage" in families else None
    out = {}
    for family in families:
        for r in grid:
            start = copy.deepcopy(probe) if family == "two-stage" else fresh_model(seed=seed)
            model, acc = fine_tune(task, seed, lr=FAMILIES[family](r), model=start)
            out[f"val {family} top {r:g}"], out[f"test {family} top {r:g}"] = _val(model, task), acc
    return choose_tops(out, families, grid)


def choose_tops(numbers: dict[str, float], families=tuple(FAMILIES), grid=TUNE_GRID) -> dict[str, float]:
    """Per family, the top rate of `grid` with the best validation accuracy (the lower of equals) and its
    validation and test accuracy, added to a copy of `numbers`."""
    out = dict(numbers)
    for family in families:
        best = max(grid, key=lambda r: numbers[f"val {family} top {r:g}"])  # max keeps the first of equals
        out[f"chosen top {family}"] = best
        out[f"val at the chosen rate {family}"] = numbers[f"val {family} top {best:g}"]
        out[f"test at the chosen rate {family}"] = numbers[f"test {family} top {best:g}"]
    return out


TIME_RATES = (0.001, 0.003, 0.01, 0.03)  # constant rates: does a lower one need longer to reach an accuracy?
TIME_STEPS, TIME_EVERY = 300, 25  # optimizer steps per run; validation accuracy read every TIME_EVERY steps


def time_to_accuracy_study(seed: int, rates=TIME_RATES, steps: int = TIME_STEPS,
                           every: int = TIME_EVERY) -> dict[str, float]:
    """Fine-tune at each constant rate (no schedule, batches of 32) and read the validation accuracy every
    `every` steps (question 007): the curves, and the seconds each run took (validation reads included)."""
    task = target_task(shots=50, seed=seed)
    out = {}
    for lr in rates:
        seed_everything(seed)
        model, curve = fresh_model(seed=seed), []

        def read(step: int) -> None:
            if step % every == 0:
                curve.append(_val(model, task))
                model.train()  # evaluate() left it in eval mode; fit sets train mode once per pass only

        loader = make_loader(task.x_train, task.y_train, batch_size=DEFAULTS.batch_size, shuffle=True, seed=seed)
        t0 = time.perf_counter()
        fit(model, loader, steps=steps, lr=lr, weight_decay=DEFAULTS.weight_decay, schedule=None, progress=False,
            on_step=read)
        out[f"seconds lr {lr:g}"] = time.perf_counter() - t0
        out |= {f"val lr {lr:g} step {every * (k + 1)}": acc for k, acc in enumerate(curve)}
    return out


# ---------------------------------------------------------------- BatchNorm
_POLICIES = {"batch statistics": lambda m: None, "frozen statistics": freeze_bn_stats,
             "trainable affine": lambda m: bn_to_affine(m, trainable=True)}


def bn_policy_study(seed: int, sizes=BN_BATCH_SIZES, shots: int = 32) -> dict[str, float]:
    """Fine-tune at each batch size under each BN policy (200 steps, lr 0.01): validation and test accuracy;
    5 x shots training images."""
    task = target_task(shots=shots, seed=seed)
    out = {}
    for size in sizes:
        for label, apply in _POLICIES.items():
            model = fresh_model(seed=seed)
            apply(model)
            model, out[f"test batch {size} {label}"] = fine_tune(task, seed=seed, batch_size=size, model=model)
            out[f"val batch {size} {label}"] = _val(model, task)
    return out


def adabn_study(seed: int, sizes=(8, 32, 128, 512)) -> dict[str, float]:
    """A linear probe under test-time shifts: validation and test accuracy (both shifted) before and after AdaBN
    with n unlabelled target images."""
    task = target_task(shots=50, seed=seed)
    probe = linear_probe(task, seed=seed)[0].eval()
    out = {}
    for kind in (None, "contrast", "colour", "invert"):
        shifted = target_task(shots=50, seed=seed, shift=kind)  # the same digits, every split shifted
        pool = target_task(shots=120, seed=100 + seed, shift=kind).x_train
        name = kind or "clean"
        for step, model in [("no adaptation", probe)] + [
                (f"AdaBN {n}", adabn(copy.deepcopy(probe), make_loader(pool[:n], torch.zeros(n), batch_size=64)))
                for n in sizes]:
            out[f"val {name} {step}"] = _val(model, shifted)
            out[f"test {name} {step}"] = evaluate(model, (shifted.x_test, shifted.y_test))
    return out


SHIFTED_TARGETS = ("contrast", "colour")  # shifts AdaBN repaired on a frozen body (adabn_study)
SHIFTED_BATCH = 8  # small batches: where the learner's notes would convert BN


def shifted_target_study(seed: int, kinds=SHIFTED_TARGETS, batch_size: int = SHIFTED_BATCH,
                         shots: int = 32, policies=tuple(_POLICIES)) -> dict[str, float]:
    """Fine-tune on a shifted target (training, validation and test images shifted alike) under each BN policy
    (`policies`, names of the BN study's policies), with and without AdaBN on the unlabelled training images
    first: validation and test accuracy (question 013).
    """
    unknown = [p for p in policies if p not in _POLICIES]
    if unknown:
        raise ValueError(f"unknown BN policies {unknown}; choose from {list(_POLICIES)}")
    out = {}
    for kind in kinds:
        task = target_task(shots=shots, seed=seed, shift=kind)
        unlabelled = make_loader(task.x_train, torch.zeros(len(task.y_train)), batch_size=64)
        for label in policies:
            apply = _POLICIES[label]
            for first in ("", " after AdaBN"):
                model = fresh_model(seed=seed)
                if first:
                    adabn(model, unlabelled)
                apply(model)
                model, out[f"test {kind} {label}{first}"] = fine_tune(task, seed=seed, batch_size=batch_size,
                                                                       model=model)
                out[f"val {kind} {label}{first}"] = _val(model, task)
    return out


# ---------------------------------------------------------------- the recipe on new tasks, against the one call
NEW_TASK_SHOTS = 10  # images per class of lesson 05's live runs and surgical study: the smaller of the ablation's
# two sizes (ABLATION_SHOTS). The old recipe table ran at 10 only, chosen after the one call had led there on digits
RECIPE_TASKS = {"digits": target_task, "near": near_task, "far": far_task}
FASTAI_BASE_LR = 1e-2  # the base_lr of the measurement with real fastai 2.8 (fastai's default is 2e-3)


def fastai_epochs(task: Task, steps: int = DEFAULTS.steps, batch_size: int = DEFAULTS.batch_size,
                  freeze_epochs: int = 1) -> int:
    """Epochs for fastai_fine_tune that make about `steps` optimizer steps in all (fastai drops the last
    partial batch)."""
    per_epoch = max(1, len(task.y_train) // batch_size)
    return max(1, round(steps / per_epoch) - freeze_epochs)


# ---------------------------------------------------------------- the recipe's decisions, one at a time (issue: recipe)
ABLATION_TASKS = ("digits", "near", "far")
ABLATION_SHOTS = (10, 50)  # images per class; every task's pool holds 50
ADAMW_RATES = (3e-4, 1e-3, 3e-3)  # AdamW's candidates: about 30x below SGD's (fastai's base_lr 2e-3 sits inside)
# The recipe the ablation starts from (run_recipe as it was before the study), spelled out so that a later change
# of run_recipe's defaults does not change what the arms mean.
ABLATION_BEFORE = {"rates": (0.01, 0.03, 0.1), "adabn_policy": None,
                   "config": {"optimizer": "sgd", "schedule": "onecycle", "augment": 0, "label_smoothing": 0.0,
                              "ema": None, "l2sp": 0.0, "rate_rule": "largest within 1 SE", "probe_fraction": 0.1,
                              "bn_policy": "auto", "final_fraction": 1.0}}
# Each arm: run_recipe's keyword arguments, changed from ABLATION_BEFORE (the first arm) in one decision only.
ABLATION_ARMS = {
    "recipe": {},
    # today's decisions, each switched off or changed alone
    "no AdaBN": {"adabn_policy": False},
    "always AdaBN": {"adabn_policy": True},
    "no head warm-up": {"head_steps": 0},
    "one rate 0.03, no short runs": {"rates": (0.03,)},
    "final run of all the steps": {"final_steps": "all"},  # the short runs on top of the budget
    "rule: smallest within 1 SE, paired": {"config": {"rate_rule": "smallest within 1 SE, paired"}},
    "rule: best": {"config": {"rate_rule": "best"}},
    "short runs of 40 steps": {"config": {"probe_fraction": 0.2}},
    "frozen BN statistics": {"config": {"bn_policy": "frozen statistics"}},
    # candidates from practice and the literature, each switched on alone
    "shifts of up to 4 px": {"config": {"augment": 4}},
    "AdamW": {"config": {"optimizer": "adamw"}, "rates": ADAMW_RATES},
    "cosine schedule": {"config": {"schedule": "cosine"}},
    "constant rate": {"config": {"schedule": "constant"}},
    "label smoothing 0.1": {"config": {"label_smoothing": 0.1}},
    "EMA of weights 0.98": {"config": {"ema": 0.98}},
    "L2-SP 0.1": {"config": {"l2sp": 0.1}},  # Li et al. 2018's pull toward the pretrained body; alpha not tuned
    # candidate rebuilt recipes: the decisions the first seeds' validation favoured, together (chosen on all seeds)
    "shifts, paired rule": {"config": {"augment": 4, "rate_rule": "smallest within 1 SE, paired"}},
    "shifts, paired rule, no AdaBN": {"config": {"augment": 4, "rate_rule": "smallest within 1 SE, paired"},
                                      "adabn_policy": False},
    "shifts, one rate 0.03, no short runs": {"config": {"augment": 4}, "rates": (0.03,)},
    # its AdaBN threshold tested both ways (on the old recipe, "always AdaBN" was level or ahead in every cell)
    "shifts, one rate 0.03, always AdaBN": {"config": {"augment": 4}, "rates": (0.03,), "adabn_policy": True},
    "shifts, one rate 0.03, never AdaBN": {"config": {"augment": 4}, "rates": (0.03,), "adabn_policy": False},
    # the chosen arm with a shorter final run (recipe_length_study): the wall-time bar
    **{f"shifts, one rate 0.03, always AdaBN, final run {p} %": {
        "config": {"augment": 4, "final_fraction": p / 100}, "rates": (0.03,), "adabn_policy": True} for p in (90, 80)},
}
ABLATION_BASELINES = ("fine-tune", "one call", "one call, shifts of up to 4 px")  # the bars the recipe must meet


def _ablation_arm(name: str, task: Task, seed: int, steps: int, kwargs: dict | None = None):
    """(trained model, extra numbers, report or None) of one arm or baseline of the ablation, about `steps` steps."""
    if name == "fine-tune":
        return fine_tune(task, seed, steps=steps)[0], {}, None
    if name == "scratch":
        return train_from_scratch(task, seed, steps=steps)[0], {}, None
    if name == "linear probe":
        return linear_probe(task, seed, steps=steps)[0], {}, None
    if name.startswith("one call"):
        augment = RandomShift(4, seed=seed) if "shifts" in name else None
        return fastai_fine_tune(task, seed, epochs=fastai_epochs(task, steps), base_lr=FASTAI_BASE_LR,
                                augment=augment)[0], {}, None
    kwargs = _arm_kwargs(name) if kwargs is None else kwargs
    if kwargs.get("final_steps") == "all":
        kwargs["final_steps"] = steps
    model, report = run_recipe(task, seed=seed, steps=steps, fold=False, **kwargs)
    return model, {"chosen rate": report.chosen_lr, "adabn": float(report.adabn_applied)}, report


def _arm_kwargs(name: str) -> dict:
    """run_recipe's keyword arguments of an ablation arm (ABLATION_BEFORE with the arm's changes), its RecipeConfig
    built; "run_recipe": run_recipe's defaults as they are now (the rebuilt recipe)."""
    if name == "run_recipe":
        return {}
    arm = ABLATION_ARMS[name]
    return {"rates": ABLATION_BEFORE["rates"], "adabn_policy": ABLATION_BEFORE["adabn_policy"], **arm,
            "config": RecipeConfig(**{**ABLATION_BEFORE["config"], **arm.get("config", {})})}


def _same_but(a: dict, b: dict, key: str) -> bool:
    """Do two arms' run_recipe arguments differ in `key` alone (a run_recipe argument or a RecipeConfig field)?"""
    def flat(kw):
        out = {k: v for k, v in kw.items() if k != "config"}
        out |= {f"config.{f}": getattr(kw["config"], f) for f in vars(kw["config"])}
        out.pop(key, None)
        out.setdefault("adabn_policy", None)
        return out
    return flat(a) == flat(b)


def _derived(arm: str, done: dict, task: Task, seed: int, steps: int):
    """An arm computed from one already run in the same cell, when it can be: (its numbers, its report) or None.

    The AdaBN decision comes first and nothing random precedes it, so "no AdaBN" (or "always AdaBN") of an arm
    whose own decision was the same is that arm's run, copied. The rate rule only reads the short runs' per-image
    validation results, so an arm that differs in the rule alone takes its choice from the other arm's short runs:
    the same choice is the same run, copied; another choice trains only the final run (rates=(choice,) and the
    same final_steps). Seconds are the other arm's (the same steps). Tests check that both give what a full run
    gives.
    """
    kwargs = _arm_kwargs(arm)
    for parent, (pk, result, report) in done.items():
        if report is None:
            continue
        if "adabn_policy" in kwargs and _same_but(kwargs, pk, "adabn_policy") and pk.get("adabn_policy") is None \
                and kwargs["adabn_policy"] == report.adabn_applied:
            return dict(result), report
        if _same_but(kwargs, pk, "config.rate_rule") and report.rate_right and len(kwargs["rates"]) > 1:
            choice = choose_rate(report.rate_right, kwargs["config"].rate_rule)[0]
            if choice == report.chosen_lr:
                return dict(result), report
            model, extra, own = _ablation_arm(arm, task, seed, steps,
                                              {**kwargs, "rates": (choice,), "final_steps": report.final_steps})
            return {**result, **_scores(model, task), **extra}, own
    return None


def _scores(model: nn.Module, task: Task) -> dict[str, float]:
    return {"val": _val(model, task), "test": evaluate(model, (task.x_test, task.y_test))}


def recipe_ablation_study(seed: int, tasks=ABLATION_TASKS, shots=ABLATION_SHOTS, arms=tuple(ABLATION_ARMS),
                          baselines=ABLATION_BASELINES, steps: int = DEFAULTS.steps,
                          derive: bool = True) -> dict[str, float]:
    """Today's run_recipe, each of its decisions changed alone, each candidate setting switched on alone, and the
    baselines it must beat (plain fine-tune, fastai's one call with and without the same shifts), on each task
    at each number of images per class. Per "<task> <shots>/class": "val <arm>" (what decides), "test <arm>"
    (what reports), "seconds <arm>", and for recipe arms "chosen rate <arm>" and "adabn <arm>".
    derive: compute an arm from an earlier one of the same cell where that gives the same numbers (_derived).
    """
    return _arms_on_tasks(lambda name, k: RECIPE_TASKS[name](shots=k, seed=seed), seed, tasks, shots, arms,
                          baselines, steps, derive)


def _arms_on_tasks(make_task, seed: int, tasks, shots, arms, baselines, steps: int, derive: bool) -> dict[str, float]:
    """recipe_ablation_study's loop, for tasks made by `make_task(name, shots)`."""
    out = {}
    for name in tasks:
        for k in shots:
            task = make_task(name, k)
            prefix = f"{name} {k}/class"
            done = {}  # arm -> (its run_recipe arguments, its numbers, its report)
            for arm in (*baselines, *arms):
                derived = _derived(arm, done, task, seed, steps) if derive and arm in ABLATION_ARMS else None
                if derived is None:
                    t0 = time.perf_counter()
                    model, extra, report = _ablation_arm(arm, task, seed, steps)
                    result = {"seconds": time.perf_counter() - t0, **_scores(model, task), **extra}
                else:
                    result, report = derived
                if arm in ABLATION_ARMS:
                    done[arm] = (_arm_kwargs(arm), result, report)
                out |= {f"{prefix} {key} {arm}": v for key, v in result.items()}
    return out


FLOORS = ("scratch", "linear probe")  # what the recipe is compared with beside its bars (no pretrained body trained)


def recipe_floor_study(seed: int, tasks=ABLATION_TASKS, shots=ABLATION_SHOTS,
                       steps: int = DEFAULTS.steps) -> dict[str, float]:
    """Training from scratch and the linear probe in the ablation's cells (same tasks, sizes, seeds, steps and
    keys), so that the recipe's table has its floors over the same ten seeds."""
    return _arms_on_tasks(lambda name, k: RECIPE_TASKS[name](shots=k, seed=seed), seed, tasks, shots, (), FLOORS,
                          steps, derive=False)


# The candidates for the rebuilt recipe (ftcourse.lab.ablation.COMBINED and SIMPLEST), each against
# ABLATION_BASELINES: the rule picks one on the shipped tasks' validation alone; these tasks only report it
UNSEEN_ARMS = ("shifts, one rate 0.03, no short runs", "shifts, one rate 0.03, always AdaBN",
               "shifts, one rate 0.03, never AdaBN", "shifts of up to 4 px")  # a parent before its AdaBN variants


def _unseen_root(root) -> Path:
    """Where the unseen tasks' PNG folders are written once: `root`, default ftcourse-unseen in the temporary folder."""
    return Path(tempfile.gettempdir()) / "ftcourse-unseen" if root is None else Path(root)


def unseen_study(seed: int, tasks=tuple(UNSEEN_TASKS), shots=ABLATION_SHOTS, arms=UNSEEN_ARMS,
                 baselines=ABLATION_BASELINES, steps: int = DEFAULTS.steps, root=None) -> dict[str, float]:
    """The recipe's candidates and its bars on tasks it was never designed on (`ftcourse.lab.unseen_tasks`: printed
    letters, shapes), each read through `folder_task` as a learner's folder; keys as recipe_ablation_study's (an
    AdaBN variant is derived from its parent where the gap decided the same way). "run_recipe" as an arm: its
    defaults as they are now. The folders are written once under `root` (default: ftcourse-unseen in the
    temporary directory)."""
    root = _unseen_root(root)
    return _arms_on_tasks(lambda name, k: unseen_task(name, root, shots=k, seed=seed), seed, tasks, shots, arms,
                          baselines, steps, derive=True)


# The chosen arm (ablation.final_arm) against itself with a shorter final run, fresh in one environment: the recipe
# must take no more wall time than the one call. The rule (ablation.length_arm), committed before the first seed
# finished: the shortest final run whose arm is not behind the full-length one on the shipped tasks' validation.
LENGTH_BASE = "shifts, one rate 0.03, always AdaBN"
LENGTH_ARMS = (LENGTH_BASE, f"{LENGTH_BASE}, final run 90 %", f"{LENGTH_BASE}, final run 80 %")


def recipe_length_study(seed: int, tasks=ABLATION_TASKS, unseen=tuple(UNSEEN_TASKS), shots=ABLATION_SHOTS,
                        arms=LENGTH_ARMS, steps: int = DEFAULTS.steps, root=None) -> dict[str, float]:
    """LENGTH_ARMS in the ablation's six cells (they decide, on validation) and on the unseen tasks (they report);
    keys as recipe_ablation_study's ("<task> <k>/class val <arm>", ...). No baselines: those are in the
    recipe_ablation and unseen files."""
    root = _unseen_root(root)
    out = _arms_on_tasks(lambda name, k: RECIPE_TASKS[name](shots=k, seed=seed), seed, tasks, shots, arms, (),
                         steps, derive=False)
    return out | _arms_on_tasks(lambda name, k: unseen_task(name, root, shots=k, seed=seed), seed, unseen, shots,
                                arms, (), steps, derive=False)


# ---------------------------------------------------------------- surgical fine-tuning: which block to train
def _surgical_task(name: str, seed: int, shots: int) -> Task:
    """One of SURGICAL_LEE_TASKS: the source digits with their inputs shifted, or with every label moved."""
    if name == "relabelled source":
        return relabelled_source_task(shots=shots, seed=seed)
    return shifted_source_task({"inverted": "invert", "blurred": "blur"}[name.split()[0]], shots=shots, seed=seed)


SURGICAL_LEE_TASKS = ("inverted source", "blurred source", "relabelled source")  # input-level twice, output-level
SURGICAL_LEE_SETUPS = ("block 1", "block 2", "block 3", "block 4", "head", "all")  # Lee et al.'s "last layer": head
SURGICAL_RATES = (0.003, 0.01, 0.03, 0.1)


def surgical_block(setup: str):
    """surgical_fine_tune's `block` for a setup name of SURGICAL_LEE_SETUPS ("block 2" -> 1, "head", "all")."""
    return setup if setup in ("all", "head") else int(setup.split()[1]) - 1


def surgical_tuned_study(seed: int, tasks=SURGICAL_LEE_TASKS, setups=SURGICAL_LEE_SETUPS, grid=SURGICAL_RATES,
                         shots: int = NEW_TASK_SHOTS, steps: int = 100) -> dict[str, float]:
    """Lee et al. (2023) in the settings the paper covers that can be built here: input-level shifts (the source
    digits inverted or blurred) and an output-level shift (the source digits with every label moved), each from the
    pretrained model with its own head. Each setup (one block alone, the head alone, everything) at each rate of
    `grid`: "<task> val <setup> lr <r>" and "test ..."; validation picks each setup's rate ("chosen rate <setup>",
    "val/test at the chosen rate <setup>"; ties go to the lower rate), then the setup ("chosen setup" is its index).
    """
    out = {}
    for name in tasks:
        task = _surgical_task(name, seed, shots)
        start = load_pretrained()  # its head predicts digits 0-4: right for shifted inputs, wrong for moved labels
        out[f"{name} test start"] = evaluate(start, (task.x_test, task.y_test))
        out[f"{name} val start"] = _val(start, task)
        for setup in setups:
            for lr in grid:
                model, out[f"{name} test {setup} lr {lr:g}"] = surgical_fine_tune(
                    task, surgical_block(setup), seed, steps=steps, lr=lr, model=copy.deepcopy(start))
                out[f"{name} val {setup} lr {lr:g}"] = _val(model, task)
            best = max(grid, key=lambda r: (out[f"{name} val {setup} lr {r:g}"], -r))
            out[f"{name} chosen rate {setup}"] = best
            for split in ("val", "test"):
                out[f"{name} {split} at the chosen rate {setup}"] = out[f"{name} {split} {setup} lr {best:g}"]
        out[f"{name} chosen setup"] = max(range(len(setups)),
                                          key=lambda i: out[f"{name} val at the chosen rate {setups[i]}"])
    return out


STUDIES = {"warm_up": warm_up_study, "data_size": data_size_study, "rates": rates_study,
           "group_rates": group_rates_study, "tuned_families": tuned_families_study,
           "time_to_accuracy": time_to_accuracy_study,
           "bn_policy": bn_policy_study, "adabn": adabn_study, "shifted_target": shifted_target_study,
           "recipe_ablation": recipe_ablation_study, "recipe_floor": recipe_floor_study, "unseen": unseen_study,
           "surgical_tuned": surgical_tuned_study, "recipe_length": recipe_length_study}
# measured into build/ (seed_studies.py --out), not shipped until every seed is in
IN_PROGRESS = {}
