"""The course's whole recipe in one call: `run_recipe(task)` makes each decision the course teaches from a measurement.

In order (each decision timed and recorded on a RecipeReport):

1. BN statistics: how far the pretrained running means are from the target's, then AdaBN on the training images
   (always, by default; `adabn_policy=None` applies it only over ADABN_THRESHOLD, the old rule).
2. Head warm-up: a new head trained on cached body features (a linear probe).
3. BN policy for the batch size (plain BN unless a batch is too small for batch statistics).
4. Freeze audit: one real step on copies confirms that every layer group trains.
5. Learning rate: one rate, RATE, by default; given several candidates, short runs at each from the warmed-up
   model, judged on the validation split.
6. Fine-tune every layer at that rate (SGD, one-cycle, random shifts of up to 4 pixels on every training batch)
   for FINAL_FRACTION (80 %) of the steps, then validation and test accuracy.
7. BN folding for deployment: fold_bn, outputs compared, inference timed against the unfolded model.

The defaults are the ones the recipe's ablation chose on validation (data/results/recipe_ablation.json, seeds
0-9): shifts joined, the rate search and the AdaBN threshold did not earn their place; and the shortest final run
not behind the whole one (data/results/recipe_length.json), which keeps the measurements and the training inside
the wall time of fastai's one call. Budget: the final run gets FINAL_FRACTION of `steps` (with candidates, of
`steps` minus the short runs and one more, the measurements' cost). The test set is used once, at the end.
"""
from __future__ import annotations

import copy
import numbers
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import partial

import torch
from torch import nn
from torch.utils.data import DataLoader

from .audit import freeze_audit
from .bn import adabn, bn_modules, fold_bn, freeze_bn_stats
from .cost import forward_ms
from .data import RandomShift, Task, make_loader
from .groups import freeze_to, layer_groups
from .inputs import require_int
from .models import find_head, load_pretrained, replace_head
from .optim import make_optimizer, param_groups
from .recipes import DEFAULTS
from .runtime import get_device, seed_everything
from .tables import Table, TableReport
from .train import evaluate, fit, precompute_features, predict

__all__ = ["ADABN_THRESHOLD", "RATE", "RATE_CANDIDATES", "CHOICE_FRACTION", "MIN_VAL_TO_CHOOSE", "SMALL_BATCH",
           "FINAL_FRACTION",
           "RecipeConfig", "RecipeReport", "bn_gap", "target_means", "choose_rate", "run_recipe"]

ADABN_THRESHOLD = 0.04  # bn_gap on validation images between clean targets and shifted ones (the BatchNorm lesson)
RATE = 0.03  # run_recipe's one rate for all layers (SGD scale): the rates study's validation choice, and the ablation's
RATE_CANDIDATES = (0.01, 0.03, 0.1)  # a search around it (rates=RATE_CANDIDATES): the ablation found it no better
CHOICE_FRACTION = 0.1  # each candidate's short run has this share of `steps`; the final run gets the rest but one
MIN_VAL_TO_CHOOSE = 100  # validation images below which short runs cannot tell rates apart (one image is over 1
# point, the standard error of an accuracy near 0.5 over 5): run_recipe warns and trains at the middle candidate
FINAL_FRACTION = 0.8  # the final run's share of the steps: the shortest run not behind the whole one on validation
# (recipe_length_study); it brings the recipe's measurements and training inside the one call's wall time
SMALL_BATCH = 2  # below this, batch statistics are impossible (1 value per channel): BN statistics are frozen;
# from it up, plain BN (batch statistics), the BatchNorm lesson's policy


ADAMW_WEIGHT_DECAY = 0.01  # decoupled (AdamW, fastai's default); SGD keeps the course's coupled 5e-4
RATE_RULES = ("largest within 1 SE", "smallest within 1 SE, paired", "best")


