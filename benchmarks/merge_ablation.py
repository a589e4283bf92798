"""Merge the parts of the recipe ablation (studies.recipe_ablation_study) into one results file, checking them.

The ablation ran in parts: seeds in separate processes, and arms added after some seeds were done, run later on
those seeds alone. This script joins the parts seed by seed:
- a key held by two parts must have the same value in both (a recomputed arm agrees bit for bit; wall seconds,
  which never agree, are kept from the first part);
- an arm that forces the AdaBN decision ("..., always AdaBN") that a part ran only where the decision differs is
  completed where it does not: there it is its parent's run (the same arguments with AdaBN decided by the gap,
  which came out the same way), copied, as `studies.recipe_ablation_study` itself does (`_derived`);
- every seed must then hold every key of every arm.

    python benchmarks/merge_ablation.py --out data/results/recipe_ablation.json build/studies/a/recipe_ablation.json \
        build/studies/b/recipe_ablation.json build/studies/c/*.json build/studies/d/*.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ftcourse.lab import shipped, studies

KEYS = ("val", "test", "seconds", "chosen rate", "adabn")  # what a recipe arm records per cell


def _parts(paths: list[Path]) -> list[tuple[dict[int, dict], dict[int, str], dict]]:
    """Each file as ({seed: numbers}, {seed: code}, header). A file without "seeds" holds one seed, named by its
    file name ("supp_seed3.json"), as the supplement runs wrote them."""
    out = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if "seeds" not in data:
            seed = int(Path(path).stem.rsplit("seed", 1)[1])
            data = {"seeds": {str(seed): {k: v for k, v in data.items() if not k.startswith("_")}},
                    "seconds": data.get("_seconds", 0.0)}
        out.append(({int(s): v for s, v in data["seeds"].items()}, shipped.seed_codes(data), data))
    return out


def merge(parts: list[tuple[dict[int, dict], dict[int, str], dict]]) -> tuple[dict[int, dict], dict[int, str]]:
    """({seed: numbers}, {seed: code}) of all the parts; a value held twice must agree (seconds excepted)."""
    seeds: dict[int, dict] = {}
    codes: dict[int, str] = {}
    for numbers, part_codes, _ in parts:
        for seed, values in numbers.items():
            have = seeds.setdefault(seed, {})
            for key, value in values.items():
                if key in have and " seconds " not in key and have[key] != value:
                    raise SystemExit(f"seed {seed}: {key!r} is {have[key]!r} in one part and {value!r} in another")
                have.setdefault(key, value)
            if seed in part_codes:
                codes.setdefault(seed, part_codes[seed])
    return dict(sorted(seeds.items())), dict(sorted(codes.items()))


def complete_adabn_arms(seeds: dict[int, dict], arms=tuple(studies.ABLATION_ARMS)) -> list[str]:
    """Fill in, in place, the cells where an arm that forces AdaBN is its parent's run; returns what was copied."""
    copied = []
    for arm in arms:
        kwargs = studies._arm_kwargs(arm)
        if kwargs.get("adabn_policy") is None:
            continue
        parents = [p for p in arms if p != arm and studies._arm_kwargs(p).get("adabn_policy") is None
                   and studies._same_but(kwargs, studies._arm_kwargs(p), "adabn_policy")]
        for seed, numbers in seeds.items():
            for task in studies.ABLATION_TASKS:
                for shots in studies.ABLATION_SHOTS:
                    cell = f"{task} {shots}/class"
                    if f"{cell} test {arm}" in numbers:
                        continue
                    for parent in parents:
                        if numbers.get(f"{cell} adabn {parent}") == float(kwargs["adabn_policy"]):
                            for key in KEYS:
                                numbers[f"{cell} {key} {arm}"] = numbers[f"{cell} {key} {parent}"]
                            copied.append(f"seed {seed} {cell} {arm} <- {parent}")
                            break
    return copied


def missing(seeds: dict[int, dict]) -> list[str]:
    """Every (seed, key) an arm or baseline of the study should hold and does not."""
    out = []
    for seed, numbers in seeds.items():
        for task in studies.ABLATION_TASKS:
            for shots in studies.ABLATION_SHOTS:
                cell = f"{task} {shots}/class"
                for arm in (*studies.ABLATION_BASELINES, *studies.ABLATION_ARMS):
                    keys = KEYS if arm in studies.ABLATION_ARMS else KEYS[:3]
                    out += [f"seed {seed}: {cell} {k} {arm}" for k in keys if f"{cell} {k} {arm}" not in numbers]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="+", type=Path, help="results files of the study, or one-seed supplement files")
    ap.add_argument("--out", type=Path, required=True, help="the merged results file to write")
    ap.add_argument("--command", default="benchmarks/seed_studies.py --study recipe_ablation, in parts "
                                          "(benchmarks/merge_ablation.py)", help="how the numbers were made")
    args = ap.parse_args(argv)
    parts = _parts(args.parts)
    seeds, codes = merge(parts)
    copied = complete_adabn_arms(seeds)
    gaps = missing(seeds)
    if gaps:
        raise SystemExit(f"{len(gaps)} numbers missing, e.g. {gaps[:3]}: run those arms on those seeds first")
    seconds = sum(float(p[2].get("seconds", 0.0)) for p in parts)
    machine = next((p[2]["machine"] for p in parts if "machine" in p[2]), None)  # where they were measured
    shipped.write_results("recipe_ablation", seeds, args.command, seconds, path=args.out, code=codes, machine=machine)
    print(f"{args.out}: seeds {sorted(seeds)}, {len(copied)} cells copied from a parent run")


if __name__ == "__main__":
    main()
