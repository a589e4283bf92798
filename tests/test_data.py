"""The shipped data, the tasks built from it, shifts, and a learner's own image folder."""
import numpy as np
import pytest
import torch

import ftcourse as fc
from ftcourse.data import SHIFTS, render


def test_digits_are_the_real_mnist_subset():
    images, labels = fc.load_digits()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert 0.1 < images.mean() / 255 < 0.2  # MNIST's mean intensity is ~0.13


def test_source_and_target_are_disjoint_and_fixed():
    src_tr, src_te = fc.source_indices()
    assert len(set(src_tr) | set(src_te)) == 2500
    t1, t2 = fc.target_task(shots=10, seed=0), fc.target_task(shots=10, seed=0)
    assert torch.equal(t1.x_train, t2.x_train) and torch.equal(t1.x_test, t2.x_test)
    t3 = fc.target_task(shots=10, seed=1)
    assert not torch.equal(t1.x_train, t3.x_train)
    assert torch.equal(t1.x_test, t3.x_test), "the test set must not depend on the few-shot seed"
    assert t1.x_train.shape == (50, 3, 32, 32) and t1.x_test.shape == (1000, 3, 32, 32)
    assert t1.y_train.bincount().tolist() == [10] * 5 and t1.y_test.bincount().tolist() == [200] * 5


def test_source_stats_normalise_the_source():
    task = fc.source_task()
    mean = task.x_train.mean(dim=(0, 2, 3))
    std = task.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-3) and torch.allclose(std, torch.ones(3), atol=1e-3)


def test_render_is_deterministic_and_keeps_the_digit():
    idx = fc.source_indices()[0][:8]
    a, b = render(idx, seed=3), render(idx, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, render(idx, seed=4))
    clean = render(idx, seed=3, clutter=0)
    digit_ink = torch.from_numpy(fc.load_digits()[0][idx]).float().sum() / 255
    assert torch.allclose(clean[:, 0].sum(), digit_ink, rtol=1e-4), "clutter=0 is just the digit on the canvas"


@pytest.mark.parametrize("kind", SHIFTS)
def test_shifts_change_images_and_stay_in_range(kind):
    x = render(fc.source_indices()[1][:16], seed=0)
    y = fc.shift_images(x, kind)
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6
    if kind != "blur":  # blur keeps a little smoothing at severity 0
        assert torch.allclose(fc.shift_images(x, kind, severity=0.0), x)


def test_shift_and_shots_errors_are_clear():
    with pytest.raises(ValueError, match="unknown shift"):
        fc.shift_images(torch.zeros(1, 3, 4, 4), "rotate")
    with pytest.raises(ValueError, match="shots"):
        fc.target_task(shots=0)
    with pytest.raises(ValueError, match="shots"):
        fc.target_task(shots=301)
    with pytest.raises(ValueError, match="norm"):
        fc.target_task(shots=5, norm="imagenet")


def test_ood_test_shift_only_touches_the_test_set():
    plain = fc.target_task(shots=5, seed=0)
    ood = fc.target_task(shots=5, seed=0, test_shift="invert")
    assert torch.equal(plain.x_train, ood.x_train) and not torch.equal(plain.x_test, ood.x_test)


def test_shifted_test_set_matches_target_task_test_shift():
    task = fc.target_task(shots=5, seed=3)
    for kind in ("blur", None):
        x, y = fc.shifted_test_set(task, kind, severity=0.5)
        ref = fc.target_task(shots=5, seed=3, test_shift=kind, severity=0.5)
        assert torch.equal(x, ref.x_test) and torch.equal(y, task.y_test)
    with pytest.raises(ValueError, match="target"):
        fc.shifted_test_set(fc.source_task(), "blur")


def test_fresh_clutter_changes_every_epoch():
    loader = fc.FreshClutter(fc.source_indices()[0][:40], (0, 1, 2, 3, 4), batch_size=16, seed=0)
    assert len(loader) == 3
    e1 = torch.cat([x for x, _ in loader]).sum()
    e2 = torch.cat([x for x, _ in loader]).sum()
    assert e1 != e2


def test_image_folder_loads_a_learners_own_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            arr = rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, size=(30, 30), dtype=np.uint8)).save(tmp_path / "dogs" / "grey.png")
    ds = fc.image_folder(tmp_path, size=32)
    assert ds.classes == ["cats", "dogs"] and len(ds) == 7
    x, y = ds[6]
    assert x.shape == (3, 32, 32) and y == 1  # greyscale file comes back as RGB
    model = fc.torchvision_backbone("resnet18", num_classes=2)
    model.eval()
    assert model(torch.stack([ds[i][0] for i in range(2)])).shape == (2, 2)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="class name"):
        fc.image_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="sub-folders"):
        fc.image_folder(tmp_path)
