"""Claims a lesson makes, checked where they are made: a stable verdict line, and the measurement beside it.

Training results differ in their last digits between CPUs, torch releases and CUDA, so a notebook
used as a regression test compares *verdicts*, not digits. `claim(statement, holds, measured)` prints

    CLAIM holds: <statement>
      measured: <the numbers behind it>

nbval compares the first line; `tests/nbval_sanitize.cfg` blanks whatever follows "measured:", so
the number a learner sees can differ on their machine while the regression test stays green.
`seed_table` prints a claim's numbers over several seeds (mean, min, max) for the learner.
"""
from __future__ import annotations

import statistics
from typing import Mapping, Sequence

from ..tables import Table

__all__ = ["claim", "Verdict", "seed_table"]


class Verdict:
    """What `claim` returns: true when the claim holds. A notebook shows nothing for it (the printed lines say it)."""

    __slots__ = ("holds",)

    def __init__(self, holds: bool):
        self.holds = bool(holds)

    def __bool__(self) -> bool:
        return self.holds

    def __repr__(self) -> str:
        return f"Verdict(holds={self.holds})"

    def _ipython_display_(self) -> None:  # no "Out[n]: True" under every claim cell
        pass


def claim(statement: str, holds: bool, measured: str) -> Verdict:
    """Print the verdict on `statement` (compared by nbval) and, on its own line, what was measured (not compared)."""
    print(f"CLAIM {'holds' if holds else 'DOES NOT HOLD'}: {statement}")
    print(f"  measured: {measured}")
    return Verdict(holds)


def seed_table(values: Mapping[str, Sequence[float]], seeds: Sequence[int], title: str = "",
               fmt: str = "{:.3f}", per_seed: bool = True) -> Table:
    """One row per quantity: its value on each seed, then mean, min and max (for printing, never for comparing).

    per_seed=False leaves out the seed columns (ten of them do not fit a slide): mean, standard deviation
    over the seeds, min and max, with the seeds named in the title.
    """
    rows = []
    for label, vs in values.items():
        vs = [float(v) for v in vs]
        if len(vs) != len(seeds):
            raise ValueError(f"{label!r} has {len(vs)} values for {len(seeds)} seeds")
        each = {f"seed {s}": v for s, v in zip(seeds, vs)} if per_seed else {}
        spread = {} if per_seed else {"sd": statistics.stdev(vs) if len(vs) > 1 else float("nan")}
        rows.append({"": label, **each, "mean": statistics.fmean(vs), **spread, "min": min(vs), "max": max(vs)})
    if not per_seed:
        title = f"{title} ({_seed_range(seeds)})" if title else _seed_range(seeds)
    cols = [f"seed {s}" for s in seeds] + ["mean", "sd", "min", "max"]
    return Table(rows, title=title, formats={c: fmt for c in cols})


def _seed_range(seeds: Sequence[int]) -> str:
    """'seeds 0-9' for consecutive seeds, else 'seeds 0, 2, 5'."""
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seed" + ("s " if len(seeds) != 1 else " ") + ", ".join(map(str, seeds))
