"""Surgical fine-tuning: one block trained alone (ftcourse.recipes.surgical_blocks, surgical_fine_tune).

The shifted source task and `folder_task` are tested with the other tasks in test_data.py. The last two
tests here are the lab's (studies.fastai_epochs, shipped.differences_from_shipped on the recipe file).
"""

import pytest
import torch

import ftcourse


def test_surgical_blocks_of_a_resnet_are_stem_plus_layer1_then_the_stages(model):
    blocks = ftcourse.recipes.surgical_blocks(model)
    assert len(blocks) == 4
    assert blocks[0][0] is model.conv1 and blocks[0][-1] is model.layer1
    assert [b[0] for b in blocks[1:]] == [model.layer2, model.layer3, model.layer4]
    resnet50 = ftcourse.torchvision_backbone("resnet50")
    assert [b[-1] for b in ftcourse.recipes.surgical_blocks(resnet50)] == [resnet50.layer1, resnet50.layer2,
                                                                     resnet50.layer3, resnet50.layer4]


# Every tensor of the trained block moves in 3 steps (weights and BN statistics); "all" trains the head too.
BLOCK_PREFIXES = {0: ("conv1.", "bn1.", "layer1."), -1: ("layer4.",), "head": ("fc.",),
                  "all": ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")}


@pytest.mark.parametrize("block", [0, -1, "head", "all"])
def test_surgical_fine_tune_moves_only_its_block_and_keeps_frozen_bn_statistics(small_task, block):
    start = ftcourse.load_pretrained()  # 5-class head: the small task's labels
    before = {k: v.clone() for k, v in start.state_dict().items()}
    model, acc = ftcourse.surgical_fine_tune(small_task, block, seed=0, steps=3, model=start)
    assert acc == ftcourse.evaluate(model, (small_task.x_test, small_task.y_test))  # the returned model's test accuracy
    blocks = ftcourse.recipes.surgical_blocks(model)
    chosen = [model.fc] if block == "head" else [] if block == "all" else blocks[block]
    inside = {id(t) for m in chosen for t in list(m.parameters()) + list(m.buffers())}
    moved, kept = [], []
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        changed = not torch.equal(value, before[name])
        (moved if changed else kept).append(name)
        tensor = dict(model.named_parameters()).get(name, dict(model.named_buffers()).get(name))
        if block != "all" and id(tensor) not in inside:
            assert not changed, f"{name} is outside block {block} and changed"
    assert all(p.requires_grad for p in model.parameters())  # handed back trainable
    assert moved == [n for n in before if n.startswith(BLOCK_PREFIXES[block]) and not n.endswith("num_batches_tracked")]


def test_surgical_fine_tune_refuses_bad_blocks_and_a_head_of_the_wrong_size(small_task):
    with pytest.raises(ValueError, match="block must be 'all', 'head' or a block index"):
        ftcourse.surgical_fine_tune(small_task, 4, model=ftcourse.load_pretrained())
    with pytest.raises(ValueError, match="block must be"):
        ftcourse.surgical_fine_tune(small_task, "first", model=ftcourse.load_pretrained())
    near = ftcourse.near_task(shots=2)
    with pytest.raises(ValueError, match="warm a head for the task first"):
        ftcourse.surgical_fine_tune(near, 0, model=ftcourse.load_pretrained(), steps=1)
