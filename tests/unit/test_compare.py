"""ftcourse.compare: paired differences over seeds, Student's t interval, wins, and the verdict word."""
import math
import statistics

import pytest

import ftcourse
from ftcourse.compare import AHEAD, BEHIND, paired, t_quantile


@pytest.mark.parametrize("df, expected", [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045), (1000, 1.962)])
def test_t_quantiles_match_the_printed_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-3)


def test_a_consistent_gap_is_ahead_and_its_interval_is_the_t_interval():
    a = {s: 0.70 + 0.01 * s for s in range(10)}
    b = {s: a[s] - 0.02 - 0.002 * (s % 3) for s in range(10)}
    c = paired(a, b, names=("warm", "random"))
    d = [a[s] - b[s] for s in range(10)]
    half = 2.262 * statistics.stdev(d) / math.sqrt(10)
    assert c.differences == pytest.approx(d) and c.mean == pytest.approx(statistics.fmean(d))
    assert c.interval == pytest.approx((c.mean - half, c.mean + half), abs=1e-4)
    assert (c.verdict, c.wins, c.losses, c.n) == (AHEAD, 10, 0, 10)
    assert c.sentence().startswith("warm vs random: ahead, +2.2 points (95 % interval +")
    assert paired(b, a).verdict == BEHIND


def test_three_wins_of_three_can_still_be_not_distinguishable():
    """Wins on every seed at n = 3 with a noisy gap: the interval still contains 0."""
    c = paired([0.60, 0.70, 0.80], [0.59, 0.55, 0.795])
    assert c.wins == 3 and c.interval[0] < 0 < c.interval[1]
    assert c.verdict == "not distinguishable at 3 seeds"
    assert c.sentence().startswith("A vs B: not distinguishable at 3 seeds, +") and c.sentence().endswith("wins 3 of 3 seeds")


def test_one_seed_has_no_interval_and_ties_count_for_neither():
    c = paired({4: 0.5}, {4: 0.5})
    assert math.isnan(c.interval[0]) and c.verdict == "not distinguishable at 1 seed"
    assert (c.wins, c.losses) == (0, 0)


def test_the_table_lists_each_seed_and_ends_with_the_sentence():
    c = paired({0: 0.8, 1: 0.7}, {0: 0.6, 1: 0.65}, names=("FT", "LP"))
    text = str(c)
    assert [r["seed"] for r in c.table().rows] == [0, 1] and "+0.200" in text and c.sentence() in text


def test_mismatched_or_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="different seeds"):
        paired({0: 0.5, 1: 0.6}, {0: 0.5, 2: 0.6})
    with pytest.raises(ValueError, match="one result per seed"):
        paired([0.5, 0.6], [0.5, 0.6], seeds=[0, 1, 2])
    with pytest.raises(ValueError, match="finite"):
        paired([0.5, float("nan")], [0.5, 0.6])
    with pytest.raises(TypeError, match="in seed order"):
        paired("0.5", [0.5])
    with pytest.raises(ValueError, match="no seeds"):
        paired([], [])


def test_paired_table_lists_each_comparison_with_its_interval_wins_and_verdict():
    ahead = ftcourse.paired([0.8, 0.82, 0.81, 0.83], [0.7, 0.71, 0.72, 0.7], names=("a", "b"))
    unclear = ftcourse.paired([0.8, 0.7], [0.75, 0.76], names=("c", "d"))
    table = ftcourse.paired_table([ahead, unclear], title="t")
    text = str(table)
    assert text.splitlines()[0] == "t"
    assert [r["comparison"] for r in table.rows] == ["a vs b", "c vs d"]
    assert table.rows[0]["verdict"] == "ahead" and table.rows[0]["wins"] == "4 of 4"
    assert table.rows[1]["verdict"] == "not distinguishable at 2 seeds"
    lo, hi = ahead.interval
    assert f"{100 * lo:+.1f} to {100 * hi:+.1f}" in text and f"{100 * ahead.mean:+.1f}" in text


def test_sentence_and_table_take_a_scale_and_format_for_other_quantities():
    c = paired([0.07, 0.06, 0.08], [0.21, 0.19, 0.21], names=("two-stage", "uniform"))
    assert c.sentence(scale=1, unit=" in 1 - CKA", fmt="{:+.3f}").startswith(
        "two-stage vs uniform: behind, -0.133 in 1 - CKA (95 % interval -0.")
    assert ftcourse.paired_table([c], scale=1, unit="1 - CKA", fmt="{:+.3f}").rows[0]["mean (1 - CKA)"] == \
        pytest.approx(-0.1333, abs=1e-3)
