"""Checks of learner-given arguments shared by the toolkit: what counts as an int, and one message for a bad one.

The bottom module: it imports nothing from ftcourse, so every other module may use it.
An int here is a Python int or a numpy integer (np.int64 from an array, a range over one), never a bool:
`True` is an int to Python but never a count, index or seed to a learner.
"""
from __future__ import annotations

import numbers

__all__ = ["is_int", "require_int"]


def is_int(value) -> bool:
    """True for a Python int or a numpy integer, False for a bool (and numpy's bool), a float or anything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _allowed(low: int | None, high: int | None) -> str:
    """The allowed values in words: 'an int in 1..250', 'a non-negative int', 'an int >= 1', 'an int'."""
    if low is not None and high is not None:
        return f"an int in {low}..{high}"
    if low == 0:
        return "a non-negative int"
    if low is not None:
        return f"an int >= {low}"
    if high is not None:
        return f"an int <= {high}"
    return "an int"


def require_int(name: str, value, *, low: int | None = None, high: int | None = None, hint: str = "",
                expected: str | None = None) -> int:
    """`value` as a Python int if it is an int (see `is_int`) in low..high (both inclusive, None: unbounded).

    Otherwise a ValueError: "<name> must be <allowed> (<hint>), got <value!r>", where <allowed> names the
    range ('an int in 1..250', 'a non-negative int', 'an int >= 1') unless `expected` says it in other words
    ('a positive int', 'an int from -3 to 3 for 3 groups'); the hint, if any, is what to pass instead or what
    the number means.
    """
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        note = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be {expected or _allowed(low, high)}{note}, got {value!r}")
    return int(value)
