"""The course's whole recipe in one call: `run_recipe(task)` makes each decision the course teaches from a measurement.

In order (each decision timed and recorded on a RecipeReport):
1. BN statistics: how far the pretrained running means are from the target's; AdaBN if over ADABN_THRESHOLD.
2. Head warm-up: a new head trained on cached body features (a linear probe).
3. BN policy for the batch size (plain BN unless a batch is too small for batch statistics).
4. Freeze audit: one real step on copies confirms that every layer group trains.
5. Learning rate: short runs at each candidate rate from the warmed-up model, judged on the validation split.
6. Fine-tune every layer at the chosen rate (SGD, one-cycle), then validation and test accuracy.
7. BN folding for deployment: fold_bn, outputs compared, inference timed against the unfolded model.
Budget: the rate runs and the final run share `steps` minus one short run (the measurements cost about that), so
the recipe costs about one `fine_tune(task, steps=steps)` plus lp_ft's probe. The test set is used once, at the end.
"""
from __future__ import annotations

import copy
import numbers
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from .audit import freeze_audit
from .bn import adabn, bn_modules, fold_bn, freeze_bn_stats
from .cost import forward_ms
from .data import Task, make_loader
from .groups import freeze_to, layer_groups
from .inputs import require_int
from .models import find_head, load_pretrained, replace_head
from .optim import make_optimizer, param_groups
from .recipes import DEFAULTS
from .runtime import get_device, seed_everything
from .tables import Table, TableReport
from .train import evaluate, fit, precompute_features

__all__ = ["ADABN_THRESHOLD", "RATE_CANDIDATES", "CHOICE_FRACTION", "SMALL_BATCH", "RecipeReport", "bn_gap",
           "run_recipe"]

ADABN_THRESHOLD = 0.04  # bn_gap on validation images between clean targets and shifted ones (the BatchNorm lesson)
RATE_CANDIDATES = (0.01, 0.03, 0.1)  # one rate for all layers, SGD scale, around the learning-rate lesson's sweep
CHOICE_FRACTION = 0.1  # each candidate's short run has this share of `steps`; the final run gets the rest but one
SMALL_BATCH = 2  # below this, batch statistics are impossible (1 value per channel): BN statistics are frozen;
# from it up, plain BN (batch statistics), the BatchNorm lesson's policy


