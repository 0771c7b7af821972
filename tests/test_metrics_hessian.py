"""Hessian spectrum estimators against the dense Hessian of small models (float64)."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from collapsebench.metrics import (
    HessianDensity,
    hessian_density,
    hessian_erank,
    hessian_near_zero_mass,
    hessian_operator,
    hessian_top_eigenvalues,
    hessian_trace,
    smooth_density,
)

LOSS = nn.CrossEntropyLoss()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Hundreds of tiny products: on a shared machine, thread hand-offs cost 50x the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(seed=0):
    """6-12-4 tanh MLP with dropout (136 parameters): dropout makes train mode random, which H must not be."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Dropout(0.5), nn.Linear(12, 4)).double()


def probe(seed=1, n=40):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=generator, dtype=torch.float64), torch.randint(0, 4, (n,), generator=generator)


def dense_hessian(model, loss_fn, x, y, names=None):
    """H by torch.autograd.functional.hessian over the flattened (chosen) parameters, in eval mode."""
    model.eval()
    named = {n: p.detach() for n, p in model.named_parameters()}
    names = names or list(named)
    shapes = [named[n].shape for n in names]

    def loss_of(flat):
        pieces = torch.split(flat, [math.prod(s) for s in shapes])
        params = dict(named) | {n: p.view(s) for n, p, s in zip(names, pieces, shapes)}
        return loss_fn(functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss_of, torch.cat([named[n].reshape(-1) for n in names]))


@pytest.fixture(scope="module")
def setting():
    model = small_model()
    x, y = probe()
    hessian = dense_hessian(model, LOSS, x, y)
    model.train()
    return model, x, y, hessian


def by_magnitude(values):
    return values[values.abs().argsort(descending=True)]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_eigenvalues_match_the_dense_spectrum(setting, k):
    model, x, y, hessian = setting
    expected = by_magnitude(torch.linalg.eigvalsh(hessian))[:k]
    result = hessian_top_eigenvalues(model, LOSS, x, y, k=k)
    got = torch.tensor(result.eigenvalues, dtype=torch.float64)
    assert result.converged
    assert torch.all((got - expected).abs() / expected.abs() < 1e-4)
    # The residual bounds the error, and Lanczos needs far fewer products than the dimension.
    assert torch.all((got - expected).abs() <= torch.tensor(result.residuals) + 1e-12)
    assert k <= result.hvp_count < hessian.shape[0] / 2


def test_top_eigenvalues_are_ordered_by_magnitude_including_negative_ones():
    # A saddle: H = diag(1, −3, 2) for f(a) = (a₀² − 3a₁² + 2a₂²)/2.
    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))

        def forward(self, _):
            return self.a

    def loss(a, _):
        return 0.5 * (a[0] ** 2 - 3 * a[1] ** 2 + 2 * a[2] ** 2)

    result = hessian_top_eigenvalues(Quadratic(), loss, torch.zeros(1), torch.zeros(1), k=3)
    assert result.eigenvalues == pytest.approx([-3.0, 2.0, 1.0], abs=1e-10)


def test_top_eigenvalues_of_a_low_rank_hessian_restart_past_the_invariant_subspace():
    # Least squares on 3 samples with 10 weights: H = (2/n)·XᵀX has rank 3, so k = 5 needs the zeros too.
    torch.manual_seed(3)
    model = nn.Linear(10, 1, bias=False).double()
    x = torch.randn(3, 10, dtype=torch.float64)
    y = torch.randn(3, 1, dtype=torch.float64)
    exact = by_magnitude(torch.linalg.eigvalsh(2 / 3 * x.T @ x))[:5]
    result = hessian_top_eigenvalues(model, nn.MSELoss(), x, y, k=5)
    assert result.converged
    assert result.eigenvalues == pytest.approx(exact.tolist(), abs=1e-9)


