"""Which seeds the claim tests train, and which part of seed 0 a lesson already trains live (the tests' scheduling).

`make test` trains parts of seed 0 (`FRESH`) and asserts every claim on the shipped seeds too; `make claims`
sets $FTCOURSE_CLAIM_SEEDS (0-5) and trains every part. A lesson trains part of its study's seed 0 live and
compares it with the shipped file in a claim cell (`IN_LESSONS`); when that notebook runs in the same pytest
session, the claim tests train only the rest (`lesson_aware`), so nothing is trained twice for one table. In
`make test` (QUICK) they train less: one more part per file, a code path no lesson runs (`QUICK_PARTS`,
`quick_rest`), and take the rest of seed 0 from the file, which keeps `make test` inside its 15 minutes
(training all of seed 0 took 23).
Every claim file imports its seeds from here: `from claim_seeds import FRESH, SEEDS, SEED_IDS, ...`.
"""
from __future__ import annotations

import os

import ftcourse
from ftcourse.lab.shipped import STUDY_SEEDS, quantity_kind, read_results, results_path

# What a lesson trains live on seed 0 and compares with the shipped file in a claim cell of its own
# (`differences_from_shipped(..., partial=True)`). When that notebook runs in the same pytest session as the
# claim tests (`make test`), they train only the rest of seed 0, so nothing is trained twice for one table;
# `make claims` (no notebooks) trains everything. {study: (notebook, what it trains)}
IN_LESSONS = {
    "warm_up": ("02_warming_up_the_head.ipynb", None),  # None: all of it
    "data_size": ("02_warming_up_the_head.ipynb", (1,)),  # images per class: scratch, probe, fine-tune at 1/class
    "rates": ("03_differential_learning_rates.ipynb", ("uniform 0.01", "np.array([1e-4,1e-3,1e-2])", "uniform 0.3",
                                                       "slice(0.003, 0.3)", "two-stage (lp_ft 0.01)")),  # skip=...
    "bn_policy": ("04_batchnorm_when_fine_tuning.ipynb", (2, 32)),  # batch sizes, every policy
    "recipe_ablation": ("05_the_recipe.ipynb", {"near 10/class": ("one call, shifts of up to 4 px",)}),  # cell: arms
    "recipe_length": ("05_the_recipe.ipynb",
                      {"near 10/class": ("shifts, one rate 0.03, always AdaBN, final run 80 %",)}),  # run_recipe()
    "surgical_tuned": ("05_the_recipe.ipynb", ("inverted source",)),  # tasks: every setup at its chosen rate
}


QUICK = "FTCOURSE_CLAIM_SEEDS" not in os.environ  # `make test`: parts of seed 0 (QUICK_PARTS, quick_rest)


def checked_in_lesson(study: str, notebooks) -> tuple[bool, object]:
    """(whether the lesson that trains part of `study` live is among `notebooks`, what it trains: IN_LESSONS)."""
    notebook, part = IN_LESSONS[study]
    return notebook in set(notebooks), part


def lesson_aware(name: str, study, notebooks, rest, quick_rest=None):
    """`study`, except on seed 0 when the lesson that trains part of it live is among `notebooks`.

    Then seed 0 is `rest(seed, part, shipped)`: it trains what the lesson does not (`part` = IN_LESSONS[name][1])
    and fills in the lesson's part from the shipped seed-0 numbers, which the notebook's own claim cell
    compares with its live run in the same session. In `make test` (QUICK) `quick_rest`, when given, replaces
    `rest`: it trains a smaller part (or nothing: the lesson's live runs are then the check against the file).
    """
    in_lesson, part = checked_in_lesson(name, notebooks)
    if not in_lesson:
        return study
    rest = quick_rest if QUICK and quick_rest is not None else rest
    shipped = read_results(name)["seeds"]["0"]
    return lambda seed: rest(seed, part, dict(shipped)) if seed == 0 else study(seed)


def fresh_seeds() -> tuple[int, ...]:
    """Seeds whose studies the claim tests train again: $FTCOURSE_CLAIM_SEEDS ("0,1,2,3,4,5"), else (0,).

    `make claims` re-runs seeds 0-5.
    """
    value = os.environ.get("FTCOURSE_CLAIM_SEEDS", "0")
    try:
        seeds = tuple(sorted({int(s) for s in value.split(",") if s.strip()}))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0:
        raise ValueError(f"FTCOURSE_CLAIM_SEEDS must be comma-separated seeds >= 0 like '0,1,2', got {value!r}; "
                         "unset it to re-run seed 0 only")
    return seeds


BASE_SEEDS = (0, 1, 2)  # claims that read no results file (lessons 01 and 06, the transfer table) run on these


