"""Shared test set-up: a non-interactive matplotlib backend for this process, and the fixtures many files use.

Not through MPLBACKEND: nbval's kernels inherit the environment and must keep the inline backend.
A test file may define its own `model` fixture (e.g. pretrained); the one here is a small random ResNet.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ftcourse  # noqa: E402

torch.set_num_threads(ftcourse.runtime.default_threads())  # 2, or $FTCOURSE_THREADS (1 in xdist workers)


@pytest.fixture(autouse=True)
def close_figures():
    """No figure outlives its test."""
    yield
    plt.close("all")


@pytest.fixture
def model():
    """The course's small ResNet with random weights (seed 0), 5 classes."""
    torch.manual_seed(0)
    return ftcourse.course_backbone(num_classes=5)


@pytest.fixture
def batch():
    """Four random 32-px images and labels."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g)


@pytest.fixture(scope="module")
def small_task():
    """The target task with 4 training images per class."""
    return ftcourse.target_task(shots=4, seed=0)