def test_max_iter_caps_the_products_and_reports_non_convergence(setting):
    model, x, y, _ = setting
    result = hessian_top_eigenvalues(model, LOSS, x, y, k=5, max_iter=6)
    assert result.hvp_count == 6
    assert not result.converged


def test_trace_is_within_three_standard_errors_of_the_exact_trace(setting):
    model, x, y, hessian = setting
    result = hessian_trace(model, LOSS, x, y, samples=100)
    assert result.hvp_count == 100
    assert result.standard_error > 0
    assert abs(result.estimate - float(hessian.trace())) < 3 * result.standard_error


def test_trace_standard_error_matches_the_rademacher_variance(setting):
    # Var(zᵀHz) = 2 Σ_{i≠j} H_ij² for Rademacher z: the reported SE must estimate √(that/samples).
    model, x, y, hessian = setting
    off_diagonal = hessian - torch.diag(torch.diag(hessian))
    expected = math.sqrt(2 * float((off_diagonal**2).sum()) / 400)
    result = hessian_trace(model, LOSS, x, y, samples=400, seed=5)
    assert result.standard_error == pytest.approx(expected, rel=0.2)


def test_density_with_as_many_steps_as_parameters_reproduces_the_spectrum(setting):
    # Lanczos from one vector sees each distinct eigenvalue once: the softmax's null directions
    # (13 zero eigenvalues here) give one node, so there are fewer nodes than parameters.
    model, x, y, hessian = setting
    density = hessian_density(model, LOSS, x, y, steps=hessian.shape[0], vectors=1)
    exact = torch.linalg.eigvalsh(hessian)
    nodes = torch.tensor(density.nodes, dtype=torch.float64)
    close = 1e-8 * float(exact.abs().max())
    distance = (nodes[:, None] - exact[None, :]).abs()
    assert torch.all(distance.min(dim=1).values < close)  # every node is an eigenvalue
    assert torch.all(distance.min(dim=0).values < close)  # every eigenvalue is a node
    assert len(density.nodes) < hessian.shape[0]
    assert sum(density.weights) == pytest.approx(1.0, abs=1e-12)


def test_density_weights_sum_to_one_and_its_moments_match_trace_and_frobenius(setting):
    model, x, y, hessian = setting
    dim = hessian.shape[0]
    vectors = 60
    density = hessian_density(model, LOSS, x, y, steps=8, vectors=vectors)
    nodes = torch.tensor(density.nodes, dtype=torch.float64)
    weights = torch.tensor(density.weights, dtype=torch.float64)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.all(weights >= 0)
    assert density.hvp_count == 8 * vectors
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert float(nodes.min()) >= float(eigenvalues.min()) - 1e-10
    assert float(nodes.max()) <= float(eigenvalues.max()) + 1e-10
    # With m ≥ 2 steps the quadrature is exact for vᵀHv and vᵀH²v of each unit vector v; for v
    # uniform on the sphere E[vᵀAv] = tr(A)/N and Var = 2(‖A‖_F² − tr(A)²/N) / (N(N+2)).
    for power, matrix in ((1, hessian), (2, hessian @ hessian)):
        moment = float((weights * nodes**power).sum())
        mean = float(matrix.trace()) / dim
        variance = 2 * (float((matrix**2).sum()) - float(matrix.trace()) ** 2 / dim) / (dim * (dim + 2))
        assert abs(moment - mean) < 4 * math.sqrt(variance / vectors)


def test_smoothed_density_integrates_to_one(setting):
    model, x, y, _ = setting
    density = hessian_density(model, LOSS, x, y, steps=10, vectors=2)
    grid, values = smooth_density(density, points=4000)
    grid, values = torch.tensor(grid), torch.tensor(values)
    assert float(torch.trapezoid(values, grid)) == pytest.approx(1.0, abs=1e-3)


