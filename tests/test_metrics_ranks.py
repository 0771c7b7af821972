"""Rank and capacity metrics against closed forms on matrices with chosen singular values."""

import math

import pytest
import torch

from collapsebench.metrics import (
    approx_rank,
    dead_units,
    dormant_units,
    erank,
    feature_norm,
    feature_rank,
    singular_values,
    srank,
    stable_rank,
    weight_magnitude,
)


def with_singular_values(sigma, rows=12, cols=9, seed=0):
    """U diag(σ) Vᵀ with random orthonormal U, V: a matrix whose spectrum we know exactly."""
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=generator, dtype=torch.float64))
    sigma = torch.tensor(sigma, dtype=torch.float64)
    k = sigma.numel()
    return u[:, :k] @ torch.diag(sigma) @ v[:, :k].T


def entropy_erank(sigma):
    p = [s / sum(sigma) for s in sigma if s > 0]
    return math.exp(-sum(q * math.log(q) for q in p))


def test_singular_values_recovers_the_chosen_spectrum():
    sigma = [5.0, 3.0, 2.0, 0.5]
    got = singular_values(with_singular_values(sigma))
    assert torch.allclose(got[:4], torch.tensor(sigma, dtype=torch.float64), atol=1e-10)
    assert torch.all(got[4:].abs() < 1e-10)


def test_singular_values_reshapes_conv_kernels_to_out_by_rest():
    kernel = torch.randn(8, 3, 3, 3)
    assert singular_values(kernel).shape == (8,)


def test_erank_of_identity_is_its_dimension():
    for d in (1, 4, 17):
        assert float(erank(torch.eye(d))) == pytest.approx(d, rel=1e-9)


def test_erank_of_rank_one_is_one():
    outer = torch.randn(10, 1) @ torch.randn(1, 7)
    assert float(erank(outer)) == pytest.approx(1.0, abs=1e-4)


def test_erank_matches_the_entropy_formula_and_ignores_scale():
    sigma = [4.0, 2.0, 1.0, 1.0, 0.25]
    matrix = with_singular_values(sigma)
    expected = entropy_erank(sigma)
    assert float(erank(matrix)) == pytest.approx(expected, rel=1e-9)
    assert float(erank(1e-3 * matrix)) == pytest.approx(expected, rel=1e-9)
    assert float(erank(1e3 * matrix)) == pytest.approx(expected, rel=1e-9)


def test_erank_of_the_zero_matrix_is_defined_as_zero():
    assert float(erank(torch.zeros(5, 3))) == 0.0
    assert float(erank(torch.zeros(0, 3))) == 0.0


def test_erank_keeps_the_input_dtype():
    assert erank(torch.eye(3, dtype=torch.float32)).dtype == torch.float32
    assert erank(torch.eye(3, dtype=torch.float64)).dtype == torch.float64


def test_erank_gradient_is_finite_including_rank_deficient_and_zero_inputs():
    rank_deficient = with_singular_values([3.0, 1.0]).requires_grad_()
    zero = torch.zeros(4, 4, dtype=torch.float64, requires_grad=True)
    generic = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    for matrix in (rank_deficient, zero, generic):
        erank(matrix).backward()
        assert torch.isfinite(matrix.grad).all()
    # Against finite differences, on a full-rank matrix (σ = 0 is a kink of the spectrum).
    matrix = with_singular_values([3.0, 1.0, 0.5], rows=3, cols=3).requires_grad_()
    value = erank(matrix)
    value.backward()
    step = 1e-6 * matrix.grad / matrix.grad.norm()
    increase = float(erank(matrix.detach() + step) - value.detach())
    assert increase == pytest.approx(float((matrix.grad * step).sum()), rel=1e-3)
    assert increase > 0


def test_stable_rank_is_frobenius_over_spectral_squared():
    sigma = [4.0, 2.0, 1.0]
    assert stable_rank(with_singular_values(sigma)) == pytest.approx((16 + 4 + 1) / 16, rel=1e-10)
    assert stable_rank(torch.eye(6)) == pytest.approx(6.0)
    assert stable_rank(torch.zeros(3, 3)) == 0.0


