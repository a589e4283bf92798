"""The shipped data, the tasks built from it, shifts, and a learner's own images (image_folder, folder_task)."""
import numpy as np
import pytest
import torch
from PIL import Image

import ftcourse
from ftcourse.data import SHIFTS, render


def test_digits_are_the_real_mnist_subset():
    images, labels = ftcourse.data.load_digits()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert 0.1 < images.mean() / 255 < 0.2  # MNIST's mean intensity is ~0.13


def test_source_and_target_are_disjoint_and_fixed():
    src_tr, src_te = ftcourse.data.source_indices()
    assert len(set(src_tr) | set(src_te)) == 2500
    t1, t2 = ftcourse.target_task(shots=10, seed=0), ftcourse.target_task(shots=10, seed=0)
    assert torch.equal(t1.x_train, t2.x_train) and torch.equal(t1.x_test, t2.x_test)
    t3 = ftcourse.target_task(shots=10, seed=1)
    assert not torch.equal(t1.x_train, t3.x_train)
    assert torch.equal(t1.x_test, t3.x_test), "the test set must not depend on the few-shot seed"
    assert t1.x_train.shape == (50, 3, 32, 32) and t1.x_test.shape == (1000, 3, 32, 32)
    assert t1.y_train.bincount().tolist() == [10] * 5 and t1.y_test.bincount().tolist() == [200] * 5


def test_source_stats_normalise_the_source():
    task = ftcourse.source_task()
    mean = task.x_train.mean(dim=(0, 2, 3))
    std = task.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-3) and torch.allclose(std, torch.ones(3), atol=1e-3)


def test_render_is_deterministic_and_keeps_the_digit():
    idx = ftcourse.data.source_indices()[0][:8]
    a, b = render(idx, seed=3), render(idx, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, render(idx, seed=4))
    clean = render(idx, seed=3, clutter=0)
    digit_ink = torch.from_numpy(ftcourse.data.load_digits()[0][idx]).float().sum() / 255
    assert torch.allclose(clean[:, 0].sum(), digit_ink, rtol=1e-4), "clutter=0 is just the digit on the canvas"


@pytest.mark.parametrize("kind", SHIFTS)
def test_shifts_change_images_and_stay_in_range(kind):
    x = render(ftcourse.data.source_indices()[1][:16], seed=0)
    y = ftcourse.data.shift_images(x, kind)
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6
    if kind != "blur":  # blur keeps a little smoothing at severity 0
        assert torch.allclose(ftcourse.data.shift_images(x, kind, severity=0.0), x)


def test_shift_and_shots_errors_are_clear():
    with pytest.raises(ValueError, match="unknown shift"):
        ftcourse.data.shift_images(torch.zeros(1, 3, 4, 4), "rotate")
    with pytest.raises(ValueError, match="shots"):
        ftcourse.target_task(shots=0)
    with pytest.raises(ValueError, match="shots"):
        ftcourse.target_task(shots=301)
    with pytest.raises(ValueError, match="norm"):
        ftcourse.target_task(shots=5, norm="imagenet")


def test_ood_test_shift_only_touches_the_test_set():
    plain = ftcourse.target_task(shots=5, seed=0)
    ood = ftcourse.target_task(shots=5, seed=0, test_shift="invert")
    assert torch.equal(plain.x_train, ood.x_train) and not torch.equal(plain.x_test, ood.x_test)


def test_shifted_test_set_matches_target_task_test_shift():
    task = ftcourse.target_task(shots=5, seed=3)
    for kind in ("blur", None):
        x, y = ftcourse.shifted_test_set(task, kind, severity=0.5)
        ref = ftcourse.target_task(shots=5, seed=3, test_shift=kind, severity=0.5)
        assert torch.equal(x, ref.x_test) and torch.equal(y, task.y_test)
    with pytest.raises(ValueError, match="target"):
        ftcourse.shifted_test_set(ftcourse.source_task(), "blur")


