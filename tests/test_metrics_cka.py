"""Linear CKA: its defining invariances and an independent computation."""

import math

import pytest
import torch

from collapsebench.metrics import linear_cka


def features(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def hsic_cka(x, y):
    """CKA the other way round: HSIC with the centring matrix H = I − 11ᵀ/n on linear kernels."""
    n = x.shape[0]
    centring = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)
    kx, ky = centring @ x @ x.T @ centring, centring @ y @ y.T @ centring
    return float(torch.trace(kx @ ky) / torch.sqrt(torch.trace(kx @ kx) * torch.trace(ky @ ky)))


def test_cka_of_a_representation_with_itself_is_one():
    x = features(50, 7, 0)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_matches_the_hsic_form_in_both_computation_paths():
    # n > d takes the feature-space path, n < d the sample-space (Gram) path.
    for n, d1, d2 in ((60, 5, 8), (10, 40, 30)):
        x, y = features(n, d1, 1), features(n, d2, 2)
        y = y + 0.5 * x[:, :1]  # some shared signal, so CKA is not near 0
        assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-10)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x = features(80, 6, 3)
    y = torch.tanh(x @ features(6, 9, 4))
    q, _ = torch.linalg.qr(features(9, 9, 5))
    reference = linear_cka(x, y)
    assert linear_cka(x, y @ q) == pytest.approx(reference, rel=1e-10)
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(reference, rel=1e-10)
    # Column centring makes it blind to a constant shift as well.
    assert linear_cka(x + 5.0, y) == pytest.approx(reference, rel=1e-10)


def test_cka_is_not_invariant_to_anisotropic_scaling():
    x = features(80, 6, 6)
    y = torch.tanh(x @ features(6, 4, 7))
    stretched = x * torch.tensor([10.0, 1, 1, 1, 1, 1], dtype=torch.float64)
    assert abs(linear_cka(stretched, y) - linear_cka(x, y)) > 1e-3


def test_cka_of_independent_features_is_near_zero_when_n_is_much_larger_than_d():
    x, y = features(5000, 4, 8), features(5000, 4, 9)
    # E[CKA] ≈ d₁d₂/(n·√(d₁d₂)) scale for independent Gaussians: here about 1e-3.
    assert 0 <= linear_cka(x, y) < 0.01


def test_cka_accepts_float32_and_is_nan_for_constant_features():
    x = features(20, 3, 10).float()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(linear_cka(torch.ones(20, 3), x))


def test_cka_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(features(10, 3, 0), features(11, 3, 0))