def test_near_zero_mass_sums_the_weight_of_small_nodes():
    density = HessianDensity(nodes=[10.0, 0.005, -0.009, 0.5], weights=[0.1, 0.3, 0.2, 0.4], hvp_count=0)
    assert hessian_near_zero_mass(density) == pytest.approx(0.5)  # |λ| ≤ 1e-3·10
    assert hessian_near_zero_mass(density, lambda_max=100.0) == pytest.approx(0.5)
    assert hessian_near_zero_mass(density, lambda_max=1.0) == pytest.approx(0.0)
    assert hessian_near_zero_mass(density, rel=0.06) == pytest.approx(0.9)


def test_hessian_erank_is_the_erank_of_eigenvalue_magnitudes(setting):
    assert hessian_erank([2.0, -2.0, 2.0]) == pytest.approx(3.0)
    assert hessian_erank([5.0, 0.0]) == pytest.approx(1.0)
    p = [0.75, 0.25]
    assert hessian_erank([3.0, -1.0]) == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)))
    model, x, y, _ = setting
    result = hessian_top_eigenvalues(model, LOSS, x, y, k=3)
    assert hessian_erank(result) == pytest.approx(hessian_erank(result.eigenvalues))
    assert 1.0 <= hessian_erank(result) <= 3.0


def test_a_parameter_subset_gives_that_block_of_the_hessian(setting):
    model, x, y, _ = setting
    layer = model[3]
    block = dense_hessian(model, LOSS, x, y, names=["3.weight", "3.bias"])
    model.train()
    expected = by_magnitude(torch.linalg.eigvalsh(block))[:2]
    result = hessian_top_eigenvalues(model, LOSS, x, y, k=2, params=[layer.weight, layer.bias])
    assert result.eigenvalues == pytest.approx(expected.tolist(), rel=1e-4)
    trace = hessian_trace(model, LOSS, x, y, samples=50, params=[layer.weight, layer.bias])
    assert abs(trace.estimate - float(block.trace())) < 3 * trace.standard_error + 1e-12


def test_modes_grads_and_global_rng_are_left_as_found(setting):
    model, x, y, _ = setting
    model.train()
    model[2].eval()  # a submodule in its own mode must get that mode back, not the parent's
    sentinel = torch.full_like(model[0].weight, 7.0)
    model[0].weight.grad = sentinel
    model[3].weight.grad = None
    rng_before = torch.get_rng_state()
    hessian_top_eigenvalues(model, LOSS, x, y, k=2)
    hessian_trace(model, LOSS, x, y, samples=3)
    hessian_density(model, LOSS, x, y, steps=4, vectors=2)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert model.training and model[0].training and not model[2].training
    assert model[0].weight.grad is sentinel and torch.all(sentinel == 7.0)
    assert model[3].weight.grad is None and model[0].bias.grad is None
    model[0].weight.grad = None
    model.train()


def test_results_depend_on_the_seed_only(setting):
    model, x, y, _ = setting
    first = hessian_trace(model, LOSS, x, y, samples=5, seed=11)
    assert hessian_trace(model, LOSS, x, y, samples=5, seed=11) == first
    assert hessian_trace(model, LOSS, x, y, samples=5, seed=12).estimate != first.estimate


def test_works_inside_no_grad_and_the_operator_counts_products(setting):
    model, x, y, hessian = setting
    with torch.no_grad():
        result = hessian_top_eigenvalues(model, LOSS, x, y, k=1)
    assert result.eigenvalues[0] == pytest.approx(float(by_magnitude(torch.linalg.eigvalsh(hessian))[0]), rel=1e-4)
    vector = torch.randn(hessian.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with hessian_operator(model, LOSS, x, y) as operator:
        assert torch.allclose(operator.matvec(vector), hessian @ vector, atol=1e-12)
        assert operator.count == 1


def test_frozen_params_are_refused(setting):
    model, x, y, _ = setting
    frozen = nn.Parameter(torch.zeros(2, dtype=torch.float64), requires_grad=False)
    with pytest.raises(ValueError, match="do not require grad"):
        hessian_trace(model, LOSS, x, y, samples=2, params=[frozen])