def test_fresh_clutter_changes_every_epoch():
    loader = ftcourse.data.FreshClutter(ftcourse.data.source_indices()[0][:40], (0, 1, 2, 3, 4), batch_size=16, seed=0)
    assert len(loader) == 3
    e1 = torch.cat([x for x, _ in loader]).sum()
    e2 = torch.cat([x for x, _ in loader]).sum()
    assert e1 != e2


def test_image_folder_loads_a_learners_own_images(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            arr = rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, size=(30, 30), dtype=np.uint8)).save(tmp_path / "dogs" / "grey.png")
    ds = ftcourse.image_folder(tmp_path, size=32)
    assert ds.classes == ["cats", "dogs"] and len(ds) == 7
    x, y = ds[6]
    assert x.shape == (3, 32, 32) and y == 1  # greyscale file comes back as RGB
    model = ftcourse.torchvision_backbone("resnet18", num_classes=2)
    model.eval()
    assert model(torch.stack([ds[i][0] for i in range(2)])).shape == (2, 2)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="class name"):
        ftcourse.image_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="sub-folders"):
        ftcourse.image_folder(tmp_path)


def test_denormalize_undoes_normalize_for_batches_and_single_images():
    x = torch.rand(4, 3, 8, 8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    z = ftcourse.normalize(x, mean, std)
    assert torch.allclose(ftcourse.denormalize(z, mean, std), x, atol=1e-6)
    assert torch.allclose(ftcourse.denormalize(z[0], mean, std), x[0], atol=1e-6)


@pytest.mark.parametrize("shots,seed", [(1, 0), (3, 7), (10, 1), (20, 5), (50, 2), (120, 100), (250, 3), (None, 0)])
def test_every_prefix_of_every_split_is_class_balanced(shots, seed):
    task = ftcourse.target_task(shots=shots, seed=seed)
    for y in (task.y_train, task.y_val, task.y_test):
        for n in range(1, len(y) + 1, 7):
            counts = torch.bincount(y[:n], minlength=5)
            assert int(counts.max() - counts.min()) <= 1, (shots, seed, n, counts.tolist())


def test_validation_split_is_disjoint_from_training_draws_and_test():
    from ftcourse.data import _target_pool_val_test

    pool, val, test = _target_pool_val_test()
    for p, v, t in zip(pool, val, test):
        assert not set(p) & set(v) and not set(p) & set(t) and not set(v) & set(t)
        assert len(p) == 250 and len(v) == 50 and len(t) == 200
    task = ftcourse.target_task(shots=250, seed=0)  # the whole pool: still no validation image in it
    assert len(task.y_train) == 1250 and len(task.y_val) == 250
    with pytest.raises(ValueError, match="1..250"):
        ftcourse.target_task(shots=251)


def test_interleave_round_robin_with_unequal_classes():
    from ftcourse.data import interleave

    out = interleave([np.array([1, 2, 3]), np.array([10]), np.array([20, 21])])
    assert out.tolist() == [1, 10, 20, 2, 21, 3]


def test_shifted_source_task_keeps_the_labels_and_shifts_every_split():
    task = ftcourse.shifted_source_task("invert", shots=4, seed=1)
    assert task.classes == ("0", "1", "2", "3", "4") and len(task.y_train) == 20
    assert task.y_val.bincount().tolist() == [50] * 5 and task.y_test.bincount().tolist() == [100] * 5
    assert torch.equal(task.y_train, torch.arange(20) % 5)
    clean = ftcourse.source_task()
    assert task.x_test.mean() > clean.x_test.mean() + 1  # inverted: mostly white (normalised with source stats)
    assert not torch.equal(ftcourse.shifted_source_task("invert", shots=4, seed=2).x_train, task.x_train)
    for bad, match in [(dict(shift=None), "shift must be one of"), (dict(shift="invert", shots=0), "shots must be"),
                       (dict(shift="invert", shots=351), "shots must be"), (dict(shift="rotate"), "shift")]:
        with pytest.raises(ValueError, match=match):
            ftcourse.shifted_source_task(**bad)


def _folder(tmp_path, per_class=(6, 6, 5)):
    root = tmp_path / "my_images"
    rng = np.random.default_rng(0)
    for k, n in enumerate(per_class):
        (root / f"class{k}").mkdir(parents=True)
        for i in range(n):
            pixels = (rng.random((20, 24, 3)) * 80 + 60 * k).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{k}" / f"{i}.png")
    return root


def test_folder_task_splits_class_by_class_without_overlap(tmp_path):
    task = ftcourse.folder_task(_folder(tmp_path), size=16, val_per_class=1, test_per_class=2, seed=0)
    assert task.classes == ("class0", "class1", "class2") and task.x_train.shape[1:] == (3, 16, 16)
    assert task.y_test.bincount().tolist() == [2, 2, 2] and task.y_val.bincount().tolist() == [1, 1, 1]
    assert task.y_train.bincount().tolist() == [3, 3, 2]  # the rest
    everything = torch.cat([task.x_train, task.x_val, task.x_test])
    assert len({tuple(x.flatten()[:50].tolist()) for x in everything}) == len(everything)  # no image twice
    few = ftcourse.folder_task(_folder(tmp_path / "b"), size=16, val_per_class=1, test_per_class=1, shots=2)
    assert few.y_train.bincount().tolist() == [2, 2, 2]


def test_folder_task_names_the_fix_when_a_class_is_too_small(tmp_path):
    with pytest.raises(ValueError, match=r"too few in class2 \(5\)"):
        ftcourse.folder_task(_folder(tmp_path), size=16, val_per_class=2, test_per_class=2, shots=2)
    with pytest.raises(ValueError, match="val_per_class must be"):
        ftcourse.folder_task(_folder(tmp_path / "c"), val_per_class=0)


def test_random_shift_moves_each_image_by_whole_pixels_from_its_own_seed():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    a, b = ftcourse.RandomShift(2, seed=3)(x), ftcourse.RandomShift(2, seed=3)(x)
    assert a.shape == x.shape and torch.equal(a, b)  # the same seed, the same shifts
    assert torch.equal(ftcourse.RandomShift(0)(x), x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(2):  # each output is an 8x8 window of the edge-padded image
        assert any(torch.equal(a[i], padded[i, :, r:r + 8, c:c + 8]) for r in range(5) for c in range(5))
    shifted = [ftcourse.RandomShift(4, seed=s)(x) for s in range(5)]
    assert any(not torch.equal(s, x) for s in shifted)
    with pytest.raises(ValueError, match="a batch of images \\(N, C, H, W\\)"):
        ftcourse.RandomShift(2)(x[0])
    with pytest.raises(ValueError, match="max_shift"):
        ftcourse.RandomShift(-1)


def test_relabelled_source_task_keeps_the_images_and_moves_every_label():
    from ftcourse.data import relabelled_source_task
    plain = ftcourse.shifted_source_task("blur", shots=10, seed=1, severity=1e-9)  # the same splits, barely shifted
    task = relabelled_source_task(shots=10, seed=1)
    source = ftcourse.data._source_splits(None, 10, 1, 1.0)
    assert torch.equal(task.x_train, source.x_train) and torch.equal(task.x_test, source.x_test)
    assert task.x_train.shape == plain.x_train.shape and len(task.y_val) == len(plain.y_val) == 250
    for split in ("y_train", "y_val", "y_test"):
        assert torch.equal(getattr(task, split), (getattr(source, split) + 1) % 5)
    assert task.classes == ("4", "0", "1", "2", "3")  # class 1 is the digit 0
    assert ftcourse.evaluate(ftcourse.load_pretrained(), (task.x_test, task.y_test)) < 0.1  # the old head: wrong
    for bad in ((0, 1, 2, 3, 4), (1, 0, 2, 4, 3), (1, 1, 2, 3, 4), "10234"):
        with pytest.raises(ValueError, match="a permutation of 0-4 that moves every label"):
            relabelled_source_task(mapping=bad)
