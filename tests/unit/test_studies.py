"""ftcourse.lab.studies: the cheap study (adabn) against its shipped numbers, and the rate choice; the expensive
studies run in the claim tests (tests/claims)."""
import pytest

import ftcourse
from ftcourse.lab import shipped, studies


@pytest.mark.slow
def test_the_adabn_study_matches_its_shipped_numbers_on_seed_0():
    """The cheap study, recomputed: the shipped file was made by this code (accuracy within 3 points anywhere)."""
    ftcourse.seed_everything(0)
    assert not shipped.differences_from_shipped("adabn", 0, studies.adabn_study(0), acc_tol=0.03)


def test_choose_rate_picks_the_best_validation_rate():
    numbers = {f"val sweep {lr:g}": 0.5 for lr in studies.RATE_SWEEP} | {f"test sweep {lr:g}": lr for lr in studies.RATE_SWEEP}
    numbers["val sweep 0.03"] = 0.9
    chosen = studies.choose_rate(numbers)
    assert chosen["chosen rate"] == 0.03 and chosen["test at the chosen rate"] == 0.03 and "chosen rate" not in numbers


def test_fastai_epochs_make_about_200_steps():
    assert studies.fastai_epochs(ftcourse.target_task(shots=10)) == 199  # 50 images: 1 step per epoch
    assert studies.fastai_epochs(ftcourse.near_task(shots=10)) == 66  # 100 images: 3 steps per epoch, 67 * 3 = 201
