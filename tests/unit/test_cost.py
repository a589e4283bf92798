"""ftcourse.cost: backward graph size, step cost and timers."""
import torch
import torch.nn.functional as F

import ftcourse
from ftcourse import backward_graph_size, freeze_to, time_steps, unit_groups


def test_step_cost_counts_nodes_and_leaves_weights_alone(model, batch):
    ftcourse.freeze_to(model, -1)
    before = ftcourse.snapshot(model)
    cost = ftcourse.step_cost(model, *batch, reps=2, warmup=1)
    assert set(cost) == {"nodes", "step_ms", "forward_ms", "peak_mib"}
    assert 0 < cost["nodes"] <= 10 and cost["step_ms"] > 0 and cost["forward_ms"] > 0 and cost["peak_mib"] is None
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_backward_graph_size_of_a_small_graph():
    a = torch.ones(3, requires_grad=True)
    assert backward_graph_size((a * 2).sum()) == 3  # SumBackward, MulBackward, AccumulateGrad
    assert backward_graph_size(torch.ones(3).sum()) == 0


def test_backward_graph_shrinks_as_the_freeze_point_moves_up(model, batch):
    groups = unit_groups(model)  # one group per unit: stem, layer1..4, head
    sizes = []
    for n in range(len(groups) + 1):
        freeze_to(model, n, groups=groups)
        sizes.append(backward_graph_size(F.cross_entropy(model(batch[0]), batch[1])))
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert sizes[-1] == 0  # everything frozen: nothing to do backward
    freeze_to(model, -1, groups=groups, train_bn=True)  # fastai: BN trainable, the graph spans the body
    assert backward_graph_size(F.cross_entropy(model(batch[0]), batch[1])) > sizes[2] > 10 * sizes[-2]


def test_time_steps_returns_one_positive_time_per_rep(model, batch):
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    times = time_steps(model, *batch, opt, reps=3, warmup=1)
    assert len(times) == 3 and all(t > 0 for t in times)


def test_forward_ms_times_each_model_in_turns(model):
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    times = ftcourse.forward_ms([model, model], x, reps=3)
    assert len(times) == 2 and all(t > 0 for t in times)
