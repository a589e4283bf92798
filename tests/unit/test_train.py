"""ftcourse.train: fit (epochs or steps), evaluate, precompute_features; a GradientRecorder as on_step."""
import numpy as np
import pytest
import torch

import ftcourse


def _tiny_task():
    return ftcourse.target_task(shots=4, seed=0)


def test_fit_records_history_and_learns():
    ftcourse.seed_everything(0)
    task = _tiny_task()
    model = ftcourse.load_pretrained(num_classes=5)
    before = ftcourse.evaluate(model, (task.x_train, task.y_train))
    hist = ftcourse.fit(model, ftcourse.make_loader(task.x_train, task.y_train, 10, shuffle=True), epochs=4, lr=0.01,
                  val=(task.x_train, task.y_train), progress=False)
    assert len(hist.loss) == len(hist.val_acc) == len(hist.seconds) == 4
    assert hist.val_acc[-1] > before
    assert "History(epochs=4" in repr(hist)


def test_fit_errors_are_clear():
    model = ftcourse.course_backbone()
    for p in model.parameters():
        p.requires_grad_(False)
    loader = ftcourse.make_loader(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="no trainable parameters"):
        ftcourse.fit(model, loader, epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        ftcourse.fit(ftcourse.course_backbone(), loader, epochs=0, progress=False)
    with pytest.raises(TypeError, match="DataLoader"):
        ftcourse.evaluate(model, [torch.zeros(1)])
    with pytest.raises(ValueError, match="items"):
        ftcourse.make_loader(torch.zeros(2), torch.zeros(3))


def test_evaluate_restores_mode():
    model = ftcourse.course_backbone()
    model.train()
    ftcourse.evaluate(model, (torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)))
    assert model.training


def test_head_on_cached_features_equals_head_on_frozen_body():
    """The cached-feature shortcut trains the same head as a frozen body in eval mode."""
    task = _tiny_task()
    model = ftcourse.load_pretrained()
    ftcourse.replace_head(model, 5, seed=0)
    twin = ftcourse.load_pretrained()
    ftcourse.replace_head(twin, 5, seed=0)
    ftcourse.freeze_to(twin, -1)
    ftcourse.seed_everything(0)
    ftcourse.fit(twin, ftcourse.make_loader(task.x_train, task.y_train, 8, shuffle=True, seed=3), epochs=3, lr=0.05,
           progress=False)
    feats, labels = ftcourse.precompute_features(model, (task.x_train, task.y_train))
    ftcourse.seed_everything(0)
    ftcourse.fit(model.fc, ftcourse.make_loader(feats, labels, 8, shuffle=True, seed=3), epochs=3, lr=0.05, progress=False)
    assert torch.allclose(model.fc.weight, twin.fc.weight, atol=1e-5)


def test_fit_for_a_number_of_steps_cycles_the_loader_and_stops_exactly():
    task = _tiny_task()  # 20 images: 3 batches of 8 per pass
    model = ftcourse.course_backbone()
    loader = ftcourse.make_loader(task.x_train, task.y_train, 8, shuffle=True, seed=0)
    seen = []
    hist = ftcourse.fit(model, loader, steps=7, lr=0.01, progress=False, on_step=seen.append)
    assert seen == list(range(1, 8))  # exactly 7 optimizer steps
    assert len(hist.loss) == 3  # passes: 3 + 3 + 1 steps
    with pytest.raises(ValueError, match="not both"):
        ftcourse.fit(model, loader, epochs=1, steps=3, progress=False)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        ftcourse.fit(model, loader, steps=0, progress=False)


def test_fit_onecycle_over_steps_ends_at_the_bottom_of_the_schedule():
    task = _tiny_task()
    model = ftcourse.course_backbone()
    opt = ftcourse.make_optimizer(model, lr=0.1)
    lrs = []  # the rate the next step will use, after each step
    ftcourse.fit(model, ftcourse.make_loader(task.x_train, task.y_train, 8), steps=5, optimizer=opt, progress=False,
                 on_step=lambda step: lrs.append(opt.param_groups[0]["lr"]))
    assert max(lrs) > 0.05 and lrs[-2] < 1e-4  # the one-cycle schedule peaks and ends within exactly the 5 steps


def test_fit_refuses_an_empty_loader():
    empty = ftcourse.make_loader(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        ftcourse.fit(ftcourse.course_backbone(), empty, steps=1, progress=False)


def test_a_gradient_recorder_is_an_on_step_callback():
    task = _tiny_task()
    model = ftcourse.course_backbone()
    groups = ftcourse.freeze_to(model, 1)
    with ftcourse.GradientRecorder(model, groups) as rec:
        ftcourse.fit(model, ftcourse.make_loader(task.x_train, task.y_train, 8), steps=4, progress=False, on_step=rec)
    arr = rec.as_array()
    assert arr.shape == (4, 3) and np.isnan(arr[:, 0]).all() and (arr[:, 1:] > 0).all()



def test_cosine_schedule_starts_at_the_rate_and_ends_near_zero():
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rates = []
    ftcourse.fit(model, ftcourse.make_loader(x, y, batch_size=4), steps=8, optimizer=opt, schedule="cosine",
                 progress=False, on_step=lambda step: rates.append(opt.param_groups[0]["lr"]))
    assert rates[0] < 0.5 and rates == sorted(rates, reverse=True) and rates[-1] < 1e-6
    with pytest.raises(ValueError, match="'onecycle', 'cosine' or None"):
        ftcourse.fit(model, ftcourse.make_loader(x, y), steps=1, schedule="linear", progress=False)
