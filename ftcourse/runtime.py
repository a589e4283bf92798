"""Reproducibility and device choice: called explicitly, never on import."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .inputs import require_int

__all__ = ["seed_everything", "get_device", "DEFAULT_THREADS", "default_threads"]

DEFAULT_THREADS = 2  # the course's reference machine is a 2-core CPU; $FTCOURSE_THREADS overrides it


def default_threads() -> int:
    """$FTCOURSE_THREADS if set (e.g. 1, to check that results hold under another summation order), else 2."""
    value = os.environ.get("FTCOURSE_THREADS", str(DEFAULT_THREADS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FTCOURSE_THREADS must be a positive int, got {value!r}; unset it to use {DEFAULT_THREADS}")
    return int(value)


def seed_everything(seed: int = 0, threads: int | None = None, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch, fix the CPU thread count; return a CPU generator for DataLoaders.

    Called in the first cell of every lesson (ftcourse has no side effects on import). threads:
    default $FTCOURSE_THREADS or 2; 0 leaves torch's setting alone.
    """
    seed = require_int("seed", seed, low=0, hint="e.g. seed_everything(0)")
    if threads is not None:
        threads = require_int("threads", threads, low=0, expected="an int >= 1", hint="0 leaves torch's setting alone")
    threads = default_threads() if threads is None else threads
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
    from_env = device is None and "FTCOURSE_DEVICE" in os.environ
    name = device if device is not None else os.environ.get("FTCOURSE_DEVICE", "cpu")
    where = f"FTCOURSE_DEVICE={name!r}" if from_env else f"device {name!r}"
    fix = "unset FTCOURSE_DEVICE (or set it to 'cpu')" if from_env else "pass 'cpu' (or None)"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{where} is not a device; valid choices: 'cpu', 'cuda', 'cuda:0', 'mps' "
                         "or a torch.device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{where} requested but torch.cuda.is_available() is False: {fix}, "
                           "or install a CUDA build of torch on a machine with a GPU")
    return dev
