"""Claim (issue 2, COURSE_PLAN 5): the shipped backbone beats training from scratch by >= 10 points
at 10 examples per class, on every one of 3 seeds, with the same recipes benchmarks/transfer_table.py uses."""
import pytest

import ftcourse
from ftcourse import studies


@pytest.mark.slow
@pytest.mark.parametrize("seed", studies.seeds_to_check())  # 0-2 and $FTCOURSE_CLAIM_SEEDS
def test_pretrained_body_beats_scratch_at_10_per_class(seed):
    task = ftcourse.target_task(shots=10, seed=seed)
    scratch = ftcourse.train_from_scratch(task, seed=seed)[1]
    probe = ftcourse.linear_probe(task, seed=seed)[1]
    tuned = ftcourse.fine_tune(task, seed=seed)[1]
    assert tuned - scratch >= 0.10, f"seed {seed}: fine-tune {tuned:.3f} vs scratch {scratch:.3f}"
    assert probe - scratch >= 0.10, f"seed {seed}: linear probe {probe:.3f} vs scratch {scratch:.3f}"
    assert scratch > 0.25, "scratch should still beat chance (0.2): the task is learnable"
