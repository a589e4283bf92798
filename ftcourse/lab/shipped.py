"""The studies' results files, `data/results/<study>.json`: write, read, compare with a fresh run, summarise.

A file holds one study's numbers per seed ({"seeds": {"0": {quantity: value}, ...}}) with how they were
made (command, torch, machine, date). A quantity's key is words separated by spaces; the words say what
it is (`QUANTITY_KINDS`): an accuracy ("test", "val", "train", "OOD") is compared with a fresh run in
absolute points, a choice ("chosen") or a wall time ("seconds") is not compared, anything else relatively.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import platform
from pathlib import Path

import torch

from ..files import atomic_write_text, data_dir

__all__ = ["STUDY_NAMES", "TEN_SEEDS", "STUDY_SEEDS", "seeds_of", "by_seed", "QUANTITY_KINDS", "quantity_kind",
           "code_fingerprint", "results_path", "write_results", "seed_codes", "read_results",
           "differences_from_shipped", "summarise"]

STUDY_NAMES = ("warm_up", "data_size", "rates", "group_rates", "tuned_families", "time_to_accuracy", "bn_policy",
               "adabn", "shifted_target", "recipe_ablation", "recipe_floor", "unseen",
               "surgical_tuned", "recipe_length")  # one file each
TEN_SEEDS = tuple(range(10))
# the seeds each shipped file holds: ten, as a lesson compares methods over seeds 0-9
STUDY_SEEDS = {"warm_up": TEN_SEEDS, "data_size": TEN_SEEDS, "rates": TEN_SEEDS, "group_rates": TEN_SEEDS,
               "tuned_families": TEN_SEEDS, "time_to_accuracy": TEN_SEEDS,
               "bn_policy": TEN_SEEDS, "adabn": TEN_SEEDS, "shifted_target": TEN_SEEDS,
               "recipe_ablation": TEN_SEEDS, "recipe_floor": TEN_SEEDS, "unseen": TEN_SEEDS,
               "surgical_tuned": TEN_SEEDS, "recipe_length": TEN_SEEDS}
QUANTITY_KINDS = {"test": "accuracy", "val": "accuracy", "train": "accuracy", "OOD": "accuracy",
                  "chosen": "choice", "seconds": "seconds"}  # a key word -> what the quantity is


def quantity_kind(key: str) -> str:
    """What a results key measures, from its words: "choice" or "seconds" (never compared), "accuracy" or "other"."""
    kinds = {QUANTITY_KINDS[w] for w in key.split() if w in QUANTITY_KINDS}
    for kind in ("choice", "seconds", "accuracy"):  # a choice's outcome ("test at the chosen rate") is a choice
        if kind in kinds:
            return kind
    return "other"


def code_fingerprint() -> str:
    """sha256 (first 16 hex digits) of every source file of the ftcourse package: which code made a results file.

    A study run resumed across sessions reuses only the seeds written by exactly this code.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def results_path(name: str) -> Path:
    """data/results/<name>.json (under $FTCOURSE_DATA if set)."""
    if name not in STUDY_NAMES:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(STUDY_NAMES)}")
    return data_dir() / "results" / f"{name}.json"


def write_results(name: str, per_seed: dict[int, dict[str, float]], command: str, seconds: float,
                  path: Path | None = None, code: str | dict[int, str] | None = None,
                  machine: str | None = None) -> None:
    """Write one study's per-seed numbers with how they were made (command, torch, machine, date), atomically.

    `code`: the `code_fingerprint()` of the package that measured them, one for all seeds or {seed: fingerprint}.
    `machine`: where they were measured, when not by this process (default: this machine and thread count).
    """
    if isinstance(code, dict):
        code = {str(s): c for s, c in code.items()}
    path = results_path(name) if path is None else Path(path)
    payload = {"study": name, "command": command, "seconds": round(seconds, 1), "torch": torch.__version__,
               "machine": machine or f"{platform.machine()}, {torch.get_num_threads()} threads",
               "date": datetime.date.today().isoformat(), **({"code": code} if code else {}),
               "seeds": {str(s): v for s, v in per_seed.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


def seed_codes(results: dict) -> dict[int, str]:
    """{seed: code fingerprint that measured it} of a results file's contents ({} when it records none)."""
    code = results.get("code")
    if isinstance(code, dict):
        return {int(s): c for s, c in code.items()}
    return {int(s): code for s in results["seeds"]} if code else {}


def read_results(name: str) -> dict:
    """The shipped results of a study: {"seeds": {seed: {quantity: value}}, "command", "torch", "date", ...}."""
    path = results_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: rebuild it with "
                                f"`python benchmarks/seed_studies.py --study {name}`")
    return json.loads(path.read_text())


def differences_from_shipped(name: str, seed: int, fresh: dict[str, float], acc_tol: float = 0.05,
                             rel_tol: float = 0.25, partial: bool = False) -> list[str]:
    """Quantities of a fresh run that differ from the shipped file by more than what differs between machines.

    Accuracies within `acc_tol` absolute, other numbers within `rel_tol` relative; a choice ("chosen
    rate") may differ between machines and wall time always does: neither is compared (`quantity_kind`).
    Every shipped quantity must be measured, unless `partial` (a lesson's live run measures part of a
    study). [] when the file and the code agree.
    """
    shipped = read_results(name)["seeds"][str(seed)]
    bad = [] if partial else [f"{k}: not measured" for k in shipped if k not in fresh]
    for k, v in fresh.items():
        w = shipped.get(k)
        kind = quantity_kind(k)
        if w is None:
            bad.append(f"{k}: not in the shipped file")
        elif kind == "accuracy" and abs(v - w) > acc_tol:
            bad.append(f"{k}: {v:.4g} vs shipped {w:.4g}")
        elif kind == "other" and abs(v - w) > rel_tol * max(abs(w), 1e-9):
            bad.append(f"{k}: {v:.4g} vs shipped {w:.4g}")
    return bad


def seeds_of(results: dict) -> list[int]:
    """The seeds a results file holds, in order."""
    return sorted(int(s) for s in results["seeds"])


def by_seed(results: dict, key: str) -> dict[int, float]:
    """{seed: value} of one quantity of a results file, seeds in order (what `ftcourse.paired` compares)."""
    return {s: results["seeds"][str(s)][key] for s in seeds_of(results)}


def summarise(results: dict, keys: list[str]) -> dict[str, list[float]]:
    """{quantity: [value on each seed]} for the given quantities, seeds in order (for claims.seed_table)."""
    return {k: list(by_seed(results, k).values()) for k in keys}
