"""ftcourse.inputs: one notion of an int (Python or numpy, never a bool) and one message for a bad one."""
import numpy as np
import pytest

from ftcourse.inputs import is_int, require_int


@pytest.mark.parametrize("value", [0, -3, 7, np.int64(5), np.int32(-1), np.uint8(2)])
def test_ints_and_numpy_integers_are_ints(value):
    assert is_int(value)
    got = require_int("n", value)
    assert got == value and type(got) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, np.float64(2.0), "3", None, [1]])
def test_bools_floats_and_the_rest_are_not(value):
    assert not is_int(value)
    with pytest.raises(ValueError, match=r"^n must be an int, got "):
        require_int("n", value)


@pytest.mark.parametrize("low, high, value, words", [
    (1, 250, 0, r"an int in 1\.\.250"), (1, 250, 251, r"an int in 1\.\.250"), (0, None, -1, "a non-negative int"),
    (1, None, 0, "an int >= 1"), (None, 3, 4, "an int <= 3")])
def test_the_message_names_the_range(low, high, value, words):
    with pytest.raises(ValueError, match=rf"^shots must be {words} \(images per class\), got {value}$"):
        require_int("shots", value, low=low, high=high, hint="images per class")
    edge = low if low is not None else high
    assert require_int("shots", edge, low=low, high=high) == edge


def test_expected_words_replace_the_range():
    with pytest.raises(ValueError, match=r"^batch_size must be a positive int \(e.g. 32\), got 0$"):
        require_int("batch_size", 0, low=1, expected="a positive int", hint="e.g. 32")
