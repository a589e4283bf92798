"""Reproducibility and device choice: called explicitly, never on import."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "get_device", "DEFAULT_THREADS"]

DEFAULT_THREADS = 2  # the course's reference machine is a 2-core CPU


def seed_everything(seed: int = 0, threads: int | None = DEFAULT_THREADS, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for DataLoaders.

    Called in the first cell of every lesson (ftcourse has no side effects on import).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(int(threads))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device the course runs on: the argument, else $FTCOURSE_DEVICE, else CPU.

    The course defaults to CPU so that recorded outputs match; set FTCOURSE_DEVICE=cuda
    (or pass "cuda") to run the same notebooks on a GPU.
    """
    name = device if device is not None else os.environ.get("FTCOURSE_DEVICE", "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but torch.cuda.is_available() is False")
    return dev
