"""ftcourse.features: feature drift, linear CKA against a reference formula, representation change."""
import copy

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from ftcourse import feature_drift, linear_cka, representation_change


def test_feature_drift(model, batch):
    x = batch[0]
    model.train()
    mean_before = model.bn1.running_mean.clone()
    assert feature_drift(model, copy.deepcopy(model), x) == 0.0
    assert model.training and torch.equal(model.bn1.running_mean, mean_before)  # untouched
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.layer4[0].conv2.weight.mul_(1.1)
    assert feature_drift(model, other, x) > 0
    assert feature_drift(model, other, x, layer="layer3") == 0.0  # layer4 changed, layer3's output did not
    assert feature_drift(model, other, x, layer="layer4") > 0


def reference_cka(X, Y):
    """Kornblith et al. 2019, eq. via HSIC with linear kernels K = X X^T, L = Y Y^T."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def test_linear_cka_properties():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 8))
    Y = X @ rng.normal(size=(8, 6)) + 0.5 * rng.normal(size=(50, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X, X @ Q) == pytest.approx(1.0, abs=1e-10)  # orthogonal transform
    assert linear_cka(X, 3.7 * X) == pytest.approx(1.0, abs=1e-12)  # isotropic scaling
    assert linear_cka(X, Y) == pytest.approx(reference_cka(X, Y), rel=1e-9)
    assert linear_cka(X @ Q, 2 * Y) == pytest.approx(linear_cka(X, Y), rel=1e-9)
    assert linear_cka(torch.tensor(X), torch.tensor(Y)) == pytest.approx(linear_cka(X, Y))
    assert linear_cka(X, rng.normal(size=(50, 8))) < 0.5
    with pytest.raises(ValueError, match="same number of rows"):
        linear_cka(X, Y[:10])


def test_representation_change_is_zero_for_the_same_model_and_sees_a_changed_layer(model, batch):
    same = representation_change(model, copy.deepcopy(model), batch[0])
    assert same["relative"] == 0.0 and abs(same["1 - CKA"]) < 1e-9
    other = copy.deepcopy(model)
    torch.manual_seed(5)
    other.layer4[-1].conv2.reset_parameters()
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    changed = representation_change(model, other, x)
    assert changed["relative"] > 0.05 and changed["1 - CKA"] > 1e-3
    with pytest.raises(ValueError, match="shapes"):
        representation_change(model, resnet18(num_classes=5), x)