def bn_gap(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> float:
    """Mean over BN layers of mean |target mean - running mean| / running std (the measure of the BatchNorm lesson).

    The target's per-channel means come from AdaBN on a copy (all `images`, no labels); the model is untouched.
    """
    adapted = adabn(copy.deepcopy(model), make_loader(images, torch.zeros(len(images)), batch_size=batch_size))
    old, new = dict(bn_modules(model)), dict(bn_modules(adapted))
    gaps = [((new[n].running_mean - m.running_mean).abs() / m.running_var.sqrt()).mean().item() for n, m in old.items()]
    return sum(gaps) / len(gaps)


@dataclass(repr=False)
class RecipeReport(TableReport):
    """Every decision of run_recipe, with the measurement behind it and its wall seconds; print it to read it.

    The typed fields hold the numbers; each row holds the text made from them (step, decision, measurement) and
    the step's wall seconds.
    """

    rows: list[dict] = field(default_factory=list)
    adabn_applied: bool = False
    bn_gap_before: float = float("nan")
    bn_gap_after: float = float("nan")
    head_val_accuracy: float = float("nan")
    bn_policy: str = ""
    trainable_groups: int = 0
    rate_scores: dict = field(default_factory=dict)  # candidate rate -> validation accuracy of its short run
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


def _optimizer(groups, lr) -> torch.optim.Optimizer:
    """SGD with momentum over every group at rate `lr`, the course's weight decay."""
    return make_optimizer(param_groups(groups, lr, weight_decay=DEFAULTS.weight_decay))


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
    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.task.x_val, self.task.y_val


def _bn_statistics(run: _Run, adabn_policy: bool | None) -> None:
    """1. The BN gap on the validation images (no labels); AdaBN with the training images if over the threshold."""
    report, task = run.report, run.task
    with report.step("1 BN statistics") as row:
        report.bn_gap_before = report.bn_gap_after = bn_gap(run.model, task.x_val) if bn_modules(run.model) else 0.0
        report.adabn_applied = report.bn_gap_before > ADABN_THRESHOLD if adabn_policy is None else bool(adabn_policy)
        if report.adabn_applied:
            adabn(run.model, make_loader(task.x_train, task.y_train, batch_size=64))
            report.bn_gap_after = bn_gap(run.model, task.x_val)
        rule = ("adabn_policy given" if adabn_policy is not None else
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
        if b < SMALL_BATCH:
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
        audit = freeze_audit(run.model.train(), _optimizer(groups, run.rates[0]), next(iter(train)), groups=groups)
        report.trainable_groups = sum(r["moved"] == r["tensors"] > 0 for r in audit.rows)
        moved = ", ".join(f"{r['moved']}/{r['tensors']}" for r in audit.rows)
        bn_moved = sum(r["bn_stats_moved"] for r in audit.rows), sum(r["bn_layers"] for r in audit.rows)
        row["decision"] = f"{report.trainable_groups}/{len(groups)} groups train" + (
            "" if audit.ok else f"; TRAPS: {'; '.join(audit.traps)}")
        row["measurement"] = f"tensors moved per group {moved}; BN stats moved {bn_moved[0]}/{bn_moved[1]}"
    return train


def _learning_rate(run: _Run, final_steps: int | None) -> None:
    """5. A short run from the warmed-up model at each candidate rate; the largest within 1 SE of the best wins."""
    report, rates = run.report, run.rates
    with report.step("5 learning rate") as row:
        short = report.steps_per_candidate = max(1, int(run.steps * CHOICE_FRACTION))
        report.final_steps = max(1, run.steps - short * (len(rates) + 1)) if final_steps is None else int(final_steps)
        for lr in rates:
            trial = copy.deepcopy(run.model)
            fit(trial, _train_loader(run.task, run.batch_size, run.seed), steps=short, device=run.device,
                optimizer=_optimizer(layer_groups(trial), lr), progress=False)
            report.rate_scores[lr] = evaluate(trial, run.val, device=run.device)
        best = max(report.rate_scores.values())
        se = (best * (1 - best) / len(run.task.y_val)) ** 0.5  # standard error of the best validation accuracy
        report.chosen_lr = max(lr for lr, acc in report.rate_scores.items() if acc >= best - se)
        scores = ", ".join(f"{lr:g}: {a:.3f}" for lr, a in report.rate_scores.items())
        row["decision"] = f"{report.chosen_lr:g} for every group (largest within 1 SE of the best)"
        row["measurement"] = f"val accuracy after {short} steps: {scores}; SE {se:.3f}"


def _fine_tune(run: _Run, groups: list, train: DataLoader, progress: bool) -> None:
    """6. Every group for the final steps at the chosen rate (one-cycle SGD); then validation, then test, once."""
    report, task = run.report, run.task
    with report.step("6 fine-tune") as row:
        fit(run.model, train, steps=report.final_steps, optimizer=_optimizer(groups, report.chosen_lr),
            device=run.device, progress=progress)
        report.val_accuracy = evaluate(run.model, run.val, device=run.device)
        report.test_accuracy = evaluate(run.model, (task.x_test, task.y_test), device=run.device)
        row["decision"] = f"all groups, {report.final_steps} steps at {report.chosen_lr:g}"
        row["measurement"] = f"val {report.val_accuracy:.3f}, test {report.test_accuracy:.3f}"


def _bn_folding(run: _Run) -> None:
    """7. A BN-folded copy for deployment: outputs compared on validation images, inference timed against the model."""
    report, model = run.report, run.model
    with report.step("7 BN folding") as row:
        model.eval()
        report.folded_model, folded = fold_bn(model, return_report=True)
        x = run.task.x_val[:32].to(run.device)
        with torch.no_grad():
            report.fold_max_diff = (model(x) - report.folded_model(x)).abs().max().item()
        ms = forward_ms([model, report.folded_model], x, reps=5)
        report.folded_speedup = ms[0] / ms[1]
        row["decision"] = f"{len(folded['folded'])} BN layers folded (report.folded_model)"
        row["measurement"] = (f"max |diff| {report.fold_max_diff:.1e}; forward {ms[0]:.1f} -> {ms[1]:.1f} ms "
                              f"(x{report.folded_speedup:.2f}, {len(x)} images)")


def run_recipe(task: Task, model: nn.Module | None = None, seed: int = 0, steps: int = DEFAULTS.steps,
               batch_size: int = DEFAULTS.batch_size,
               rates=RATE_CANDIDATES, device=None, progress: bool = False, fold: bool = True,
               adabn_policy: bool | None = None, final_steps: int | None = None,
               head_steps: int | None = None) -> tuple[nn.Module, RecipeReport]:
    """Fine-tune a pretrained CNN on `task` with every decision of the course measured; returns (model, report).

    model: default ftcourse.load_pretrained(); any torchvision CNN with a Linear head and known layer groups
    (ResNets, ...). It is trained in place and returned unfolded (train it on, or evaluate it); the
    BN-folded copy for deployment is `report.folded_model` (fold=False skips folding).
    `rates`: candidate rates (one for every layer); each gets a short run of CHOICE_FRACTION * steps steps and
    the largest rate within one standard error of the best validation accuracy trains for the remaining steps
    (steps minus one more short run, the cost of the measurements). The test set is evaluated once, at the end.
    Ablations: `adabn_policy` True/False forces AdaBN on/off (None: decided by the BN gap); `final_steps`
    sets the final run's length (None: what the budget leaves); `head_steps` the warm-up's length (None:
    `steps`; 0: no warm-up, the new head starts random).
    """
    _check(task, model, steps, batch_size, rates)
    device = get_device(device)
    seed_everything(seed)
    model = (load_pretrained() if model is None else model).to(device)
    run = _Run(task, model, RecipeReport(), device, seed, steps, batch_size, rates)
    _bn_statistics(run, adabn_policy)
    _head_warm_up(run, steps if head_steps is None else int(head_steps))
    groups = _bn_policy(run)
    train = _freeze_audit(run, groups)
    _learning_rate(run, final_steps)
    _fine_tune(run, groups, train, progress)
    if fold:
        _bn_folding(run)
    return model.train(), run.report
