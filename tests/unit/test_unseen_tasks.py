"""ftcourse.lab.unseen_tasks: image folders the recipe was never designed on, read back through folder_task."""
import numpy as np
import pytest
from PIL import Image

from ftcourse.lab import studies, unseen_tasks
from ftcourse.lab.unseen_tasks import UNSEEN_TASKS, make_unseen_task, unseen_task


@pytest.mark.parametrize("name", sorted(UNSEEN_TASKS))
def test_a_task_is_one_folder_per_class_of_deterministic_images(tmp_path, name):
    folder = make_unseen_task(name, tmp_path / "a", per_class=3)
    again = make_unseen_task(name, tmp_path / "b", per_class=3)
    assert sorted(p.name for p in folder.iterdir()) == sorted(UNSEEN_TASKS[name])
    for cls in UNSEEN_TASKS[name]:
        files = sorted((folder / cls).glob("*.png"))
        assert [p.name for p in files] == ["0000.png", "0001.png", "0002.png"]
        for p in files:
            a, b = np.asarray(Image.open(p)), np.asarray(Image.open(again / cls / p.name))
            assert a.shape == (32, 32, 3) and np.array_equal(a, b) and a.std() > 10  # same image, not blank
    first = np.asarray(Image.open(folder / UNSEEN_TASKS[name][0] / "0000.png"))
    assert not np.array_equal(first, np.asarray(Image.open(folder / UNSEEN_TASKS[name][0] / "0001.png")))


def test_unseen_task_reads_the_folder_as_a_learner_would_class_balanced(tmp_path, monkeypatch):
    monkeypatch.setattr(unseen_tasks, "UNSEEN_VAL", 2)
    monkeypatch.setattr(unseen_tasks, "UNSEEN_TEST", 3)
    make_unseen_task("shapes", tmp_path, per_class=7)
    task = unseen_task("shapes", tmp_path, shots=2, seed=0)
    k = len(UNSEEN_TASKS["shapes"])
    assert list(task.classes) == sorted(UNSEEN_TASKS["shapes"])
    assert (len(task.y_train), len(task.y_val), len(task.y_test)) == (2 * k, 2 * k, 3 * k)
    assert task.x_train.shape[1:] == (3, 32, 32)
    for y, n in ((task.y_train, 2), (task.y_val, 2), (task.y_test, 3)):
        assert y.bincount(minlength=k).tolist() == [n] * k


def test_unknown_task_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="letters"):
        make_unseen_task("faces", tmp_path)


def test_the_unseen_study_runs_the_recipe_and_its_bars_on_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(unseen_tasks, "UNSEEN_VAL", 2)
    monkeypatch.setattr(unseen_tasks, "UNSEEN_TEST", 2)
    monkeypatch.setattr(unseen_tasks, "UNSEEN_POOL", 6)
    out = studies.unseen_study(0, tasks=("letters",), shots=(2,), arms=("run_recipe",), baselines=("fine-tune",),
                               steps=10, root=tmp_path)
    for arm in ("fine-tune", "run_recipe"):
        assert 0 <= out[f"letters 2/class test {arm}"] <= 1 and 0 <= out[f"letters 2/class val {arm}"] <= 1
        assert out[f"letters 2/class seconds {arm}"] > 0


def test_the_unseen_studys_arms_are_the_candidates_the_ablation_rule_chooses_among():
    from ftcourse.lab import ablation
    assert set(studies.UNSEEN_ARMS) == {ablation.SIMPLEST, *(d.arm for d in ablation.COMBINED)}
