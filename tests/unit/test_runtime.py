"""ftcourse.runtime: seeding and the device choice."""
import pytest
import torch

import ftcourse


def test_seed_everything_and_device(monkeypatch):
    g1 = ftcourse.seed_everything(5)
    a = torch.rand(3)
    ftcourse.seed_everything(5)
    assert torch.equal(a, torch.rand(3)) and isinstance(g1, torch.Generator)
    with pytest.raises(ValueError):
        ftcourse.seed_everything(-1)
    monkeypatch.setenv("FTCOURSE_DEVICE", "cpu")
    assert ftcourse.get_device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            ftcourse.get_device("cuda")


def test_thread_count_follows_ftcourse_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("FTCOURSE_THREADS", "1")
        ftcourse.seed_everything(0)
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("FTCOURSE_THREADS", "two")
        with pytest.raises(ValueError, match="FTCOURSE_THREADS"):
            ftcourse.seed_everything(0)
    finally:
        torch.set_num_threads(before)
