"""Run the course's multi-seed studies and write data/results/<study>.json, which the lessons print as tables.

Each study (ftcourse.lab.studies) measures one seed; this script runs it on seeds 0, 1, 2 and records
how the numbers were made (command, torch version, machine, date). The claim tests recompute the
same numbers and compare them with these files.

    python benchmarks/seed_studies.py [--study warm_up,rates,...] [--seeds 0,1,2 | 0-9] [--quick] [--out DIR]
    python benchmarks/seed_studies.py --study rates --seeds 0-9 --out build/studies --resume   # across sessions

The file is written again after every seed. --resume keeps the seeds already in the output file when
they were written by exactly this code (`shipped.code_fingerprint()`: any change to the package starts
over) and trains only the others. --quick runs one seed of the cheapest study (adabn) into a temporary
folder: a smoke test. About 15 minutes for all studies on seeds 0-2 on a quiet 2-core CPU.
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


def _done(path: Path, code: str) -> tuple[dict[int, dict], float]:
    """(per-seed numbers, seconds) already in `path` if this code wrote them, else nothing."""
    if not path.exists():
        return {}, 0.0
    stored = json.loads(path.read_text())
    if stored.get("code") != code:
        print(f"  {path.name}: written by other code ({stored.get('code')} vs {code}); starting over")
        return {}, 0.0
    return {int(s): v for s, v in stored["seeds"].items()}, float(stored.get("seconds", 0.0))


def run(names: list[str], seeds: list[int], out: Path | None, command: str, resume: bool = False) -> None:
    """Run each study on each seed; write its results file after every seed (--resume: skip the seeds it holds)."""
    code = shipped.code_fingerprint()
    for name in names:
        path = (out / f"{name}.json") if out else shipped.results_path(name)
        per_seed, before = _done(path, code) if resume else ({}, 0.0)
        t0 = time.perf_counter()
        for seed in seeds:
            if seed in per_seed:
                print(f"  {name} seed {seed}: already in {path}")
                continue
            ftcourse.seed_everything(seed)
            per_seed[seed] = studies.STUDIES[name](seed)
            print(f"  {name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
            shipped.write_results(name, dict(sorted(per_seed.items())), command, before + time.perf_counter() - t0,
                                  path=path, code=code)
        print(f"{name}: {path} holds seeds {sorted(per_seed)}")


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
    ap.add_argument("--seeds", default=",".join(map(str, shipped.STUDY_SEEDS)))
    ap.add_argument("--out", type=Path, default=None, help="write here instead of data/results/")
    ap.add_argument("--quick", action="store_true", help="adabn on seed 0 into a temporary folder")
    ap.add_argument("--resume", action="store_true", help="keep the seeds the output file holds from this code")
    args = ap.parse_args(argv)
    names = args.study.split(",")
    unknown = [n for n in names if n not in studies.STUDIES]
    if unknown:
        raise SystemExit(f"unknown study {unknown[0]!r}; choose from {', '.join(studies.STUDIES)}")
    command = "python benchmarks/seed_studies.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            run(["adabn"], [0], Path(tmp), command)
        return
    run(names, _seed_list(args.seeds), args.out, command.strip(), resume=args.resume)


if __name__ == "__main__":
    main()
