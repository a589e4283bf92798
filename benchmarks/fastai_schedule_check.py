"""ftcourse.fastai_fine_tune against real fastai: the same schedules, and the same weights after training.

Needs fastai (2.8.x) importable next to ftcourse, e.g. a side venv that sees the project's packages;
fastai is no dependency of the project. Without fastai this prints a message and exits 0.

1. Schedules: fastai's `Learner.fine_tune` on the course backbone (3 layer groups, the course's
   split = fastai's resnet split), every optimizer step's lr per group and beta1 recorded by a
   callback, against ftcourse's `FastaiOneCycle` for the same phases; max relative difference.
2. Training: the same pretrained backbone and new head, the same shuffled batches (one torch
   DataLoader, drop_last like fastai's), `learn.fine_tune(epochs, base_lr)` vs
   `ftcourse.fastai_fine_tune(task, model=copy)`: max abs difference of the weights, BN running
   statistics and test accuracy.

    python benchmarks/fastai_schedule_check.py [--shots 10] [--epochs 3] [--batch-size 16] [--base-lr 1e-2]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ftcourse from this checkout
import ftcourse  # noqa: E402
import ftcourse.fastai_style as fastai_style  # noqa: E402
from ftcourse.fastai_style import FastaiOneCycle  # noqa: E402

try:
    import fastai
    from fastai.callback.core import Callback
    import fastai.callback.schedule  # noqa: F401  (patches Learner.fine_tune and fit_one_cycle)
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
except ImportError as exc:  # fastai is optional here
    print(f"fastai is not importable ({exc}); skipping the comparison (pip install fastai==2.8.12 in a side venv)")
    sys.exit(0)


class RecordHypers(Callback):
    """Every training step's lr per group and beta1, as the optimizer holds them just before the step."""
    order = 70  # after ParamScheduler (60) has set this batch's values

    def __init__(self):
        self.step_lrs, self.step_moms = [], []  # not lrs / moms: those are the Learner's attributes

    def before_step(self):
        self.step_lrs.append([h["lr"] for h in self.opt.hypers])
        self.step_moms.append(self.opt.hypers[-1]["mom"])


class _Opt:
    """A stand-in optimizer with one param group per peak rate, to read FastaiOneCycle's values."""

    def __init__(self, peaks):
        self.param_groups = [{"lr": p, "betas": (0.95, 0.99)} for p in peaks]


class LookAhead:
    """A loader whose iterator is exhausted when its last batch is handed out.

    ftcourse's fit stops right after its last step and leaves that pass's iterator unfinished;
    torch's RandomSampler then skips a draw it makes at the end of a finished pass, so the next
    pass's order differs from fastai's (which finishes every pass). Same distribution of batches,
    another order: this wrapper makes the order the same, for the weight comparison only.
    """

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        current = next(it)
        for following in it:
            yield current
            current = following
        yield current


def fit_finishing_passes(model, train, **kwargs):
    return ftcourse.fit(model, LookAhead(train), **kwargs)


def ours(peaks, n, pct, div) -> tuple[list, list]:
    opt = _Opt(peaks)
    sched = FastaiOneCycle(opt, n, pct, div)
    lrs, moms = [], []
    for i in range(n):
        if i:
            sched(i)
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append(opt.param_groups[0]["betas"][0])
    return lrs, moms


def rel_diff(a, b) -> float:
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return float(((a - b).abs() / b.abs().clamp_min(1e-30)).max())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--freeze-epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--base-lr", type=float, default=1e-2)
    ap.add_argument("--test", type=int, default=200, help="test images used (a class-balanced prefix)")
    args = ap.parse_args(argv)
    os.environ["FTCOURSE_THREADS"] = "1"  # seed_everything (called by every recipe) sets this count
    torch.set_num_threads(1)
    print(f"fastai {fastai.__version__}, torch {torch.__version__}")

    task = ftcourse.target_task(shots=args.shots, seed=args.seed)
    task = dataclasses.replace(task, x_test=task.x_test[:args.test], y_test=task.y_test[:args.test])
    ftcourse.seed_everything(args.seed, threads=1)
    start = ftcourse.load_pretrained()
    ftcourse.replace_head(start, task.num_classes, seed=args.seed)

    # fastai on the same model, groups and batches
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(task.x_train, task.y_train),
                                        batch_size=args.batch_size, shuffle=True, drop_last=True,
                                        generator=torch.Generator().manual_seed(args.seed))
    valid = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(task.x_test[:64], task.y_test[:64]), 64)
    model_fa = copy.deepcopy(start)
    rec = RecordHypers()
    learn = Learner(DataLoaders(train, valid), model_fa, loss_func=torch.nn.functional.cross_entropy,
                    splitter=lambda m: [ftcourse.params_of(g) for g in ftcourse.layer_groups(m, 3)], cbs=[rec])
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(args.epochs, base_lr=args.base_lr, freeze_epochs=args.freeze_epochs)
    n = len(train)

    print("\n1. lr per group and beta1 at every step, fastai's Recorder vs ftcourse's FastaiOneCycle")
    b = args.base_lr
    phases = [("frozen", [b / 10, b / 10, b], args.freeze_epochs * n, 0.99, 25.0),
              ("unfrozen", ftcourse.even_mults(b / 2 / 100, b / 2, 3), args.epochs * n, 0.3, 5.0)]
    at = 0
    for name, peaks, steps, pct, div in phases:
        lrs, moms = ours(peaks, steps, pct, div)
        fa_lrs, fa_moms = rec.step_lrs[at:at + steps], rec.step_moms[at:at + steps]
        at += steps
        print(f"  {name}: {steps} steps, peaks {['%.3g' % p for p in peaks]}; fastai lr first/last "
              f"{['%.3g' % v for v in fa_lrs[0]]} / {['%.3g' % v for v in fa_lrs[-1]]}; "
              f"max rel diff lr {rel_diff(lrs, fa_lrs):.1e}, beta1 {rel_diff(moms, fa_moms):.1e}")
    assert at == len(rec.step_lrs), (at, len(rec.step_lrs))

    print("\n2. training: the same start, the same batches")
    fastai_style.fit = fit_finishing_passes  # fastai_fine_tune's fit: the same batch order as fastai (see LookAhead)
    model_ft, acc_ft = ftcourse.fastai_fine_tune(task, seed=args.seed, epochs=args.epochs, base_lr=args.base_lr,
                                                 freeze_epochs=args.freeze_epochs, batch_size=args.batch_size,
                                                 model=copy.deepcopy(start), device="cpu")
    acc_fa = ftcourse.evaluate(model_fa, (task.x_test, task.y_test))
    sd_fa, sd_ft = model_fa.state_dict(), model_ft.state_dict()
    params = {k for k, _ in model_ft.named_parameters()}
    diff_p = max(float((sd_fa[k] - sd_ft[k]).abs().max()) for k in params)
    diff_b = max(float((sd_fa[k].float() - sd_ft[k].float()).abs().max()) for k in sd_ft if k not in params)
    moved = max(float((sd_ft[k] - start.state_dict()[k]).abs().max()) for k in params)
    print(f"  max |weight difference| {diff_p:.2e} (largest change from the start {moved:.2e}); "
          f"BN buffers {diff_b:.2e}")
    print(f"  test accuracy ({len(task.y_test)} images): fastai {acc_fa:.3f}, ftcourse.fastai_fine_tune {acc_ft:.3f}")


if __name__ == "__main__":
    main()