@dataclass(frozen=True)
class RecipeConfig:
    """The recipe's settings that are not measured per task (its defaults are run_recipe's); an ablation changes one.

    optimizer: "sgd" (momentum 0.9, weight decay 5e-4) or "adamw" (weight decay 0.01, decoupled; its rates are
    about 30x lower than SGD's: pass `rates` to run_recipe). schedule: "onecycle", "cosine" or "constant".
    augment: RandomShift's largest shift in pixels for every training batch (default 4; 0: none).
    label_smoothing: of the cross-entropy. ema: decay of an exponential moving average of the weights and BN
    buffers, which replaces the weights at the end (None: none). l2sp: alpha of L2-SP, a pull of the body
    toward its pretrained weights (0: none). rate_rule: how the short runs choose the rate: the largest candidate
    within one standard error of the best validation accuracy (the binomial SE of one accuracy), the smallest
    within one SE of the paired per-image difference from the best, or the best. probe_fraction: each short
    run's share of `steps`. bn_policy: "auto" (frozen statistics only below SMALL_BATCH) or "frozen statistics".
    final_fraction: the final run's share of the steps the budget leaves it (run_recipe's `final_steps` overrides).
    """

    optimizer: str = "sgd"
    schedule: str = "onecycle"
    augment: int = 4
    label_smoothing: float = 0.0
    ema: float | None = None
    l2sp: float = 0.0
    rate_rule: str = "largest within 1 SE"
    probe_fraction: float = CHOICE_FRACTION
    bn_policy: str = "auto"
    final_fraction: float = FINAL_FRACTION

    def __post_init__(self):
        choices = {"optimizer": ("sgd", "adamw"), "schedule": ("onecycle", "cosine", "constant"),
                   "rate_rule": RATE_RULES, "bn_policy": ("auto", "frozen statistics")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"RecipeConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        require_int("augment", self.augment, low=0, hint="pixels of RandomShift, e.g. 4; 0 for none")
        for name, inside, interval in (("label_smoothing", lambda v: 0 <= v < 1, "[0, 1)"),
                                       ("l2sp", lambda v: v >= 0, "[0, inf)"),
                                       ("probe_fraction", lambda v: 0 <= v < 0.5, "[0, 0.5)"),
                                       ("final_fraction", lambda v: 0 < v <= 1, "(0, 1]")):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not inside(value):
                raise ValueError(f"RecipeConfig.{name} must be a number in {interval}, got {value!r}")
        if self.ema is not None and not (isinstance(self.ema, numbers.Real) and 0 < self.ema < 1):
            raise ValueError(f"RecipeConfig.ema must be None or a decay in (0, 1), e.g. 0.98, got {self.ema!r}")

    def changes(self) -> str:
        """The fields that differ from the defaults, as text ("defaults" if none)."""
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) != f.default]
        return ", ".join(changed) or "defaults"


def bn_gap(model: nn.Module, images: torch.Tensor, batch_size: int = 64, target: dict | None = None) -> float:
    """Mean over BN layers of mean abs(target mean - running mean) / running std (the measure of the BatchNorm lesson).

    The target's per-channel means come from AdaBN on a copy (all `images`, no labels); the model is untouched.
    `target`: those means from an earlier call of `target_means` on a model with the same weights (AdaBN's pass
    normalises with batch statistics, so the running ones do not change it): the pass is not repeated.
    """
    target = target_means(model, images, batch_size) if target is None else target
    gaps = [((target[n] - m.running_mean).abs() / m.running_var.sqrt()).mean().item() for n, m in bn_modules(model)]
    return sum(gaps) / len(gaps)


