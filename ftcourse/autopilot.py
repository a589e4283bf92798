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
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .audit import freeze_audit
from .bn import adabn, bn_modules, fold_bn, freeze_bn_stats
from .cost import forward_ms
from .data import Task, make_loader
from .groups import freeze_to, layer_groups
from .models import find_head, load_pretrained, replace_head
from .optim import make_optimizer, param_groups
from .recipes import DEFAULTS
from .runtime import get_device, seed_everything
from .tables import Table
from .train import evaluate, fit, precompute_features

__all__ = ["ADABN_THRESHOLD", "RATE_CANDIDATES", "CHOICE_FRACTION", "SMALL_BATCH", "RecipeReport", "bn_gap",
           "run_recipe"]

ADABN_THRESHOLD = 0.04  # bn_gap on validation images: clean 0.02, colour/blur 0.06, contrast 0.08, invert 0.2
RATE_CANDIDATES = (0.01, 0.03, 0.1)  # one rate for all layers, SGD scale (the learning-rate study's validation sweep picked 0.03)
CHOICE_FRACTION = 0.1  # each candidate's short run has this share of `steps`; the final run gets the rest but one
SMALL_BATCH = 2  # below this, batch statistics are impossible (1 value per channel): BN statistics are frozen


def bn_gap(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> float:
    """Mean over BN layers of mean |target mean - running mean| / running std (the measure of the BatchNorm lesson).

    The target's per-channel means come from AdaBN on a copy (all `images`, no labels); the model is untouched.
    """
    adapted = adabn(copy.deepcopy(model), make_loader(images, torch.zeros(len(images)), batch_size=batch_size))
    old, new = dict(bn_modules(model)), dict(bn_modules(adapted))
    gaps = [((new[n].running_mean - m.running_mean).abs() / m.running_var.sqrt()).mean().item() for n, m in old.items()]
    return sum(gaps) / len(gaps)


@dataclass
class RecipeReport:
    """Every decision of run_recipe, with the measurement behind it and its wall seconds; print it to read it."""

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
        self.rows.append({"step": step, "decision": decision, "measurement": measurement, "seconds": seconds})

    def table(self) -> Table:
        return Table(self.rows, title="run_recipe: each decision and the measurement behind it",
                     formats={"seconds": "{:.1f}"}, notes=[f"total {self.seconds:.1f} s; val {self.val_accuracy:.3f}, "
                                                            f"test {self.test_accuracy:.3f}"])

    def __str__(self) -> str:
        return str(self.table())

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def _check(task, model, steps, batch_size, rates) -> None:
    """Bad input -> an error that names the fix."""
    if not isinstance(task, Task):
        raise TypeError(f"task must be a ftcourse Task, e.g. ftcourse.target_task(shots=10), got {type(task).__name__}")
    if task.x_val is None or task.y_val is None or len(task.y_val) == 0:
        raise ValueError(f"{task.name!r} has no validation split: the recipe chooses on it, never on the test set; "
                         "add one with dataclasses.replace(task, x_val=..., y_val=...)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 5:
        raise ValueError(f"steps must be an int >= 5 (rate runs and the final run share them), got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, e.g. 32, got {batch_size!r}")
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
    return DataLoader(TensorDataset(task.x_train, task.y_train), batch_size=batch_size, shuffle=True,
                      drop_last=n > batch_size and n % batch_size == 1, generator=torch.Generator().manual_seed(seed))


def _optimizer(groups, lr) -> torch.optim.Optimizer:
    """SGD with momentum over every group at rate `lr`, the course's weight decay."""
    return make_optimizer(param_groups(groups, lr, weight_decay=DEFAULTS.weight_decay))


def run_recipe(task: Task, model: nn.Module | None = None, seed: int = 0, steps: int = 200, batch_size: int = 32,
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
    report, x_val, y_val = RecipeReport(), task.x_val, task.y_val
    wd = DEFAULTS.weight_decay

    # 1. BN statistics: the BN gap on the validation images (no labels); AdaBN with the training images
    t0 = time.perf_counter()
    report.bn_gap_before = report.bn_gap_after = bn_gap(model, x_val) if bn_modules(model) else 0.0
    report.adabn_applied = report.bn_gap_before > ADABN_THRESHOLD if adabn_policy is None else bool(adabn_policy)
    if report.adabn_applied:
        adabn(model, make_loader(task.x_train, task.y_train, batch_size=64))
        report.bn_gap_after = bn_gap(model, x_val)
    decision = "AdaBN (training images)" if report.adabn_applied else "keep pretrained statistics"
    report.add("1 BN statistics", decision, f"gap {report.bn_gap_before:.3f} -> {report.bn_gap_after:.3f} "
               f"(threshold {ADABN_THRESHOLD})", time.perf_counter() - t0)

    # 2. head warm-up on cached features (linear_probe's recipe)
    t0 = time.perf_counter()
    head = replace_head(model, task.num_classes, seed=seed)
    head_steps = steps if head_steps is None else int(head_steps)
    if head_steps > 0:
        feats, labels = precompute_features(model, (task.x_train, task.y_train), device=device)
        fit(head, make_loader(feats, labels, batch_size=batch_size, shuffle=True, seed=seed), steps=head_steps,
            device=device, optimizer=make_optimizer(head, lr=DEFAULTS.lr_probe, weight_decay=wd),
            progress=False)
    report.head_val_accuracy = evaluate(model, (x_val, y_val), device=device)
    report.add("2 head warm-up", f"new head, {head_steps} steps on cached features",
               f"val accuracy {report.head_val_accuracy:.3f}", time.perf_counter() - t0)

    # 3. BN policy for the batch size
    t0 = time.perf_counter()
    groups = freeze_to(model, 0)  # everything trainable, BN pins removed
    if batch_size < SMALL_BATCH:
        freeze_bn_stats(model)
        report.bn_policy = "frozen statistics"
        reason = f"batch {batch_size}: one value per channel in small feature maps, no batch statistics"
    else:
        report.bn_policy = "batch statistics"
        reason = (f"batch {batch_size} >= 8: the three BN policies tied in the BN policy study" if batch_size >= 8 else
                  f"batch {batch_size}: the BN policy study (200 steps from pretrained) found plain BN best at 2 and 4; Wu & "
                  "He's loss at 2 is for long training from scratch")
    report.add("3 BN policy", report.bn_policy, reason, time.perf_counter() - t0)

    # 4. freeze audit: one real step on copies, every group must train
    t0 = time.perf_counter()
    train = _train_loader(task, batch_size, seed)
    audit = freeze_audit(model.train(), _optimizer(groups, rates[0]), next(iter(train)), groups=groups)
    report.trainable_groups = sum(r["moved"] == r["tensors"] > 0 for r in audit.rows)
    moved = ", ".join(f"{r['moved']}/{r['tensors']}" for r in audit.rows)
    bn_moved = sum(r["bn_stats_moved"] for r in audit.rows), sum(r["bn_layers"] for r in audit.rows)
    report.add("4 freeze audit", f"{report.trainable_groups}/{len(groups)} groups train" + ("" if audit.ok else
               f"; TRAPS: {'; '.join(audit.traps)}"), f"tensors moved per group {moved}; BN stats moved "
               f"{bn_moved[0]}/{bn_moved[1]}", time.perf_counter() - t0)

    # 5. learning rate: short runs from the warmed-up model, judged on validation
    t0 = time.perf_counter()
    short = max(1, int(steps * CHOICE_FRACTION))
    report.steps_per_candidate = short
    report.final_steps = max(1, steps - short * (len(rates) + 1)) if final_steps is None else int(final_steps)
    for lr in rates:
        trial = copy.deepcopy(model)
        fit(trial, _train_loader(task, batch_size, seed), steps=short, optimizer=_optimizer(layer_groups(trial), lr),
            device=device, progress=False)
        report.rate_scores[lr] = evaluate(trial, (x_val, y_val), device=device)
    best = max(report.rate_scores.values())
    se = (best * (1 - best) / len(y_val)) ** 0.5  # standard error of the best validation accuracy
    report.chosen_lr = max(lr for lr, acc in report.rate_scores.items() if acc >= best - se)
    scores = ", ".join(f"{lr:g}: {a:.3f}" for lr, a in report.rate_scores.items())
    report.add("5 learning rate", f"{report.chosen_lr:g} for every group (largest within 1 SE of the best)",
               f"val accuracy after {short} steps: {scores}; SE {se:.3f}", time.perf_counter() - t0)

    # 6. fine-tune every layer for the remaining steps, one-cycle SGD
    t0 = time.perf_counter()
    fit(model, train, steps=report.final_steps, optimizer=_optimizer(groups, report.chosen_lr), device=device,
        progress=progress)
    report.val_accuracy = evaluate(model, (x_val, y_val), device=device)
    report.test_accuracy = evaluate(model, (task.x_test, task.y_test), device=device)
    report.add("6 fine-tune", f"all groups, {report.final_steps} steps at {report.chosen_lr:g}",
               f"val {report.val_accuracy:.3f}, test {report.test_accuracy:.3f}", time.perf_counter() - t0)

    # 7. BN folding for deployment
    if fold:
        t0 = time.perf_counter()
        model.eval()
        report.folded_model, folded = fold_bn(model, return_report=True)
        x = x_val[:32].to(device)
        with torch.no_grad():
            report.fold_max_diff = (model(x) - report.folded_model(x)).abs().max().item()
        ms = forward_ms([model, report.folded_model], x, reps=5)
        report.folded_speedup = ms[0] / ms[1]
        report.add("7 BN folding", f"{len(folded['folded'])} BN layers folded (report.folded_model)",
                   f"max |diff| {report.fold_max_diff:.1e}; forward {ms[0]:.1f} -> {ms[1]:.1f} ms "
                   f"(x{report.folded_speedup:.2f}, {len(x)} images)", time.perf_counter() - t0)
    return model.train(), report
