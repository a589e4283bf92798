"""Run the course's multi-seed studies and write data/results/<study>.json, which the lessons print as tables.

Each study (ftcourse.lab.studies) measures one seed; this script runs it on its shipped seeds (0-9:
`shipped.STUDY_SEEDS`) and records how the numbers were made (command, torch version,
machine, date). The claim tests recompute the same numbers and compare them with these files.

    python benchmarks/seed_studies.py [--study warm_up,rates,...] [--seeds 0,1,2 | 0-9] [--quick] [--out DIR]
    python benchmarks/seed_studies.py --study rates --seeds 0-9 --out build/studies --resume   # across sessions
    python benchmarks/seed_studies.py --study NAME --seeds 0-9 --out build/studies --resume   # a study in progress

The file is written again after every seed, with the code fingerprint of the package that measured each
seed (`shipped.code_fingerprint()`). --resume keeps the seeds already in the output file, names those
written by other code, and trains only the others. --quick runs 25 steps of one rate of time_to_accuracy on
seed 0 into a temporary folder: a smoke test. Costs, one torch thread per process: a fine-tune of
200 steps takes about 30 s, so tuned_families (24 fine-tunes per seed) about 13 CPU-minutes a seed, rates
(10 runs) about 5, group_rates about 1.5; lessons 02-04's studies together about 6 CPU-hours, the recipe's ablation
about 14 more (it ran in parts: benchmarks/merge_ablation.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import ftcourse
from ftcourse.lab import shipped, studies


def _done(path: Path, code: str) -> tuple[dict[int, dict], dict[int, str], float]:
    """(per-seed numbers, per-seed code fingerprints, seconds) already in `path`.

    Seeds written by other code are kept and named: the claim tests train seed 0 again and compare it with
    the file, and `make claims` re-trains more, so a change that moves the numbers shows there.
    """
    if not path.exists():
        return {}, {}, 0.0
    stored = json.loads(path.read_text())
    codes = shipped.seed_codes(stored)
    other = sorted(s for s, c in codes.items() if c != code)
    if other:
        print(f"  {path.name}: seeds {other} were written by other code (this is {code}); kept")
    return {int(s): v for s, v in stored["seeds"].items()}, codes, float(stored.get("seconds", 0.0))


def run(names: list[str], seeds: list[int] | None, out: Path | None, command: str, resume: bool = False,
        part: dict | None = None) -> None:
    """Run each study on each seed (None: the study's shipped seeds); write its results file after every seed
    (--resume: skip the seeds it holds). `part`: keyword arguments for every study (a smaller run)."""
    code = shipped.code_fingerprint()
    for name in names:
        path = (out / f"{name}.json") if out else shipped.results_path(name)
        per_seed, codes, before = _done(path, code) if resume else ({}, {}, 0.0)
        t0 = time.perf_counter()
        for seed in shipped.STUDY_SEEDS[name] if seeds is None else seeds:
            if seed in per_seed:
                print(f"  {name} seed {seed}: already in {path}")
                continue
            ftcourse.seed_everything(seed)
            study = {**studies.STUDIES, **studies.IN_PROGRESS}[name]
            per_seed[seed], codes[seed] = study(seed, **(part or {})), code
            print(f"  {name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
            shipped.write_results(name, dict(sorted(per_seed.items())), command, before + time.perf_counter() - t0,
                                  path=path, code=dict(sorted(codes.items())))
        print(f"{name}: {path} holds seeds {sorted(per_seed)}")


ALL_STUDIES = {**studies.STUDIES, **studies.IN_PROGRESS}  # in progress: not shipped yet, so --out and --seeds


def _seed_list(text: str) -> list[int]:
    """'0,1,2' or '0-9' (or a mix: '0-2,5') as a list of seeds."""
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return seeds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=",".join(studies.STUDIES), help="comma-separated study names")
    ap.add_argument("--seeds", default=None, help="default: each study's shipped seeds (shipped.STUDY_SEEDS)")
    ap.add_argument("--out", type=Path, default=None, help="write here instead of data/results/")
    ap.add_argument("--quick", action="store_true", help="25 steps of time_to_accuracy on seed 0, into a temporary folder")
    ap.add_argument("--resume", action="store_true", help="keep the seeds the output file holds from this code")
    args = ap.parse_args(argv)
    names = args.study.split(",")
    unknown = [n for n in names if n not in ALL_STUDIES]
    if unknown:
        raise SystemExit(f"unknown study {unknown[0]!r}; choose from {', '.join(ALL_STUDIES)}")
    unshipped = [n for n in names if n in studies.IN_PROGRESS]
    if unshipped and (args.out is None or args.seeds is None):
        raise SystemExit(f"{unshipped[0]} is in progress (not shipped): give --out (e.g. build/studies) and --seeds")
    command = "python benchmarks/seed_studies.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            run(["time_to_accuracy"], [0], Path(tmp), command, part={"rates": (0.01,), "steps": 25})
        return
    run(names, None if args.seeds is None else _seed_list(args.seeds), args.out, command.strip(), resume=args.resume)


if __name__ == "__main__":
    main()