def target_means(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """{BN layer name: the per-channel means of its inputs on `images`} (AdaBN on a copy; the model is untouched)."""
    adapted = adabn(copy.deepcopy(model), make_loader(images, torch.zeros(len(images)), batch_size=batch_size))
    return {n: m.running_mean for n, m in bn_modules(adapted)}


@dataclass(repr=False)
class RecipeReport(TableReport):
    """Every decision of run_recipe, with the measurement behind it and its wall seconds; print it to read it.

    The typed fields hold the numbers; each row holds the text made from them (step, decision, measurement) and
    the step's wall seconds.
    """

    rows: list[dict] = field(default_factory=list)
    config: RecipeConfig = field(default_factory=RecipeConfig)
    adabn_applied: bool = False
    bn_gap_before: float = float("nan")
    bn_gap_after: float = float("nan")
    head_val_accuracy: float = float("nan")
    bn_policy: str = ""
    trainable_groups: int = 0
    rate_scores: dict = field(default_factory=dict)  # candidate rate -> validation accuracy of its short run
    rate_right: dict = field(default_factory=dict)  # candidate rate -> 1/0 per validation image (choose_rate's input)
    chosen_lr: float = float("nan")
    steps_per_candidate: int = 0
    final_steps: int = 0
    val_accuracy: float = float("nan")
    test_accuracy: float = float("nan")
    folded_model: nn.Module | None = None
    fold_max_diff: float = float("nan")
    folded_speedup: float = float("nan")

    @property
    def steps(self) -> list[str]:
        """The decisions' names, in order."""
        return [r["step"] for r in self.rows]

    @property
    def seconds(self) -> float:
        """Wall seconds of the whole recipe."""
        return sum(r["seconds"] for r in self.rows)

    def add(self, step: str, decision: str, measurement: str, seconds: float) -> None:
        """Append one row: the step's name, what was decided, the measurement behind it, its wall seconds."""
        self.rows.append({"step": step, "decision": decision, "measurement": measurement, "seconds": seconds})

    @contextmanager
    def step(self, name: str):
        """Time the block and append its row; the block fills in row["decision"] and row["measurement"]."""
        row = {"decision": "", "measurement": ""}
        t0 = time.perf_counter()
        yield row
        self.add(name, row["decision"], row["measurement"], time.perf_counter() - t0)

    def table(self) -> Table:
        """The rows as ftcourse's table type, with the total time and the final accuracies below."""
        return Table(self.rows, title="run_recipe: each decision and the measurement behind it",
                     formats={"seconds": "{:.1f}"}, notes=[f"total {self.seconds:.1f} s; val {self.val_accuracy:.3f}, "
                                                            f"test {self.test_accuracy:.3f}"])


def _check(task, model, steps, batch_size, rates) -> None:
    """Bad input -> an error that names the fix."""
    if not isinstance(task, Task):
        raise TypeError(f"task must be a ftcourse Task, e.g. ftcourse.target_task(shots=10), got {type(task).__name__}")
    if task.x_val is None or task.y_val is None or len(task.y_val) == 0:
        raise ValueError(f"{task.name!r} has no validation split: the recipe chooses on it, never on the test set; "
                         "add one with dataclasses.replace(task, x_val=..., y_val=...)")
    require_int("steps", steps, low=5, hint="rate runs and the final run share them", expected="an int >= 5")
    require_int("batch_size", batch_size, low=1, hint="e.g. 32", expected="an int >= 1")
    if (isinstance(rates, (str, bytes)) or not hasattr(rates, "__len__") or not rates
            or not all(isinstance(r, numbers.Real) and not isinstance(r, bool) and 0 < r < float("inf")
                       for r in rates)):
        raise ValueError(f"rates must be a non-empty tuple of candidate learning rates > 0, e.g. {RATE_CANDIDATES}, "
                         f"got {rates!r}")
    if model is not None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module (e.g. ftcourse.load_pretrained()), got {type(model).__name__}")
        try:
            find_head(model)
        except ValueError:
            raise ValueError(f"this {type(model).__name__} has no nn.Linear head for run_recipe to replace: give it "
                             "one (e.g. model.fc = nn.Linear(features, num_classes)), or pass a torchvision ResNet "
                             "such as ftcourse.torchvision_backbone('resnet18')") from None


def _train_loader(task: Task, batch_size: int, seed: int) -> DataLoader:
    """Shuffled training batches; a last batch of a single image is dropped (train-mode BN cannot normalise it)."""
    n = len(task.y_train)
    return make_loader(task.x_train, task.y_train, batch_size=batch_size, shuffle=True, seed=seed,
                       drop_last=n > batch_size and n % batch_size == 1)


def _optimizer(groups, lr, kind: str = "sgd") -> torch.optim.Optimizer:
    """SGD with momentum and the course's weight decay, or AdamW with decoupled decay, over every group at `lr`."""
    if kind == "adamw":
        return torch.optim.AdamW(param_groups(groups, lr, weight_decay=ADAMW_WEIGHT_DECAY), lr=lr)
    return make_optimizer(param_groups(groups, lr, weight_decay=DEFAULTS.weight_decay))


def _train(run: "_Run", model: nn.Module, groups: list, lr: float, steps: int, train: DataLoader,
           progress: bool = False) -> None:
    """`steps` steps of `model` at `lr` with the run's RecipeConfig: optimizer, schedule, augmentation, label
    smoothing, L2-SP, weight averaging. Used by the short rate runs and the final run alike."""
    cfg = run.config
    opt = _optimizer(groups, lr, cfg.optimizer)
    if cfg.l2sp:
        head = set(map(id, find_head(model)[1].parameters()))
        anchors = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad and id(p) not in head]

        def pull(optimizer, args, kwargs):  # the gradient of alpha/2 * ||w - w0||^2
            for p, p0 in anchors:
                if p.grad is not None:
                    p.grad.add_(p.detach() - p0, alpha=cfg.l2sp)
        opt.register_step_pre_hook(pull)
    average = None
    if cfg.ema is not None:
        average = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    loss_fn = (partial(nn.functional.cross_entropy, label_smoothing=cfg.label_smoothing) if cfg.label_smoothing
               else nn.functional.cross_entropy)
    fit(model, train, steps=steps, optimizer=opt, schedule=None if cfg.schedule == "constant" else cfg.schedule,
        augment=RandomShift(cfg.augment, seed=run.seed) if cfg.augment else None, loss_fn=loss_fn,
        on_step=(lambda step: average.update_parameters(model)) if average is not None else None,
        device=run.device, progress=progress)
    if average is not None:
        model.load_state_dict(average.module.state_dict())


