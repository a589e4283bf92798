"""Is one method better than another? Paired differences over seeds, a 95 % interval, wins, and one verdict word.

Two methods run on the same seeds (the same few-shot draw, the same head, the same batches per seed)
differ by a seed-to-seed spread that is often as large as the gap between them. Compare them seed by
seed: `paired(a, b)` takes each method's per-seed results and reports the differences a - b, their
mean with a 95 % confidence interval from Student's t over the seeds, how many seeds each won, and a
verdict a lesson prints the same way everywhere:

    "ahead"                              the whole interval is above 0
    "behind"                             the whole interval is below 0
    "not distinguishable at n seeds"     the interval contains 0 (or n < 2: no interval at all)

At n = 3, one of two equal methods wins every seed one time in four; the interval says how large a gap
the seeds can resolve. `comparison.sentence()` gives the line a lesson prints:

    slice(0.003, 0.3) vs uniform 0.3: ahead, +7.0 points (95 % interval +2.8 to +11.3), wins 3 of 3 seeds
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .tables import Table, TableReport

__all__ = ["AHEAD", "BEHIND", "t_quantile", "PairedComparison", "paired", "paired_table"]

AHEAD = "ahead"  # a's whole interval above 0
BEHIND = "behind"  # a's whole interval below 0


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (Lentz's method)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    x = df / (df + t * t)
    if x >= 1:  # t = 0 (or too small to move x): the median
        return 0.5
    a, b = df / 2, 0.5
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    ibeta = front * _betacf(a, b, x) / a if x < (a + 1) / (a + b + 2) else 1 - front * _betacf(b, a, 1 - x) / b
    return 1 - ibeta / 2 if t >= 0 else ibeta / 2


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (t_quantile(0.975, 2) = 4.303)."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"need 0 < p < 1 and df >= 1, got p={p!r}, df={df!r}")
    lo, hi = -1e3, 1e3
    for _ in range(200):  # bisection: the CDF is monotone
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(repr=False)
class PairedComparison(TableReport):
    """Method `a` against method `b` on the same seeds; print it for the per-seed table and the verdict."""

    name_a: str
    name_b: str
    seeds: list
    a: list[float]
    b: list[float]
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def differences(self) -> list[float]:
        """a - b on each seed, seeds in order."""
        return [x - y for x, y in zip(self.a, self.b)]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences)

    @property
    def interval(self) -> tuple[float, float]:
        """The confidence interval of the mean difference (t over the seeds); (nan, nan) with one seed."""
        if self.n < 2:
            return math.nan, math.nan
        half = (t_quantile(1 - (1 - self.confidence) / 2, self.n - 1)
                * statistics.stdev(self.differences) / math.sqrt(self.n))
        return self.mean - half, self.mean + half

    @property
    def wins(self) -> int:
        """Seeds on which `a` did better than `b` (ties count for neither)."""
        return sum(d > 0 for d in self.differences)

    @property
    def losses(self) -> int:
        return sum(d < 0 for d in self.differences)

    @property
    def verdict(self) -> str:
        """'ahead', 'behind' or 'not distinguishable at n seeds': `a` relative to `b`."""
        lo, hi = self.interval
        if lo > 0:
            return AHEAD
        if hi < 0:
            return BEHIND
        return f"not distinguishable at {self.n} seed{'s' if self.n != 1 else ''}"

    def interval_text(self, scale: float = 100, fmt: str = "{:+.1f}") -> str:
        """The interval as '+0.4 to +3.8' (differences times `scale`, written with `fmt`); '' with one seed."""
        lo, hi = self.interval
        return "" if self.n < 2 else f"{fmt.format(scale * lo)} to {fmt.format(scale * hi)}"

    def sentence(self, scale: float = 100, unit: str = " points", fmt: str = "{:+.1f}") -> str:
        """One line: '<a> vs <b>: ahead, +2.1 points (95 % interval +0.4 to +3.8), wins 9 of 10 seeds'.

        Differences are multiplied by `scale` (100: accuracies in points) and written with `fmt`.
        """
        span = self.interval_text(scale, fmt)
        where = f" ({round(100 * self.confidence)} % interval {span})" if span else ""
        return (f"{self.name_a} vs {self.name_b}: {self.verdict}, {fmt.format(scale * self.mean)}{unit}{where}, "
                f"wins {self.wins} of {self.n} seeds")

    def table(self) -> Table:
        rows = [{"seed": s, self.name_a: x, self.name_b: y, "difference": d}
                for s, x, y, d in zip(self.seeds, self.a, self.b, self.differences)]
        return Table(rows, title=f"{self.name_a} - {self.name_b}, paired by seed",
                     formats={self.name_a: "{:.3f}", self.name_b: "{:.3f}", "difference": "{:+.3f}"},
                     notes=[self.sentence()])


def _per_seed(results, seeds) -> tuple[list, list[float]]:
    """(seeds, values) from {seed: value} or a sequence of values (seeds 0..n-1 unless given)."""
    if isinstance(results, Mapping):
        keys = list(results) if seeds is None else list(seeds)
        missing = [s for s in keys if s not in results]
        if missing:
            raise ValueError(f"no result for seed(s) {missing}: compare methods only on the seeds both ran")
        return keys, [float(results[s]) for s in keys]
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
        raise TypeError("results must be {seed: value} or a list of values in seed order, "
                        f"got {type(results).__name__}")
    keys = list(range(len(results))) if seeds is None else list(seeds)
    if len(keys) != len(results):
        raise ValueError(f"{len(results)} results for {len(keys)} seeds: give one result per seed")
    return keys, [float(v) for v in results]


def paired(a, b, names: tuple[str, str] = ("A", "B"), seeds=None, confidence: float = 0.95) -> PairedComparison:
    """Compare two methods seed by seed: `a` and `b` are {seed: accuracy} (or lists in the same seed order).

    Both must hold the same seeds: a paired comparison needs each seed's draw run by both methods.
    """
    seeds_a, va = _per_seed(a, seeds)
    seeds_b, vb = _per_seed(b, seeds if seeds is not None else None if isinstance(b, Mapping) else seeds_a)
    if list(seeds_a) != list(seeds_b):
        raise ValueError(f"the two methods ran on different seeds ({seeds_a} vs {seeds_b}): "
                         "compare them on the seeds both ran")
    if not seeds_a:
        raise ValueError("no seeds to compare")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, e.g. 0.95, got {confidence!r}")
    bad = [v for v in va + vb if not math.isfinite(v)]
    if bad:
        raise ValueError(f"results must be finite numbers, got {bad[:3]}")
    return PairedComparison(names[0], names[1], list(seeds_a), va, vb, confidence)


def paired_table(comparisons: Sequence[PairedComparison], title: str = "", scale: float = 100,
                 unit: str = "points", fmt: str = "{:+.1f}") -> Table:
    """Several paired comparisons, one row each: mean difference, its interval, wins, verdict.

    Differences are multiplied by `scale` (100: accuracies in points) and written with `fmt` in `unit`.
    """
    rows = []
    for c in comparisons:
        rows.append({"comparison": f"{c.name_a} vs {c.name_b}", f"mean ({unit})": scale * c.mean,
                     f"{round(100 * c.confidence)} % interval": c.interval_text(scale, fmt),
                     "wins": f"{c.wins} of {c.n}",
                     "verdict": c.verdict})
    return Table(rows, title=title, formats={f"mean ({unit})": fmt})
