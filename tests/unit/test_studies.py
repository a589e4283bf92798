"""ftcourse.lab.studies: the rate choice and small runs of a study; every study against its shipped numbers runs in
the claim tests (tests/claims)."""
import ftcourse
from ftcourse.lab import shipped, studies


def test_time_to_accuracy_reads_the_validation_curve_every_few_steps():
    out = studies.time_to_accuracy_study(0, rates=(0.01,), steps=50, every=25)
    assert sorted(out) == ["seconds lr 0.01", "val lr 0.01 step 25", "val lr 0.01 step 50"]
    assert all(0 <= out[f"val lr 0.01 step {s}"] <= 1 for s in (25, 50)) and out["seconds lr 0.01"] > 0
    assert shipped.quantity_kind("val lr 0.01 step 25") == "accuracy" and shipped.quantity_kind("seconds lr 0.01") == "seconds"


def test_choose_rate_picks_the_best_validation_rate():
    numbers = {f"val sweep {lr:g}": 0.5 for lr in studies.RATE_SWEEP} | {f"test sweep {lr:g}": lr for lr in studies.RATE_SWEEP}
    numbers["val sweep 0.03"] = 0.9
    chosen = studies.choose_rate(numbers)
    assert chosen["chosen rate"] == 0.03 and chosen["test at the chosen rate"] == 0.03 and "chosen rate" not in numbers


def test_fastai_epochs_make_about_200_steps():
    assert studies.fastai_epochs(ftcourse.target_task(shots=10)) == 199  # 50 images: 1 step per epoch
    assert studies.fastai_epochs(ftcourse.near_task(shots=10)) == 66  # 100 images: 3 steps per epoch, 67 * 3 = 201