@dataclass(frozen=True)
class _Run:
    """What every decision shares: the task, the model (changed in place), the settings and the report."""

    task: Task
    model: nn.Module
    report: RecipeReport
    device: torch.device
    seed: int
    steps: int
    batch_size: int
    rates: tuple

    @property
    def config(self) -> RecipeConfig:
        return self.report.config

    @property
    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.task.x_val, self.task.y_val


def _bn_statistics(run: _Run, adabn_policy: bool | None) -> None:
    """1. The BN gap on the validation images (no labels); AdaBN with the training images if over the threshold."""
    report, task = run.report, run.task
    with report.step("1 BN statistics") as row:
        target = target_means(run.model, task.x_val) if bn_modules(run.model) else None
        report.bn_gap_before = report.bn_gap_after = bn_gap(run.model, task.x_val, target=target) if target else 0.0
        report.adabn_applied = report.bn_gap_before > ADABN_THRESHOLD if adabn_policy is None else bool(adabn_policy)
        if report.adabn_applied:
            adabn(run.model, make_loader(task.x_train, task.y_train, batch_size=64))
            report.bn_gap_after = bn_gap(run.model, task.x_val, target=target)  # the same target: no second pass
        rule = (f"(adabn_policy={adabn_policy})" if adabn_policy is not None else
                f"{'>' if report.adabn_applied else '<='} ADABN_THRESHOLD {ADABN_THRESHOLD}")
        row["decision"] = "AdaBN (training images)" if report.adabn_applied else "keep pretrained statistics"
        row["measurement"] = f"gap {report.bn_gap_before:.3f} {rule}" + (
            f"; after AdaBN {report.bn_gap_after:.3f}" if report.adabn_applied else "")


