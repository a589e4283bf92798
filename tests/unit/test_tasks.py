"""The near task (UCI digits) and the far task (textures): shipped files, splits, seeds and errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ftcourse
from ftcourse.data import FAR_FILE, NEAR_FILE, _image_table, _table_splits

ROOT = Path(__file__).resolve().parents[2]
TASKS = {"near": (ftcourse.near_task, NEAR_FILE, 10, (70, 24, 80)),
         "far": (ftcourse.far_task, FAR_FILE, 5, (128, 32, 96))}


@pytest.mark.parametrize("which", TASKS)
def test_shipped_file_matches_its_manifest_entry(which):
    _, name, _, _ = TASKS[which]
    entry = ftcourse.files.read_manifest()["files"][name]
    path = ftcourse.files.data_dir() / name
    assert ftcourse.files.sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["size"]
    assert entry["size"] < 1.5 * 2**20
    assert {"source", "licence", "made_by", "format"} <= set(entry)


@pytest.mark.parametrize("which", TASKS)
def test_shapes_labels_and_interleaved_balance(which):
    fn, _, k, (pool, val, test) = TASKS[which]
    task = fn(shots=10, seed=0)
    assert task.num_classes == k and len(task.classes) == k
    for x, y, n in ((task.x_train, task.y_train, 10), (task.x_val, task.y_val, val), (task.x_test, task.y_test, test)):
        assert x.shape == (n * k, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
        assert y.bincount(minlength=k).tolist() == [n] * k
        assert torch.equal(y, torch.arange(n * k) % k), "splits are class-interleaved"
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2]), "grey in 3 channels"
    assert len(fn().y_train) == pool * k  # shots=None: the whole pool


@pytest.mark.parametrize("which", TASKS)
def test_pool_validation_and_test_are_disjoint(which):
    fn, name, k, sizes = TASKS[which]
    images, labels, _ = _image_table(name)
    pool, val, test = _table_splits(name, k)
    assert [len(p) for p in pool] == [sizes[0]] * k and [len(v) for v in val] == [sizes[1]] * k
    assert [len(t) for t in test] == [sizes[2]] * k
    rows = [set(np.concatenate(s).tolist()) for s in (pool, val, test)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    content = [{images[i].tobytes() for i in r} for r in rows]  # no image (patch) appears in two splits
    assert not (content[0] & content[1]) and not (content[0] & content[2]) and not (content[1] & content[2])
    for c in range(k):
        assert (labels[pool[c]] == c).all() and (labels[val[c]] == c).all() and (labels[test[c]] == c).all()


def test_texture_splits_come_from_disjoint_image_regions():
    """Rebuild each texture from its tiles: every 128x128 block holds tiles of one split only."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_tasks
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    blocks = make_tasks.BLOCKS
    assert sorted(np.bincount(blocks.ravel()).tolist()) == [2, 6, 8]  # val, test, pool blocks
    _, labels, splits = _image_table(FAR_FILE)
    for c in range(5):
        got = splits[labels == c]  # file order: split, then class, then tile row-major within the image
        want = np.sort(np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1).ravel(), kind="stable")
        assert got.tolist() == want.tolist()


@pytest.mark.parametrize("which", TASKS)
def test_same_seed_same_task_other_seed_other_draw(which):
    fn = TASKS[which][0]
    a, b, c = fn(shots=10, seed=0), fn(shots=10, seed=0), fn(shots=10, seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, c.x_test) and torch.equal(a.x_val, c.x_val), "test and validation never change"
    assert torch.equal(a.y_test, c.y_test) and torch.equal(a.y_val, c.y_val)


