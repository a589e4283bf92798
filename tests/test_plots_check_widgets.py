"""ftcourse.plots, ftcourse.check and ftcourse.widgets: plots label and grey what they should, checkers
accept right answers and reject wrong ones, the explorer builds without training."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

import ftcourse  # noqa: E402
import ftcourse.check as check  # noqa: E402
import ftcourse.plots as plots  # noqa: E402
import ftcourse.widgets as widgets  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ftcourse.course_backbone(num_classes=5)


@pytest.fixture(scope="module")
def small_task():
    return ftcourse.target_task(shots=4, seed=0)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g)


def _labelled(ax):
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


# ---------------------------------------------------------------- plots
def test_grad_norm_bars_grey_out_frozen_groups_on_a_log_axis():
    hist = np.array([[np.nan, 0.5, 2.0], [np.nan, 0.7, 1.0]])
    ax = plots.plot_group_grad_norms(hist, ["stem", "layer", "head"], [True, False, False])
    _labelled(ax)
    assert ax.get_yscale() == "log"
    colours = [to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours[0] == plots.FROZEN_COLOUR and plots.FROZEN_COLOUR not in colours[1:]
    assert [t.get_text() for t in ax.texts] == ["frozen"]
    tops = [p.get_height() for p in ax.patches[1:]]
    assert tops == pytest.approx([0.6, 1.5])


def test_grad_norm_plot_reads_a_recorder_and_draws_lines(model, batch):
    ftcourse.freeze_to(model, -1)
    rec = ftcourse.GradientRecorder(model, groups=ftcourse.unit_groups(model), names=ftcourse.unit_names(model))
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        rec.step()
    ax = plots.plot_group_grad_norms(rec, kind="lines")
    _labelled(ax)
    labels = ax.get_legend_handles_labels()[1]
    assert labels[:5] == [f"{n} (frozen)" for n in ["stem", "layer1", "layer2", "layer3", "layer4"]]
    assert labels[5] == "head" and len(ax.lines[-1].get_xdata()) == 2


def test_grad_norm_plot_rejects_mismatched_names_and_kinds():
    with pytest.raises(ValueError, match="2 groups"):
        plots.plot_group_grad_norms(np.ones((3, 2)), ["a"], [False])
    with pytest.raises(ValueError, match="kind"):
        plots.plot_group_grad_norms(np.ones((3, 2)), ["a", "b"], [False, False], kind="pie")


def test_show_filters_grid_and_grey_input(model):
    ax = plots.show_filters(model.conv1.weight, ncols=8)
    _labelled(ax)
    img = ax.images[0].get_array()
    assert img.shape == (4 * 4 + 1, 8 * 4 + 1, 3)  # 32 filters of 3x3, 1-px gaps
    ax = plots.show_filters(model.conv1.weight, ncols=8, grey_input=True)
    assert ax.images[0].get_array().ndim == 2
    with pytest.raises(ValueError, match="conv weight"):
        plots.show_filters(torch.ones(3, 3))


def test_show_images_labels_each_image(small_task):
    ax = plots.show_images(small_task.x_train[:6], small_task.y_train[:6], small_task.classes,
                           small_task.mean, small_task.std, ncols=3)
    _labelled(ax)
    assert [t.get_text() for t in ax.texts] == [small_task.classes[int(v)] for v in small_task.y_train[:6]]
    arr = ax.images[0].get_array()
    assert float(arr.min()) >= 0 and float(arr.max()) <= 1


def test_plot_cost_vs_freeze_two_or_three_panels():
    rows = [{"point": "stem", "nodes": 80, "step_ms": 30.0, "forward_ms": 10.0, "peak_mib": None},
            {"point": "head", "nodes": 6, "step_ms": 10.5, "forward_ms": 10.0, "peak_mib": None}]
    axes = plots.plot_cost_vs_freeze(rows)
    assert len(axes) == 2
    for ax in axes:
        _labelled(ax)
    assert list(axes[1].lines[0].get_ydata()) == pytest.approx([3.0, 1.05])
    rows = [dict(r, peak_mib=m) for r, m in zip(rows, [100.0, 20.0])]
    assert len(plots.plot_cost_vs_freeze(rows)) == 3


# ---------------------------------------------------------------- checkers
def test_checkers_say_not_attempted_for_none(capsys):
    check.frozen_head_only(None)
    check.number(None, 1.0, "x")
    check.audit_clean(None, None, None)
    assert capsys.readouterr().out.count("Not attempted yet") == 3


def test_frozen_head_only_accepts_a_real_freeze_and_rejects_the_traps(model, capsys):
    ftcourse.freeze_to(model, -1)
    check.frozen_head_only(model)
    assert "Correct" in capsys.readouterr().out
    torch.manual_seed(0)
    unfrozen = ftcourse.course_backbone(num_classes=5)
    with pytest.raises(AssertionError, match="Your trainable modules"):
        check.frozen_head_only(unfrozen)
    for p in unfrozen.parameters():
        p.requires_grad_(False)
    unfrozen.fc.requires_grad_(True)
    with pytest.raises(AssertionError, match="not pinned in eval mode"):
        check.frozen_head_only(unfrozen)
    with pytest.raises(AssertionError, match="nn.Module"):
        check.frozen_head_only("my model")


def test_trains_only(model, capsys):
    ftcourse.freeze([model.conv1, model.bn1, model.layer1, model.layer2, model.layer3])
    check.trains_only(model, ["layer4", "fc"])
    assert "Correct: only layer4, fc train" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="expected \\['fc'\\]"):
        check.trains_only(model, ["fc"])
    with pytest.raises(AssertionError, match="not top-level modules"):
        check.trains_only(model, ["layer9"])


def test_audit_clean_accepts_the_fixed_tutorial_and_rejects_the_original(model, batch, capsys):
    for p in model.parameters():
        p.requires_grad = False
    model.fc = torch.nn.Linear(model.fc.in_features, 5)
    opt = torch.optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)
    with pytest.raises(AssertionError, match="BN running statistics changed"):
        check.audit_clean(model, opt, batch)
    ftcourse.freeze_bn_stats(model)
    check.audit_clean(model, opt, batch)
    assert "Correct" in capsys.readouterr().out
    torch.manual_seed(0)
    everything = ftcourse.course_backbone(num_classes=5)
    with pytest.raises(AssertionError, match="Nothing is frozen"):
        check.audit_clean(everything, torch.optim.SGD(everything.parameters(), lr=0.1), batch)


def test_number_param_count_and_normalised(model, capsys):
    check.number(0.1234, 0.1234, "ratio")
    with pytest.raises(AssertionError, match="Your ratio = 0.2, expected 0.1234"):
        check.number(0.2, 0.1234, "ratio")
    expected = sum(p.numel() for p in model.layer3.parameters())
    check.param_count(expected, [model.layer3], "parameters")
    with pytest.raises(AssertionError, match="expected"):
        check.param_count(expected + 1, model.layer3)
    raw = torch.rand(2, 3, 8, 8)
    mean, std = (0.2, 0.3, 0.4), (0.5, 0.6, 0.7)
    check.normalised(ftcourse.normalize(raw, mean, std), raw, mean, std)
    with pytest.raises(AssertionError, match="per-channel means"):
        check.normalised((raw - 0.2) / 0.5, raw, mean, std)
    out = capsys.readouterr().out
    assert out.count("Correct") == 3


# ---------------------------------------------------------------- widgets
def test_unit_groups_and_names(model):
    assert ftcourse.unit_names(model) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert len(ftcourse.unit_groups(model)) == 6


def test_step_cost_counts_nodes_and_leaves_weights_alone(model, batch):
    ftcourse.freeze_to(model, -1)
    before = ftcourse.snapshot(model)
    cost = ftcourse.step_cost(model, *batch, reps=2, warmup=1)
    assert set(cost) == {"nodes", "step_ms", "forward_ms", "peak_mib"}
    assert 0 < cost["nodes"] <= 10 and cost["step_ms"] > 0 and cost["forward_ms"] > 0 and cost["peak_mib"] is None
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_freeze_explorer_builds_without_training(monkeypatch, small_task):
    import ipywidgets as w

    built = []

    def factory():
        torch.manual_seed(0)
        built.append(ftcourse.course_backbone(num_classes=5))
        return built[-1]

    def no_training(*args, **kwargs):
        raise AssertionError("building the widget must not train")

    monkeypatch.setattr(widgets, "run_frozen_steps", no_training)
    box = widgets.freeze_explorer(factory, small_task)
    assert isinstance(box, w.VBox) and len(built) == 1
    dropdown = box.children[0].children[0]
    assert isinstance(dropdown, w.Dropdown) and dropdown.value == 5 and len(dropdown.options) == 6
    assert isinstance(box.children[1], w.Button) and isinstance(box.children[2], w.Output)
    snap = ftcourse.snapshot(built[0])
    assert all(torch.equal(v, built[0].state_dict()[k]) for k, v in snap.items())


def test_freeze_explorer_run_records_who_gets_gradients(small_task):
    def factory():
        torch.manual_seed(0)
        return ftcourse.course_backbone(num_classes=5)

    box = widgets.freeze_explorer(factory, small_task, steps=2, batch_size=8)
    box.children[0].children[0].value = 4  # train layer4 and the head
    result = box.run()
    assert result["frozen"] == [True] * 4 + [False, False]
    arr = result["recorder"].as_array()
    assert arr.shape == (2, 6) and np.all(np.isnan(arr[:, :4])) and np.all(arr[:, 4:] > 0)
    assert result["step_ms"] > 0 and 0 < result["nodes"] < 40


def test_run_frozen_steps_refuses_an_all_frozen_model(small_task, model):
    with pytest.raises(ValueError, match="nothing is trainable"):
        widgets.run_frozen_steps(model, small_task, first_trainable=6, steps=1)


# ---------------------------------------------------------------- lesson 03: learning rates per group
def _resnet_groups_by_hand(m, rates):
    mods = [(m.conv1, m.bn1, m.layer1, m.layer2), (m.layer3, m.layer4), (m.fc,)]
    return [{"params": [p for mod in ms for p in mod.parameters()], "lr": lr} for ms, lr in zip(mods, rates)]


def test_param_groups_match_accepts_dicts_and_optimizers(model, capsys):
    check.param_groups_match(None, model, [1e-4, 1e-3, 1e-2])
    assert "Not attempted yet" in capsys.readouterr().out
    check.param_groups_match(_resnet_groups_by_hand(model, [1e-4, 1e-3, 1e-2]), model, [1e-4, 1e-3, 1e-2])
    opt = ftcourse.make_optimizer(ftcourse.param_groups(model, np.array([1e-4, 1e-3, 1e-2]), bn_weight_decay=0.0))
    check.param_groups_match(opt, model, [1e-4, 1e-3, 1e-2])  # one layer group split over two dicts is fine
    assert capsys.readouterr().out.count("Correct") == 2


def test_param_groups_match_rejects_the_mistakes(model):
    rates = [1e-4, 1e-3, 1e-2]
    with pytest.raises(AssertionError, match="should learn at 0.0001"):
        check.param_groups_match(_resnet_groups_by_hand(model, rates[::-1]), model, rates)
    missing = _resnet_groups_by_hand(model, rates)
    missing[0]["params"] = missing[0]["params"][3:]  # conv1 and bn1 forgotten
    with pytest.raises(AssertionError, match="in no group"):
        check.param_groups_match(missing, model, rates)
    twice = _resnet_groups_by_hand(model, rates) + [{"params": list(model.fc.parameters()), "lr": 1e-2}]
    with pytest.raises(AssertionError, match="more than one group"):
        check.param_groups_match(twice, model, rates)
    no_lr = _resnet_groups_by_hand(model, rates)
    del no_lr[1]["lr"]
    with pytest.raises(AssertionError, match="no 'lr'"):
        check.param_groups_match(no_lr, model, rates)
    with pytest.raises(AssertionError, match="expected a torch optimizer or a list"):
        check.param_groups_match({"params": [], "lr": 1.0}, model, rates)
    torch.manual_seed(1)
    other = ftcourse.course_backbone(num_classes=5)
    with pytest.raises(AssertionError, match="not parameters of this model"):
        check.param_groups_match(_resnet_groups_by_hand(other, rates), model, rates)


def test_param_groups_match_with_a_frozen_group(model, capsys):
    rates = [None, 1e-3, 1e-2]
    with pytest.raises(AssertionError, match="should be frozen"):
        check.param_groups_match(_resnet_groups_by_hand(model, [1e-4, 1e-3, 1e-2])[1:], model, rates)
    ftcourse.freeze_to(model, 1)
    with pytest.raises(AssertionError, match="leave frozen parameters out"):
        check.param_groups_match(torch.optim.SGD(model.parameters(), lr=1e-3), model, rates)
    opt = ftcourse.make_optimizer(ftcourse.param_groups(model, np.array([1e-4, 1e-3, 1e-2])))
    check.param_groups_match(opt, model, rates)
    assert "Correct" in capsys.readouterr().out


def test_learning_rates_checker(capsys):
    expected = ftcourse.ulmfit_lrs(5, 0.01)
    check.learning_rates(None, expected)
    check.learning_rates([0.01 / 2.6 ** (4 - i) for i in range(5)], expected)
    check.learning_rates(np.array(expected), expected)
    out = capsys.readouterr().out
    assert "Not attempted yet" in out and out.count("Correct") == 2
    with pytest.raises(AssertionError, match="wrong order"):
        check.learning_rates(expected[::-1], expected)
    with pytest.raises(AssertionError, match="has 3 values, expected 5"):
        check.learning_rates(expected[:3], expected)
    with pytest.raises(AssertionError, match="expected a list"):
        check.learning_rates(0.01, expected)


def test_short_group_names(model):
    assert widgets.short_group_names(model, ftcourse.layer_groups(model, 3)) == ["stem-layer2", "layer3-layer4", "head"]
    assert widgets.short_group_names(model, ftcourse.unit_groups(model)) == ftcourse.unit_names(model)


def test_run_lr_steps_measures_each_group(model, small_task):
    before = ftcourse.snapshot(model)
    result = widgets.run_lr_steps(model, small_task, np.array([0.0, 1e-3, 1e-1]), steps=3, batch_size=8)
    assert result["lrs"] == pytest.approx([0.0, 1e-3, 1e-1])
    assert result["names"] == ["stem-layer2", "layer3-layer4", "head"]
    ratios = result["update_ratios"]
    assert ratios[0] == 0.0 and 0 < ratios[1] < ratios[2]  # rate 0: the group did not move at all
    assert all(g > 0 for g in result["grad_norms"]) and np.isfinite(result["loss"])
    assert 0 <= result["accuracy"] <= 1
    assert not torch.equal(before["fc.weight"], model.fc.weight.detach())
    assert len(widgets.run_lr_steps(model, small_task, slice(1e-4, 1e-2), steps=1, batch_size=8)["lrs"]) == 3


def test_plot_update_ratios_grouped_log_bars():
    ax = widgets.plot_update_ratios({"a": [0.01, 0.02, 1.0], "b": [0.001, 0.01, 2.0]}, ["g0", "g1", "head"])
    _labelled(ax)
    assert ax.get_yscale() == "log" and len(ax.patches) == 6
    assert ax.get_legend_handles_labels()[1] == ["a", "b"]
    with pytest.raises(ValueError, match="2 ratios but there are 3 groups"):
        widgets.plot_update_ratios({"a": [1.0, 2.0]}, ["g0", "g1", "head"])


def test_lr_explorer_builds_without_training_and_runs(monkeypatch, small_task):
    import ipywidgets as w

    def factory():
        torch.manual_seed(0)
        return ftcourse.course_backbone(num_classes=5)

    real = widgets.run_lr_steps

    def no_training(*args, **kwargs):
        raise AssertionError("building the widget must not train")

    monkeypatch.setattr(widgets, "run_lr_steps", no_training)
    box = widgets.lr_explorer(factory, small_task, steps=2, batch_size=8)
    sliders = [c for c in box.children if isinstance(c, w.FloatLogSlider)]
    assert [s.value for s in sliders] == pytest.approx([1e-4, 1e-3, 1e-2])
    preset, button = box.children[3].children
    assert isinstance(button, w.Button) and isinstance(box.children[4], w.Output)
    preset.value = "uniform 0.3"
    assert [s.value for s in sliders] == pytest.approx([0.3] * 3)
    monkeypatch.setattr(widgets, "run_lr_steps", real)
    result = box.run()
    assert result["lrs"] == pytest.approx([0.3] * 3) and len(result["update_ratios"]) == 3
    box.run()
    assert len(box.history) == 2