def _head_warm_up(run: _Run, head_steps: int) -> None:
    """2. A new head trained on cached body features (linear_probe's recipe), then its validation accuracy."""
    report, task, model = run.report, run.task, run.model
    with report.step("2 head warm-up") as row:
        head = replace_head(model, task.num_classes, seed=run.seed)
        if head_steps > 0:
            feats, labels = precompute_features(model, (task.x_train, task.y_train), device=run.device)
            fit(head, make_loader(feats, labels, batch_size=run.batch_size, shuffle=True, seed=run.seed),
                steps=head_steps, device=run.device, progress=False,
                optimizer=make_optimizer(head, lr=DEFAULTS.lr_probe, weight_decay=DEFAULTS.weight_decay))
        report.head_val_accuracy = evaluate(model, run.val, device=run.device)
        row["decision"] = f"new head, {head_steps} steps on cached features"
        row["measurement"] = f"val accuracy {report.head_val_accuracy:.3f}"


def _bn_policy(run: _Run) -> list:
    """3. Every group trainable; BN statistics frozen if a batch is too small for batch statistics; returns groups."""
    report, b = run.report, run.batch_size
    with report.step("3 BN policy") as row:
        groups = freeze_to(run.model, 0)  # everything trainable, BN pins removed
        if run.config.bn_policy == "frozen statistics":
            freeze_bn_stats(run.model)
            report.bn_policy = "frozen statistics"
            rule = "RecipeConfig.bn_policy"
        elif b < SMALL_BATCH:
            freeze_bn_stats(run.model)
            report.bn_policy = "frozen statistics"
            rule = f"batch {b} < SMALL_BATCH {SMALL_BATCH}: one value per channel, no batch statistics"
        else:
            report.bn_policy = "batch statistics"
            rule = f"batch {b} >= SMALL_BATCH {SMALL_BATCH}: batch statistics"
        row["decision"], row["measurement"] = report.bn_policy, rule
    return groups


def _freeze_audit(run: _Run, groups: list) -> DataLoader:
    """4. One real step on copies (the training loader's first batch): every group must train. Returns the loader."""
    report = run.report
    with report.step("4 freeze audit") as row:
        # the audit's batch draws one permutation from this loader's generator; the final run's epochs come after it
        train = _train_loader(run.task, run.batch_size, run.seed)
        audit = freeze_audit(run.model.train(), _optimizer(groups, run.rates[0], run.config.optimizer),
                             next(iter(train)), groups=groups)
        report.trainable_groups = sum(r["moved"] == r["tensors"] > 0 for r in audit.rows)
        moved = ", ".join(f"{r['moved']}/{r['tensors']}" for r in audit.rows)
        bn_moved = sum(r["bn_stats_moved"] for r in audit.rows), sum(r["bn_layers"] for r in audit.rows)
        row["decision"] = f"{report.trainable_groups}/{len(groups)} groups train" + (
            "" if audit.ok else f"; TRAPS: {'; '.join(audit.traps)}")
        row["measurement"] = f"tensors moved per group {moved}; BN stats moved {bn_moved[0]}/{bn_moved[1]}"
    return train


def choose_rate(right: dict, rule: str = "largest within 1 SE") -> tuple[float, str]:
    """(chosen rate, how) from each candidate's per-image validation results (rate -> tensor of 1/0, same images).

    Rules (RATE_RULES): "largest within 1 SE": the largest rate whose accuracy is within one binomial standard
    error of the best one's; "smallest within 1 SE, paired": the smallest rate whose mean per-image difference
    from the best is within one standard error of that difference (the one-standard-error rule on paired
    differences); "best": the highest accuracy (the first of equals).
    """
    if rule not in RATE_RULES:
        raise ValueError(f"rule must be one of {RATE_RULES}, got {rule!r}")
    rates = tuple(right)
    scores = {lr: right[lr].float().mean().item() for lr in rates}
    best_lr = max(rates, key=lambda lr: scores[lr])  # the first of equals
    best = scores[best_lr]
    if rule == "largest within 1 SE":
        se = (best * (1 - best) / len(right[best_lr])) ** 0.5  # standard error of the best validation accuracy
        return max(lr for lr in rates if scores[lr] >= best - se), f"SE {se:.3f}"
    if rule == "smallest within 1 SE, paired":
        def within(lr):  # the paired difference from the best, per validation image: mean >= -(its SE)
            d = right[lr].float() - right[best_lr].float()
            return d.mean().item() >= -(d.std().item() / len(d) ** 0.5 if len(d) > 1 else 0.0)
        return min(lr for lr in rates if within(lr)), "paired per-image differences"
    return best_lr, "highest accuracy"