def test_srank_is_the_least_k_reaching_one_minus_delta_of_the_sum():
    # Cumulative fractions: 0.5, 0.8, 0.95, 0.99, 1.0
    sigma = [50.0, 30.0, 15.0, 4.0, 1.0]
    matrix = with_singular_values(sigma)
    assert srank(matrix) == 4  # δ = 0.01 -> need 0.99, reached exactly at k = 4
    assert srank(matrix, delta=0.05) == 3
    assert srank(matrix, delta=0.2) == 2
    assert srank(matrix, delta=0.0) == 5
    assert srank(torch.zeros(4, 4)) == 0


def test_approx_rank_uses_squared_singular_values():
    # Energies 0.81, 0.09, 0.0625, 0.0375 of a total of 1: cumulative 0.81, 0.90, 0.9625, 1.0.
    sigma = [0.9, 0.3, 0.25, math.sqrt(0.0375)]
    matrix = with_singular_values(sigma)
    assert approx_rank(matrix) == 4
    assert approx_rank(matrix, threshold=0.95) == 3
    assert approx_rank(matrix, threshold=0.9) == 2
    # The same spectrum by srank (plain σ) needs more components at matching levels.
    assert srank(matrix, delta=0.1) == 4
    assert approx_rank(torch.zeros(3, 2)) == 0


def test_feature_rank_counts_singular_values_of_phi_over_root_n_above_eps():
    n = 100
    # σ(Φ/√n) = σ(Φ)/10: choose σ(Φ) so that the scaled values are 1, 0.5, 0.02, 0.005.
    phi = with_singular_values([10.0, 5.0, 0.2, 0.05], rows=n, cols=6)
    assert feature_rank(phi) == 3
    assert feature_rank(phi, eps=0.1) == 2
    assert feature_rank(phi, eps=0.001) == 4
    assert feature_rank(torch.zeros(n, 6)) == 0


def test_dead_units_counts_units_zero_on_every_input():
    activations = torch.relu(torch.randn(50, 8)) + 0.1
    activations[:, [1, 5]] = 0.0
    activations[3, 2] = 0.0  # zero on one input only: alive
    assert dead_units(activations) == pytest.approx(2 / 8)
    assert dead_units(torch.ones(4, 3)) == 0.0


def test_dormant_units_uses_the_score_against_the_layer_mean():
    # E|h| per unit: 1, 1, 1, 0.1, 0.0 -> layer mean 0.62, scores 1.61, 1.61, 1.61, 0.161, 0.
    activations = torch.tensor([1.0, 1.0, 1.0, 0.1, 0.0]).repeat(20, 1)
    assert dormant_units(activations) == pytest.approx(1 / 5)  # only the silent unit: 0.161 > 0.025
    assert dormant_units(activations, tau=0.2) == pytest.approx(2 / 5)
    # Signs do not matter: the score uses |h|.
    assert dormant_units(-activations, tau=0.2) == pytest.approx(2 / 5)
    assert dormant_units(torch.zeros(5, 4)) == 1.0


def test_dormant_score_threshold_is_inclusive():
    # Means 1 and 0.025·(layer mean): with H = 2 units of means a and b, s_b = 2b/(a+b).
    # Pick b so that s_b = τ exactly: 2b/(1+b) = 0.025 -> b = 0.025/1.975.
    b = 0.025 / 1.975
    activations = torch.tensor([[1.0, b]], dtype=torch.float64)
    assert dormant_units(activations) == pytest.approx(0.5)


def test_weight_magnitude_and_feature_norm():
    weight = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    assert weight_magnitude(weight) == pytest.approx(2.5)
    activations = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert feature_norm(activations) == pytest.approx((5.0 + 1.0) / 2)


def test_unit_metrics_reject_feature_maps():
    with pytest.raises(ValueError, match="n x d"):
        dead_units(torch.zeros(2, 3, 4, 4))
