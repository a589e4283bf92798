"""How far a body's features moved between two models: relative change, linear CKA, representation change."""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from .models import split_head

__all__ = ["feature_drift", "linear_cka", "representation_change"]


@torch.no_grad()
def _features(model: nn.Module, x: torch.Tensor, layer: str | None) -> torch.Tensor:
    """Penultimate features (or the output of `layer`), eval mode, on a copy: the model is untouched."""
    if layer is None:
        body, _ = split_head(model)
    else:
        body = copy.deepcopy(model)
    body.eval()
    x = x.to(next(body.parameters()).device)
    if layer is None:
        return body(x).flatten(1)
    out = []
    handle = body.get_submodule(layer).register_forward_hook(lambda m, i, o: out.append(o))
    try:
        body(x)
    finally:
        handle.remove()
    return out[0].flatten(1)


def feature_drift(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, layer: str | None = None) -> float:
    """How far the features moved from model_a to model_b: ||f_a - f_b|| / ||f_a|| on the batch x.

    Features are the penultimate ones (the body's output, head removed), or the output of the
    module named `layer`; both models are evaluated in eval mode on copies.
    """
    fa, fb = _features(model_a, x, layer), _features(model_b, x, layer)
    if fa.shape != fb.shape:
        raise ValueError(f"the two models give features of different shapes {tuple(fa.shape)} and {tuple(fb.shape)}")
    return float((fa - fb).norm() / fa.norm().clamp_min(1e-12))


def _matrix(a) -> torch.Tensor:
    """A tensor or array as a float64 CPU matrix: one row per example."""
    return torch.as_tensor(a if isinstance(a, torch.Tensor) else np.asarray(a)).detach().double().flatten(1).cpu()


def linear_cka(X, Y) -> float:
    """Linear CKA of two feature matrices (rows = examples; Kornblith et al. 2019); 1 = equal up to rotation/scale."""
    X, Y = _matrix(X), _matrix(Y)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y need the same number of rows (examples), got {X.shape[0]} and {Y.shape[0]}")
    X, Y = X - X.mean(0), Y - Y.mean(0)
    cross = (Y.T @ X).norm() ** 2
    denom = (X.T @ X).norm() * (Y.T @ Y).norm()
    return float(cross / denom) if denom > 0 else math.nan


def representation_change(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """How much the penultimate features changed from model_a to model_b on x: relative change and 1 - linear CKA.

    "relative" is ||f_b - f_a|| / ||f_a|| (sensitive to scale); "1 - CKA" ignores rotation and scale
    and asks whether the examples are arranged differently (0 = the same representation).
    """
    fa, fb = _features(model_a, x, None), _features(model_b, x, None)
    if fa.shape != fb.shape:
        raise ValueError(f"the two models give features of different shapes {tuple(fa.shape)} and {tuple(fb.shape)}")
    return {"relative": float((fa - fb).norm() / fa.norm().clamp_min(1e-12)), "1 - CKA": 1.0 - linear_cka(fa, fb)}
