"""Run the course's multi-seed studies and write data/results/<study>.json, which the lessons print as tables.

Each study (ftcourse.lab.studies) measures one seed; this script runs it on seeds 0, 1, 2 and records
how the numbers were made (command, torch version, machine, date). The claim tests recompute the
same numbers and compare them with these files.

    python benchmarks/seed_studies.py [--study warm_up,rates,...] [--seeds 0,1,2] [--quick] [--out DIR]

--quick runs one seed of the cheapest study (adabn) into a temporary folder: a smoke test.
About 15 minutes for all studies on a quiet 2-core CPU.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import ftcourse
from ftcourse.lab import shipped, studies


def run(names: list[str], seeds: list[int], out: Path | None, command: str) -> None:
    """Run each study on each seed; write one results file per study."""
    for name in names:
        t0, per_seed = time.perf_counter(), {}
        for seed in seeds:
            ftcourse.seed_everything(seed)
            per_seed[seed] = studies.STUDIES[name](seed)
            print(f"  {name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        path = (out / f"{name}.json") if out else None
        shipped.write_results(name, per_seed, command, time.perf_counter() - t0, path=path)
        print(f"{name}: wrote {path or shipped.results_path(name)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=",".join(studies.STUDIES), help="comma-separated study names")
    ap.add_argument("--seeds", default=",".join(map(str, shipped.STUDY_SEEDS)))
    ap.add_argument("--out", type=Path, default=None, help="write here instead of data/results/")
    ap.add_argument("--quick", action="store_true", help="adabn on seed 0 into a temporary folder")
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
    run(names, [int(s) for s in args.seeds.split(",")], args.out, command.strip())


if __name__ == "__main__":
    main()