def seeds_to_check(fresh: tuple[int, ...] | None = None, study: str | None = None) -> list[int]:
    """The shipped seeds (of `study`, else BASE_SEEDS) and the fresh ones: each claim is asserted on all of them."""
    fresh = fresh_seeds() if fresh is None else fresh
    return sorted(set(BASE_SEEDS if study is None else STUDY_SEEDS[study]) | set(fresh))


def seed_ids(seeds, fresh) -> list[str]:
    """pytest ids: '0-fresh', '1-shipped', ..."""
    return [f"{s}-{'fresh' if s in fresh else 'shipped'}" for s in seeds]


def results_per_seed(name: str, study, seeds, fresh) -> dict[int, dict[str, float]]:
    """{seed: numbers}: `study(seed)` trained now for seeds in `fresh`, the shipped file's numbers for the others.

    The shipped numbers of a seed are what this code measured when the file was written
    (`differences_from_shipped` checks that on every fresh shipped seed), so a claim asserted on them
    is a claim about what the lesson prints.
    """
    shipped = read_results(name)["seeds"]
    out = {}
    for seed in seeds:
        if seed in fresh:
            out[seed] = study(seed)
        elif str(seed) in shipped:
            out[seed] = shipped[str(seed)]
        else:
            raise ValueError(f"seed {seed} is neither fresh nor in {results_path(name)}; add it to FTCOURSE_CLAIM_SEEDS")
    return out


FRESH = fresh_seeds()  # trained here: seed 0 in `make test`, $FTCOURSE_CLAIM_SEEDS in `make claims`
SEEDS = seeds_to_check(FRESH)  # claims asserted on these: fresh runs, else the shipped file's numbers
SEED_IDS = seed_ids(SEEDS, FRESH)
SEEDS_OF = {name: seeds_to_check(FRESH, name) for name in STUDY_SEEDS}  # per results file: its seeds and FRESH
SEED_IDS_OF = {name: seed_ids(seeds, FRESH) for name, seeds in SEEDS_OF.items()}
SHIPPED_AND_FRESH = {name: [s for s in seeds if s in FRESH] for name, seeds in STUDY_SEEDS.items()}  # compared
# with the file: a fresh run of a shipped seed


# What `make test` ($FTCOURSE_CLAIM_SEEDS unset: seed 0 fresh) trains of seed 0 in the studies no lesson trains
# live: the study's keyword arguments for one part of it (about a quarter of its cost); the rest of seed 0 is the
# shipped file's. The part is compared with the file as a whole seed is, so code that no longer reproduces the
# file still fails `make test`; `make claims` trains every part of every fresh seed.
QUICK_PARTS = {"time_to_accuracy": {"rates": (0.01,), "steps": 100},  # a constant rate: its first 100 steps are
               # the shipped run's first 100 (validation reads at 25-100 compared; its wall time is the file's)
               "shifted_target": {"kinds": ("contrast",), "policies": ("batch statistics",)},
               "adabn": {"sizes": (32,)}, "tuned_families": {"families": ("head 10x",), "grid": (0.03,)},
               "group_rates": {"setups": ("group 1 at 1e-3",)},
               "recipe_floor": {"tasks": ("far",), "shots": (10,)},
               "unseen": {"tasks": ("letters",), "shots": (10,), "arms": ("shifts, one rate 0.03, always AdaBN",),
                          "baselines": ()},  # the rebuilt recipe on one unseen cell, read through folder_task
               "recipe_length": {"tasks": ("far",), "shots": (10,), "unseen": ()}}  # its three arms, one cell


def quick(name: str, study):
    """`study`, except on seed 0 in `make test`: the part QUICK_PARTS[name] trained, the rest of seed 0 as shipped
    (choices, such as a chosen rate, made again over the whole seed)."""
    if not QUICK or name not in QUICK_PARTS:
        return study
    from ftcourse.lab.studies import choose_tops
    finish = {"tuned_families": choose_tops}.get(name, dict)

    def run(seed: int) -> dict[str, float]:
        if seed != 0:
            return study(seed)
        part = {k: v for k, v in study(seed, **QUICK_PARTS[name]).items() if quantity_kind(k) != "seconds"}
        return finish(read_results(name)["seeds"]["0"] | part)
    return run


def study_results(name: str) -> dict[int, dict[str, float]]:
    """{seed: numbers} of a whole study (`ftcourse.lab.studies.STUDIES[name]`): FRESH seeds trained (`quick`), the
    rest shipped."""
    from ftcourse.lab.studies import STUDIES
    return results_per_seed(name, quick(name, STUDIES[name]), SEEDS_OF[name], FRESH)


def verdict(per_seed: dict[int, dict[str, float]], a: str, b: str) -> str:
    """`ftcourse.paired`'s verdict on quantity a against quantity b over every seed of `per_seed`."""
    return ftcourse.paired({s: r[a] for s, r in per_seed.items()}, {s: r[b] for s, r in per_seed.items()}).verdict
