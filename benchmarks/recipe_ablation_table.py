"""The recipe's ablation (studies.recipe_ablation_study) as tables: every arm against today's recipe, seed by seed.

Reads one or more results files of the study (seeds merged; a seed in two files is an error) and prints, per task
and number of images per class, each arm's paired difference from `recipe` on validation (what decides whether a
decision stays) and on test (what reports), with ftcourse.paired's verdict, and the arm's mean wall seconds.

    python benchmarks/recipe_ablation_table.py build/studies/a/recipe_ablation.json build/studies/b/recipe_ablation.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import ftcourse
from ftcourse.lab import studies


def merged_seeds(paths: list[Path]) -> dict[int, dict[str, float]]:
    """{seed: numbers} from every file; the same seed in two files is refused (which one would count?)."""
    out: dict[int, dict[str, float]] = {}
    for path in paths:
        for seed, numbers in json.loads(Path(path).read_text())["seeds"].items():
            if int(seed) in out:
                raise SystemExit(f"seed {seed} is in more than one file ({path}): give each seed once")
            out[int(seed)] = numbers
    return dict(sorted(out.items()))


def table(per_seed: dict[int, dict[str, float]], prefix: str, base: str = "recipe") -> ftcourse.Table:
    """One row per arm of `prefix` ("far 10/class"): its paired difference from `base` on validation and test."""
    arms = [*studies.ABLATION_BASELINES, *studies.ABLATION_ARMS]
    rows = []
    for arm in arms:
        if arm == base or any(f"{prefix} test {arm}" not in r for r in per_seed.values()):
            continue
        row = {"arm": arm}
        for split in ("val", "test"):
            c = ftcourse.paired({s: r[f"{prefix} {split} {arm}"] for s, r in per_seed.items()},
                                {s: r[f"{prefix} {split} {base}"] for s, r in per_seed.items()}, (arm, base))
            row[f"{split} (points)"] = f"{100 * c.mean:+.1f} ({c.wins}/{c.n})"
            row[f"{split} verdict"] = c.verdict
        row["seconds"] = sum(r[f"{prefix} seconds {arm}"] for r in per_seed.values()) / len(per_seed)
        rows.append(row)
    means = {split: sum(r[f"{prefix} {split} {base}"] for r in per_seed.values()) / len(per_seed)
             for split in ("val", "test")}
    return ftcourse.Table(rows, title=f"{prefix}: each arm minus {base} (mean, wins), seeds {sorted(per_seed)}",
                          formats={"seconds": "{:.1f}"},
                          notes=[f"{base}: val {means['val']:.3f}, test {means['test']:.3f} (means)"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="results files of recipe_ablation (e.g. build/studies/*/)")
    ap.add_argument("--base", default="recipe", help="the arm every other is compared with (default: recipe)")
    args = ap.parse_args(argv)
    per_seed = merged_seeds(args.files)
    if not per_seed:
        raise SystemExit("no seeds in these files yet")
    for task in studies.ABLATION_TASKS:
        for shots in studies.ABLATION_SHOTS:
            prefix = f"{task} {shots}/class"
            if all(f"{prefix} test {args.base}" in r for r in per_seed.values()):
                print(table(per_seed, prefix, args.base), end="\n\n")


if __name__ == "__main__":
    main()