@pytest.mark.parametrize("which", TASKS)
def test_values_are_images(which):
    fn = TASKS[which][0]
    task = fn(shots=10, seed=0)
    assert task.mean == ftcourse.data.source_stats()[0] and task.std == ftcourse.data.source_stats()[1]
    for x in (task.x_train, task.x_val, task.x_test):
        pixels = ftcourse.denormalize(x, task.mean, task.std)
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
        assert pixels.max() > 0.9 and 0.05 < pixels.mean() < 0.7 and pixels.std() > 0.1
    own = fn(shots=10, seed=0, norm="own")
    assert torch.allclose(own.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    plain = fn(shots=10, seed=0, norm="none")
    assert torch.allclose(ftcourse.denormalize(task.x_test, task.mean, task.std), plain.x_test, atol=1e-5)


def test_near_clutter_is_optional_and_clean_digits_are_the_stored_images():
    clean = ftcourse.near_task(shots=5, seed=0, norm="none", clutter=0)
    images, labels, _ = _image_table(NEAR_FILE)
    test = _table_splits(NEAR_FILE, 10)[2]
    first = np.array([test[c][0] for c in range(10)])
    assert torch.equal(clean.x_test[:10, 0], torch.from_numpy(images[first] / 255.0).float())
    assert clean.y_test[:10].tolist() == labels[first].tolist() == list(range(10))
    assert clean.x_test[:, :, :6].abs().max() == 0, "clean digits are centred: the top margin is black"
    cluttered = ftcourse.near_task(shots=5, seed=0, norm="none")
    assert cluttered.x_test.mean() > clean.x_test.mean(), "clutter adds ink"
    assert "cluttered" in cluttered.name and "clean" in clean.name


@pytest.mark.parametrize("which", TASKS)
@pytest.mark.parametrize("kwargs, fix", [
    (dict(shots=0), r"shots must be an int in 1\.\.\d+.*shots=10"),
    (dict(shots=1000), r"shots must be an int in 1\.\.\d+"),
    (dict(shots=2.5), r"shots must be an int"),
    (dict(shots=True), r"shots must be an int"),
    (dict(shots=5, seed=-1), r"seed must be a non-negative int.*seed=0"),
    (dict(shots=5, seed=True), r"seed must be a non-negative int"),
    (dict(shots=5, seed=1.0), r"seed must be a non-negative int"),
    (dict(shots=5, norm="imagenet"), r"norm must be 'source', 'own', 'none' or a \(mean, std\) pair"),
])
def test_bad_arguments_name_the_fix(which, kwargs, fix):
    with pytest.raises(ValueError, match=fix):
        TASKS[which][0](**kwargs)


def test_shot_limits_are_the_pool_sizes():
    assert len(ftcourse.near_task(shots=70).y_train) == 700
    assert len(ftcourse.far_task(shots=128).y_train) == 640
    with pytest.raises(ValueError, match=r"1\.\.70"):
        ftcourse.near_task(shots=71)
    with pytest.raises(ValueError, match=r"1\.\.128"):
        ftcourse.far_task(shots=129)
    for bad in (-1, 21, 1.5, True, "4"):
        with pytest.raises(ValueError, match=r"clutter must be an int in 0\.\.20"):
            ftcourse.near_task(shots=5, clutter=bad)


@pytest.mark.slow
def test_tasks_load_without_the_build_tools():
    """scikit-learn and scikit-image build the files; loading them needs numpy only."""
    code = ("import sys, ftcourse; ftcourse.near_task(shots=2); ftcourse.far_task(shots=2); "
            "bad = [m for m in ('sklearn', 'skimage', 'scipy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)
    deps = " ".join(__import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert "scikit" not in deps


@pytest.mark.slow
def test_benchmark_quick_prints_both_tables(tmp_path):
    save = tmp_path / "quick.json"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "new_tasks_table.py"), "--quick",
                          "--save", str(save)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("per class |") == 2 and "chance 0.10" in out.stdout and "chance 0.20" in out.stdout
    res = json.loads(save.read_text())
    assert res["steps"] == 20 and res["seeds"] == [0]
    assert all(t["test_images"] == 100 for t in res["tasks"].values())