def _final(run: _Run, left: int, final_steps: int | None) -> int:
    """The final run's steps: `final_steps` if given, else RecipeConfig.final_fraction of the `left` steps."""
    return int(final_steps) if final_steps is not None else max(1, round(run.config.final_fraction * left))


def _learning_rate(run: _Run, final_steps: int | None) -> None:
    """5. A short run from the warmed-up model at each candidate rate, judged on validation (RecipeConfig.rate_rule)."""
    report, rates, rule = run.report, run.rates, run.config.rate_rule
    with report.step("5 learning rate") as row:
        n_val = len(run.task.y_val)
        if len(rates) > 1 and n_val < MIN_VAL_TO_CHOOSE:
            middle = sorted(rates)[len(rates) // 2]
            warnings.warn(f"run_recipe: {n_val} validation images are too few to choose a learning rate (one image "
                          f"is {100 / n_val:.0f} points): no short runs, training at {middle:g}, the middle "
                          f"candidate. Give one rate, or {MIN_VAL_TO_CHOOSE}+ validation images "
                          "(folder_task(..., val_per_class=...))", stacklevel=4)
            report.chosen_lr, report.final_steps = middle, _final(run, run.steps, final_steps)
            row["decision"] = f"{middle:g} for every group (the middle candidate: validation too small to choose)"
            row["measurement"] = f"{n_val} validation images < MIN_VAL_TO_CHOOSE {MIN_VAL_TO_CHOOSE}: no short runs"
            return
        if len(rates) == 1:  # nothing to choose: no short runs, the final run gets every step
            report.chosen_lr, report.final_steps = rates[0], _final(run, run.steps, final_steps)
            row["decision"] = f"{report.chosen_lr:g} for every group (the only candidate)"
            row["measurement"] = "no short runs"
            return
        short = report.steps_per_candidate = max(1, int(run.steps * run.config.probe_fraction))
        report.final_steps = _final(run, max(1, run.steps - short * (len(rates) + 1)), final_steps)
        right = {}  # candidate rate -> which validation images its short run classifies correctly (1/0)
        for lr in rates:
            trial = copy.deepcopy(run.model)
            _train(run, trial, layer_groups(trial), lr, short, _train_loader(run.task, run.batch_size, run.seed))
            logits, labels = predict(trial, run.val, device=run.device)
            right[lr] = (logits.argmax(1) == labels).float()
            report.rate_scores[lr] = right[lr].mean().item()
        report.rate_right = right
        report.chosen_lr, how = choose_rate(right, rule)
        scores = ", ".join(f"{lr:g}: {a:.3f}" for lr, a in report.rate_scores.items())
        row["decision"] = f"{report.chosen_lr:g} for every group ({rule})"
        row["measurement"] = f"val accuracy after {short} steps: {scores}; {how}"


def _fine_tune(run: _Run, groups: list, train: DataLoader, progress: bool) -> None:
    """6. Every group for the final steps at the chosen rate (one-cycle SGD unless RecipeConfig says otherwise);
    then validation, then test, once."""
    report, task = run.report, run.task
    with report.step("6 fine-tune") as row:
        _train(run, run.model, groups, report.chosen_lr, report.final_steps, train, progress)
        report.val_accuracy = evaluate(run.model, run.val, device=run.device)
        report.test_accuracy = evaluate(run.model, (task.x_test, task.y_test), device=run.device)
        row["decision"] = f"all groups, {report.final_steps} steps at {report.chosen_lr:g}" + (
            f"; {run.config.changes()}" if run.config != RecipeConfig() else "")
        row["measurement"] = f"val {report.val_accuracy:.3f}, test {report.test_accuracy:.3f}"


def _bn_folding(run: _Run) -> None:
    """7. A BN-folded copy for deployment: outputs compared on validation images, inference timed against the model."""
    report, model = run.report, run.model
    with report.step("7 BN folding") as row:
        model.eval()
        report.folded_model, folded = fold_bn(model, return_report=True)
        x = run.task.x_val[:32].to(run.device)
        with torch.no_grad():  # these two calls are also forward_ms's warm-up
            report.fold_max_diff = (model(x) - report.folded_model(x)).abs().max().item()
        ms = forward_ms([model, report.folded_model], x, reps=3, warmup=0)
        report.folded_speedup = ms[0] / ms[1]
        row["decision"] = f"{len(folded['folded'])} BN layers folded (report.folded_model)"
        row["measurement"] = (f"max |diff| {report.fold_max_diff:.1e}; forward {ms[0]:.1f} -> {ms[1]:.1f} ms "
                              f"(x{report.folded_speedup:.2f}, {len(x)} images)")


def run_recipe(task: Task, model: nn.Module | None = None, seed: int = 0, steps: int = DEFAULTS.steps,
               batch_size: int = DEFAULTS.batch_size,
               rates=(RATE,), device=None, progress: bool = False, fold: bool = True,
               adabn_policy: bool | None = True, final_steps: int | None = None,
               head_steps: int | None = None, config: RecipeConfig | None = None) -> tuple[nn.Module, RecipeReport]:
    """Fine-tune a pretrained CNN on `task` with every decision of the course measured; returns (model, report).

    model: default ftcourse.load_pretrained(); any torchvision CNN with a Linear head and known layer groups
    (ResNets, ...). It is trained in place and returned unfolded (train it on, or evaluate it); the
    BN-folded copy for deployment is `report.folded_model` (fold=False skips folding).
    `rates`: one rate for every layer (default RATE), or candidates (e.g. RATE_CANDIDATES): each gets a short run
    of CHOICE_FRACTION * steps steps and the largest rate within one standard error of the best validation accuracy
    trains after them (final_fraction of the steps minus one more short run, the measurements' cost); with fewer than
    MIN_VAL_TO_CHOOSE validation images it warns and takes the middle one. The test set is evaluated once, at the end.
    `adabn_policy`: True (default) AdaBN always, False never, None when the BN gap is over ADABN_THRESHOLD;
    `final_steps` sets the final run's length (None: RecipeConfig.final_fraction of what the budget leaves, 80 %
    by default); `head_steps` the warm-up's length
    (None: `steps`; 0: no warm-up, the new head starts random). `config`: the settings no measurement decides
    (optimizer, schedule, augmentation, ...; RecipeConfig's defaults when None).
    """
    _check(task, model, steps, batch_size, rates)
    config = RecipeConfig() if config is None else config
    if not isinstance(config, RecipeConfig):
        raise TypeError(f"config must be a RecipeConfig, e.g. RecipeConfig(augment=4), got {type(config).__name__}")
    device = get_device(device)
    seed_everything(seed)
    model = (load_pretrained() if model is None else model).to(device)
    run = _Run(task, model, RecipeReport(config=config), device, seed, steps, batch_size, tuple(rates))
    _bn_statistics(run, adabn_policy)
    _head_warm_up(run, steps if head_steps is None else int(head_steps))
    groups = _bn_policy(run)
    train = _freeze_audit(run, groups)
    _learning_rate(run, final_steps)
    _fine_tune(run, groups, train, progress)
    if fold:
        _bn_folding(run)
    return model.train(), run.report
