"""Which of the recipe's decisions earn their place: the ablation's arms (studies.recipe_ablation_study) read on
validation by one rule. Its first form was fixed before seeds 6-9 were measured; its last step (`final_arm`'s walk)
was changed before seeds 8 and 9 (disclosed in `final_arm`). The combined arms (COMBINED) were added after the
first seeds' validation had favoured their settings, and are confirmed on all ten seeds, the first ones included.

The unit is the seed. For each seed, an arm's validation accuracy is averaged over the six cells (three tasks,
10 and 50 images per class), and so is the arm it is compared with; `ftcourse.paired` compares the two over the
seeds (10 per-seed means, a 95 % interval, wins, a verdict). The rule prefers the simpler recipe:
- a decision of the old recipe stays only if the arm without it is "behind" (validation says it helps);
- a setting the old recipe did not have joins only if its arm is "ahead";
- an alternative to an old setting (another rate rule, optimizer or schedule) replaces it only if "ahead".
Test accuracy is shown beside, never used to decide. The settings that pass are then run together
(`COMBINED`), simplest first, and each more complex combination must be ahead of the choice before it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields

from ftcourse import Table, paired
from ftcourse.autopilot import RecipeConfig, run_recipe
from ftcourse.compare import PairedComparison

from . import studies

__all__ = ["Decision", "DECISIONS", "SIMPLEST", "COMBINED", "final_arm", "CELLS", "cell_mean", "compare", "outcome",
           "decision_table", "combined_table", "defaults_differ", "LENGTH", "length_arm",
           "length_table"]

CELLS = tuple(f"{t} {k}/class" for t in studies.ABLATION_TASKS for k in studies.ABLATION_SHOTS)


@dataclass(frozen=True)
class Decision:
    """One decision of the ablation: `arm` changes it alone from `base`. kind: "drop" (the arm removes an old
    decision: it stays only if the arm is behind), "add" (the arm adds a setting: it joins only if ahead) or
    "replace" (the arm swaps an old setting for another: only if ahead)."""

    name: str
    arm: str
    kind: str
    base: str = "recipe"


DECISIONS = (
    Decision("AdaBN when the BN gap is over the threshold", "no AdaBN", "drop"),
    Decision("the threshold (instead of AdaBN always)", "always AdaBN", "drop"),
    Decision("head warm-up on cached features", "no head warm-up", "drop"),
    Decision("the rate chosen by short runs (0.01, 0.03, 0.1)", "one rate 0.03, no short runs", "drop"),
    Decision("the short runs' steps taken from the final run", "final run of all the steps", "drop"),
    Decision("BN batch statistics (not frozen)", "frozen BN statistics", "replace"),
    Decision("rate rule: largest within 1 binomial SE", "rule: smallest within 1 SE, paired", "replace"),
    Decision("rate rule: largest within 1 binomial SE", "rule: best", "replace"),
    Decision("short runs of 20 steps", "short runs of 40 steps", "replace"),
    Decision("SGD with momentum", "AdamW", "replace"),
    Decision("one-cycle schedule", "cosine schedule", "replace"),
    Decision("one-cycle schedule", "constant rate", "replace"),
    Decision("random shifts of up to 4 px", "shifts of up to 4 px", "add"),
    Decision("label smoothing 0.1", "label smoothing 0.1", "add"),
    Decision("EMA of the weights, 0.98", "EMA of weights 0.98", "add"),
    Decision("L2-SP, alpha 0.1", "L2-SP 0.1", "add"),
)
# The settings that passed, run together: the old recipe with shifts and one rate (no short runs). Its simplest form
# has no AdaBN. Simplest first, each combined arm adds one thing to the one before (AdaBN always; AdaBN only over
# the threshold; the rate chosen by short runs) and takes the current choice's place only if "ahead" of it.
SIMPLEST = "shifts, one rate 0.03, never AdaBN"
COMBINED = (
    Decision("AdaBN always", "shifts, one rate 0.03, always AdaBN", "add"),
    Decision("AdaBN only when the BN gap is over the threshold", "shifts, one rate 0.03, no short runs", "add"),
    Decision("the rate chosen by short runs (AdaBN by the gap)", "shifts of up to 4 px", "add"),
)


# The wall-time bar (the recipe in no more time than the one call): the chosen arm with a shorter final run,
# measured fresh beside the full-length arm (studies.recipe_length_study). Written before any seed of it ran: a
# shorter run takes the full one's place unless it is behind on validation (a cost is dropped like a decision).
LENGTH = tuple(Decision(f"the final run's last {100 - p} % of steps", f"{studies.LENGTH_BASE}, final run {p} %",
                        "drop", base=studies.LENGTH_BASE) for p in (90, 80))


def length_arm(per_seed: dict[int, dict[str, float]], decisions=LENGTH) -> str:
    """The shortest final run (LENGTH, longest first) whose arm is not behind the full-length one on validation;
    studies.LENGTH_BASE if every one is behind."""
    kept = [d.arm for d in decisions if outcome(d, compare(per_seed, d)) == "dropped"]
    return kept[-1] if kept else studies.LENGTH_BASE


def length_table(per_seed: dict[int, dict[str, float]], decisions=LENGTH) -> Table:
    """One row per shorter final run: its arm minus the full-length one on validation (recipe_length_study's file),
    what the rule does with it ("shorter run taken": not behind; "whole run kept": behind), test beside."""
    rows = [r | {"rule": {"dropped": "shorter run taken", "stays": "whole run kept"}[r["rule"]]}
            for r in _rows(per_seed, decisions)]
    return Table(rows, title=f"shorter final runs minus the whole one, validation, mean of 3 tasks x 2 sizes, seeds "
                             f"{min(per_seed)}-{max(per_seed)}",
                 formats={"val (points)": "{:+.1f}", "test (points)": "{:+.1f}"},
                 notes=["the shortest run not behind is taken. Test accuracy is shown, never used."])


def cell_mean(per_seed: dict[int, dict[str, float]], arm: str, split: str = "val", cells=CELLS) -> dict[int, float]:
    """{seed: the arm's `split` accuracy averaged over `cells`}."""
    missing = [f"{c} {split} {arm}" for c in cells for r in per_seed.values() if f"{c} {split} {arm}" not in r]
    if missing:
        raise KeyError(f"the ablation holds no {missing[0]!r}: run that arm on every seed first")
    return {s: sum(r[f"{c} {split} {arm}"] for c in cells) / len(cells) for s, r in per_seed.items()}


def compare(per_seed: dict[int, dict[str, float]], decision: Decision, split: str = "val") -> PairedComparison:
    """The decision's arm against its base, seed by seed, each seed's accuracy averaged over the six cells."""
    return paired(cell_mean(per_seed, decision.arm, split), cell_mean(per_seed, decision.base, split),
                  (decision.arm, decision.base))


def outcome(decision: Decision, comparison: PairedComparison) -> str:
    """What the rule does with a decision, given its arm's validation comparison with the base."""
    if decision.kind == "drop":
        return "stays" if comparison.verdict == "behind" else "dropped"
    if decision.kind == "add":
        return "joins" if comparison.verdict == "ahead" else "left out"
    return "replaces it" if comparison.verdict == "ahead" else "old kept"


def _rows(per_seed, decisions, against: bool = False) -> list[dict]:
    rows = []
    for d in decisions:
        val, test = compare(per_seed, d, "val"), compare(per_seed, d, "test")
        rows.append({"decision": d.name, "arm": d.arm, **({"against": d.base} if against else {}),
                     "val (points)": 100 * val.mean, "val 95 % interval": val.interval_text(),
                     "val wins": f"{val.wins}/{val.n}", "verdict": val.verdict.replace("not distinguishable", "n.d."),
                     "rule": outcome(d, val), "test (points)": 100 * test.mean})
    return rows


def decision_table(per_seed: dict[int, dict[str, float]], decisions=DECISIONS) -> Table:
    """One row per decision: its arm minus the base on validation (mean over six cells, seed by seed), the rule's
    outcome, and test accuracy beside (not used)."""
    return Table(_rows(per_seed, decisions), title=f"each decision changed alone, seeds {sorted(per_seed)}: "
                 "arm minus old recipe, validation accuracy averaged over 3 tasks x 2 sizes",
                 formats={"val (points)": "{:+.1f}", "test (points)": "{:+.1f}"},
                 notes=["n.d.: not distinguishable; drop: the decision stays only if removing it is behind; "
                        "add or replace: only if ahead. Test accuracy is shown, never used."])


def _walk(per_seed: dict[int, dict[str, float]], decisions=COMBINED) -> list[Decision]:
    """The combined arms, simplest first, each as a Decision against the choice before it (SIMPLEST to start);
    an arm that is ahead of the current choice becomes the current choice."""
    current, steps = SIMPLEST, []
    for d in decisions:
        step = Decision(d.name, d.arm, "add", current)
        steps.append(step)
        if outcome(step, compare(per_seed, step)) == "joins":
            current = d.arm
    return steps


def combined_table(per_seed: dict[int, dict[str, float]], decisions=COMBINED) -> Table:
    """The settings that passed, together: simplest first, each combined arm against the choice before it."""
    return Table(_rows(per_seed, _walk(per_seed, decisions), against=True),
                 title=f"the settings that passed, together, seeds {sorted(per_seed)}: each arm minus the current "
                       f"choice, from {SIMPLEST!r}",
                 formats={"val (points)": "{:+.1f}", "test (points)": "{:+.1f}"},
                 notes=["joins: ahead of the current choice on validation, and so takes its place"])


def final_arm(per_seed: dict[int, dict[str, float]], decisions=COMBINED) -> str:
    """The rebuilt recipe's arm: the last combined arm that took the current choice's place; SIMPLEST if none did.

    (The first version took, of the arms ahead of SIMPLEST, the one with the highest validation mean, against the
    rule's own principle that a more complex recipe must be ahead of the simpler one. At 8 seeds that picked the
    rate search on 0.3 points over AdaBN alone; it was changed to this walk before seeds 8 and 9 were in.)"""
    steps = _walk(per_seed, decisions)
    taken = [step.arm for step in steps if outcome(step, compare(per_seed, step)) == "joins"]
    return taken[-1] if taken else SIMPLEST


def defaults_differ(arm: str) -> list[str]:
    """How `run_recipe()`'s defaults differ from an ablation arm's arguments, one line each; [] when they run it."""
    defaults = {k: p.default for k, p in inspect.signature(run_recipe).parameters.items()
                if p.default is not inspect.Parameter.empty}
    defaults["config"] = RecipeConfig() if defaults["config"] is None else defaults["config"]
    wanted = {"adabn_policy": None, "final_steps": None, "head_steps": None, **studies._arm_kwargs(arm)}
    out = []
    for key, value in wanted.items():
        if key == "config":
            out += [f"config.{f.name}: run_recipe {getattr(defaults['config'], f.name)!r}, "
                    f"{arm!r} {getattr(value, f.name)!r}" for f in fields(RecipeConfig)
                    if getattr(defaults["config"], f.name) != getattr(value, f.name)]
        elif (tuple(defaults[key]) if key == "rates" else defaults[key]) != value:
            out.append(f"{key}: run_recipe {defaults[key]!r}, {arm!r} {value!r}")
    return out
