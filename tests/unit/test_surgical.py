"""Surgical fine-tuning (one block trained alone), the shifted source task and a learner's folder as a Task."""

import numpy as np
import pytest
import torch
from PIL import Image

import ftcourse
from ftcourse.lab import shipped, studies


def test_surgical_blocks_of_a_resnet_are_stem_plus_layer1_then_the_stages(model):
    blocks = ftcourse.recipes.surgical_blocks(model)
    assert len(blocks) == 4
    assert blocks[0][0] is model.conv1 and blocks[0][-1] is model.layer1
    assert [b[0] for b in blocks[1:]] == [model.layer2, model.layer3, model.layer4]
    resnet50 = ftcourse.torchvision_backbone("resnet50")
    assert [b[-1] for b in ftcourse.recipes.surgical_blocks(resnet50)] == [resnet50.layer1, resnet50.layer2,
                                                                     resnet50.layer3, resnet50.layer4]


@pytest.mark.parametrize("block", [0, -1, "all"])
def test_surgical_fine_tune_moves_only_its_block_and_keeps_frozen_bn_statistics(small_task, block):
    start = ftcourse.load_pretrained()  # 5-class head: the small task's labels
    before = {k: v.clone() for k, v in start.state_dict().items()}
    model, acc = ftcourse.surgical_fine_tune(small_task, block, seed=0, steps=3, model=start)
    assert 0.0 <= acc <= 1.0
    blocks = ftcourse.recipes.surgical_blocks(model)
    inside = set() if block == "all" else {id(t) for m in blocks[block] for t in list(m.parameters()) + list(m.buffers())}
    names = {id(t): n for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    moved, kept = [], []
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        changed = not torch.equal(value, before[name])
        (moved if changed else kept).append(name)
        tensor = dict(model.named_parameters()).get(name, dict(model.named_buffers()).get(name))
        if block != "all" and id(tensor) not in inside:
            assert not changed, f"{name} is outside block {block} and changed"
    assert moved and all(p.requires_grad for p in model.parameters())  # handed back trainable
    assert names  # the model has named tensors


def test_surgical_fine_tune_refuses_bad_blocks_and_a_head_of_the_wrong_size(small_task):
    with pytest.raises(ValueError, match="block must be 'all' or a block index"):
        ftcourse.surgical_fine_tune(small_task, 4, model=ftcourse.load_pretrained())
    with pytest.raises(ValueError, match="block must be"):
        ftcourse.surgical_fine_tune(small_task, "first", model=ftcourse.load_pretrained())
    near = ftcourse.near_task(shots=2)
    with pytest.raises(ValueError, match="warm a head for the task first"):
        ftcourse.surgical_fine_tune(near, 0, model=ftcourse.load_pretrained(), steps=1)


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


def test_fastai_epochs_make_about_200_steps():
    assert studies.fastai_epochs(ftcourse.target_task(shots=10)) == 199  # 50 images: 1 step per epoch
    assert studies.fastai_epochs(ftcourse.near_task(shots=10)) == 66  # 100 images: 3 steps per epoch, 67 * 3 = 201


def test_wall_seconds_and_choices_are_never_compared_with_the_shipped_file():
    seed0 = shipped.read_results("recipe")["seeds"]["0"]
    fresh = {k: (v * 3 if "seconds" in k else v) for k, v in seed0.items()}
    fresh["near chosen rate"] = 123.0
    assert not shipped.differences_from_shipped("recipe", 0, fresh)
    fresh["near test recipe"] = seed0["near test recipe"] + 0.2
    assert shipped.differences_from_shipped("recipe", 0, fresh) == [
        f"near test recipe: {fresh['near test recipe']:.4g} vs shipped {seed0['near test recipe']:.4g}"]
