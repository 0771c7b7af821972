"""The Hessian spectrum of the training loss on a fixed probe batch (SPEC, "Hessian spectrum").

Everything here works with Hessian-vector products by double backward and never forms H.
The loss gradient is built once per call with ``create_graph=True`` and each product is one
more backward pass through it.

Every public function:

- puts the model in eval mode while it works (dropout off, batch norm on its running
  statistics, so that H is one fixed matrix) and restores each module's own mode afterwards;
- leaves every ``param.grad`` as it found it (products go through ``torch.autograd.grad``,
  which does not accumulate into ``.grad``, and the attributes are restored regardless);
- draws its random vectors from its own ``torch.Generator`` seeded by ``seed``, so that
  measuring never perturbs the global RNG a training run depends on;
- takes an optional ``params`` list (for example one layer's weights) to restrict H to
  that block; by default all trainable parameters.

``loss_fn(model(inputs), targets)`` must return a scalar, as a ``torch.nn`` criterion does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from collapsebench.metrics.ranks import spectrum_erank

__all__ = [
    "HessianDensity",
    "HessianEigenvalues",
    "HessianOperator",
    "HessianTrace",
    "hessian_density",
    "hessian_erank",
    "hessian_near_zero_mass",
    "hessian_operator",
    "hessian_top_eigenvalues",
    "hessian_trace",
    "smooth_density",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HessianEigenvalues:
    """The k eigenvalues of largest magnitude, in decreasing |λ|, and what finding them cost."""

    eigenvalues: list[float]
    #: ‖H y − θ y‖ for each Ritz pair (y of unit norm): |λ − θ| is at most this.
    residuals: list[float]
    hvp_count: int
    converged: bool


@dataclass(frozen=True)
class HessianTrace:
    """Hutchinson's estimate of tr(H), its standard error (sample std / √samples) and its cost."""

    estimate: float
    standard_error: float
    hvp_count: int


@dataclass(frozen=True)
class HessianDensity:
    """Spectral density from stochastic Lanczos quadrature: point masses ``weights`` at ``nodes``.

    The weights sum to 1. Σ w θ estimates tr(H)/N and Σ w θ² estimates ‖H‖_F²/N (N parameters).
    """

    nodes: list[float]
    weights: list[float]
    hvp_count: int


class HessianOperator:
    """v ↦ Hv over a flat parameter vector; built by :func:`hessian_operator`, valid inside its block."""

    def __init__(self, gradients: list[torch.Tensor], params: list[torch.Tensor]):
        self._params = params
        self._gradients = gradients
        self._shapes = [p.shape for p in params]
        self._sizes = [p.numel() for p in params]
        self.dim = sum(self._sizes)
        self.dtype = params[0].dtype
        self.device = params[0].device
        #: How many Hessian-vector products have been taken.
        self.count = 0

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        """Hv for a flat vector of ``dim`` entries."""
        self.count += 1
        pieces = torch.split(vector.to(self.dtype), self._sizes)
        # Gradients that do not depend on the parameters (a loss linear in them) contribute 0 to Hv.
        directional = sum(
            (g * v.view_as(g)).sum() for g, v in zip(self._gradients, pieces) if g is not None and g.requires_grad
        )
        if not isinstance(directional, torch.Tensor):
            return torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        products = torch.autograd.grad(directional, self._params, retain_graph=True, allow_unused=True)
        return torch.cat(
            [(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(products, self._params)]
        ).detach()


@contextlib.contextmanager
def hessian_operator(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    params: Sequence[torch.Tensor] | None = None,
) -> Iterator[HessianOperator]:
    """The Hessian of ``loss_fn(model(inputs), targets)`` w.r.t. ``params`` as an operator.

    Model modes and ``.grad`` attributes are restored when the block ends.
    """
    chosen = _chosen_params(model, params)
    modes = [(module, module.training) for module in model.modules()]
    saved_grads = [(p, p.grad) for p in model.parameters()]
    try:
        model.eval()
        with torch.enable_grad():
            loss = loss_fn(model(inputs), targets)
            if loss.dim() != 0:
                raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
            gradients = torch.autograd.grad(loss, chosen, create_graph=True, allow_unused=True)
            yield HessianOperator(list(gradients), chosen)
    finally:
        for module, training in modes:
            module.training = training
        for param, grad in saved_grads:
            param.grad = grad


def _chosen_params(model: nn.Module, params: Sequence[torch.Tensor] | None) -> list[torch.Tensor]:
    if params is None:
        chosen = [p for p in model.parameters() if p.requires_grad]
    else:
        chosen = list(params)
        frozen = [i for i, p in enumerate(chosen) if not p.requires_grad]
        if frozen:
            raise ValueError(f"params at positions {frozen} do not require grad: the Hessian w.r.t. them is undefined")
    if not chosen:
        raise ValueError("no trainable parameters to take the Hessian over")
    if len({p.dtype for p in chosen}) > 1 or len({p.device for p in chosen}) > 1:
        raise ValueError("all params must share one dtype and device")
    return chosen


class _Basis:
    """Orthonormal Lanczos vectors, stored in fixed-size chunks so memory grows with use."""

    CHUNK = 16

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device):
        self.dim, self.dtype, self.device = dim, dtype, device
        self._chunks: list[torch.Tensor] = []
        self.size = 0

    def append(self, vector: torch.Tensor) -> None:
        row = self.size % self.CHUNK
        if row == 0:
            self._chunks.append(torch.empty(self.CHUNK, self.dim, dtype=self.dtype, device=self.device))
        self._chunks[-1][row] = vector
        self.size += 1

    def orthogonalize(self, vector: torch.Tensor) -> torch.Tensor:
        """``vector`` minus its projection on the basis; done twice, which restores orthogonality
        to working precision (one classical Gram-Schmidt pass alone can lose it)."""
        for _ in range(2):
            for index, chunk in enumerate(self._chunks):
                rows = self.CHUNK if index < len(self._chunks) - 1 else self.size - index * self.CHUNK
                block = chunk[:rows]
                vector = vector - block.T @ (block @ vector)
        return vector


def _random_unit(generator: torch.Generator, operator: HessianOperator, rademacher: bool = False) -> torch.Tensor:
    if rademacher:
        vector = torch.randint(0, 2, (operator.dim,), generator=generator, dtype=torch.int8).to(operator.dtype) * 2 - 1
    else:
        vector = torch.randn(operator.dim, generator=generator, dtype=operator.dtype)
    vector = vector.to(operator.device)
    return vector / torch.linalg.vector_norm(vector)


def _breakdown_level(alphas: list[float], betas: list[float], dtype: torch.dtype) -> float:
    """A β this small means the Krylov space is (numerically) invariant."""
    scale = max([abs(a) for a in alphas] + [abs(b) for b in betas] + [1e-300])
    return 100 * torch.finfo(dtype).eps * scale


def _ritz(alphas: list[float], betas: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and eigenvectors of the tridiagonal T built from α's and the β's between them."""
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if len(alphas) > 1:
        off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        tridiagonal = tridiagonal + torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigh(tridiagonal)


def _lanczos(
    operator: HessianOperator,
    generator: torch.Generator,
    max_steps: int,
    stop: Callable[[list[float], list[float]], bool] | None = None,
    restart: bool = False,
) -> tuple[list[float], list[float]]:
    """Lanczos with full re-orthogonalization: α₁…α_j and β₁…β_j (β_j the last residual norm).

    Stops after ``max_steps`` steps, when ``stop(alphas, betas)`` says so, or at an invariant
    subspace. With ``restart`` an invariant subspace is left by a fresh random vector orthogonal
    to the basis (its β recorded as 0, so T stays block tridiagonal); otherwise the run ends there.
    """
    basis = _Basis(operator.dim, operator.dtype, operator.device)
    alphas: list[float] = []
    betas: list[float] = []
    current = _random_unit(generator, operator)
    previous: torch.Tensor | None = None
    max_steps = min(max_steps, operator.dim)
    while len(alphas) < max_steps:
        basis.append(current)
        product = operator.matvec(current)
        alpha = float(torch.dot(product, current))
        product = product - alpha * current
        if previous is not None and betas[-1] != 0.0:
            product = product - betas[-1] * previous
        product = basis.orthogonalize(product)
        beta = float(torch.linalg.vector_norm(product))
        alphas.append(alpha)
        invariant = beta <= _breakdown_level(alphas, betas, operator.dtype)
        betas.append(0.0 if invariant else beta)
        if len(alphas) >= max_steps or (stop is not None and stop(alphas, betas)):
            break
        if invariant:
            if not restart:
                break
            product = basis.orthogonalize(_random_unit(generator, operator))
            beta = float(torch.linalg.vector_norm(product))
            if beta == 0.0:
                break
        previous, current = current, product / beta
    return alphas, betas


def _top_by_magnitude(alphas: list[float], betas: list[float], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k Ritz values of largest |θ| and their residual bounds β_j·|s_j|, in decreasing |θ|."""
    values, vectors = _ritz(alphas, betas)
    order = torch.argsort(values.abs(), descending=True)[:k]
    residuals = betas[-1] * vectors[-1, order].abs()
    return values[order], residuals


def hessian_top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    params: Sequence[torch.Tensor] | None = None,
    max_iter: int | None = None,
    tol: float = 1e-3,
    seed: int = 0,
    guard: int = 2,
) -> HessianEigenvalues:
    """The k eigenvalues of H largest by magnitude: Lanczos with full re-orthogonalization.

    SPEC: Lanczos with full re-orthogonalization; the reference is PyHessian's power iteration
    with deflation (100 iterations, relative tolerance 1e-3). Here ``tol`` is relative too but
    bounds something stronger: Lanczos stops once every one of the k Ritz pairs has residual
    ‖H y − θ y‖ ≤ tol·|θ| (ARPACK's test), which bounds |λ − θ| ≤ tol·|θ| for some eigenvalue λ;
    the actual error is typically far smaller (of order residual²/gap).

    A residual test alone cannot see an eigenvalue the Krylov space has not picked up yet (one
    the random start vector barely touches), and would then return the next one in its place.
    So the ``guard`` Ritz pairs after the k-th must also have settled, to the looser 10·tol:
    by then a missed eigenvalue has had time to emerge. On a 136-parameter MLP this took
    misconvergence (relative error > 1e-3) from up to 3 in 100 seeds to none, for 10-30% more
    products; ``guard=0`` is the plain residual test (docs/metrics.md has the figures).

    ``max_iter`` caps the Hessian-vector products (default ``max(100, 10·k)``, and never more than
    the number of parameters); ``converged`` is False when the cap was reached first.
    Lanczos started from one vector finds one copy of a repeated eigenvalue before the others
    (rounding brings the rest in later), so exact multiplicities among the top k can be missed
    when the residual test passes early.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    max_iter = max_iter if max_iter is not None else max(100, 10 * k)
    generator = torch.Generator().manual_seed(seed)

    watched = k + max(guard, 0)
    tolerances = torch.full((watched,), 10 * tol, dtype=torch.float64)
    tolerances[:k] = tol

    def enough(alphas: list[float], betas: list[float]) -> bool:
        if len(alphas) < watched:
            return False
        values, residuals = _top_by_magnitude(alphas, betas, watched)
        scale = values.abs().clamp_min(float(values.abs().max()) * 1e-12)
        return bool((residuals <= tolerances * scale).all())

    with hessian_operator(model, loss_fn, inputs, targets, params) as operator:
        dim = operator.dim
        if k > dim:
            raise ValueError(f"k = {k} exceeds the number of parameters ({dim})")
        watched = min(watched, dim)
        tolerances = tolerances[:watched]
        alphas, betas = _lanczos(operator, generator, max_iter, stop=enough, restart=True)
        count = operator.count
    values, residuals = _top_by_magnitude(alphas, betas, k)
    converged = enough(alphas, betas) or len(alphas) == dim
    return HessianEigenvalues(
        eigenvalues=[float(v) for v in values],
        residuals=[float(r) for r in residuals],
        hvp_count=count,
        converged=converged,
    )


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    samples: int = 100,
    params: Sequence[torch.Tensor] | None = None,
    seed: int = 0,
) -> HessianTrace:
    """tr(H) by Hutchinson's estimator with Rademacher vectors z: the mean of zᵀHz over ``samples`` z's.

    The standard error is the sample standard deviation of zᵀHz over √samples (``nan`` for one sample).
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    generator = torch.Generator().manual_seed(seed)
    quadratic_forms = []
    with hessian_operator(model, loss_fn, inputs, targets, params) as operator:
        for _ in range(samples):
            # A unit Rademacher vector times √dim is the ±1 vector itself.
            z = _random_unit(generator, operator, rademacher=True) * math.sqrt(operator.dim)
            quadratic_forms.append(float(torch.dot(operator.matvec(z), z)))
        count = operator.count
    forms = torch.tensor(quadratic_forms, dtype=torch.float64)
    error = float(forms.std() / math.sqrt(samples)) if samples > 1 else math.nan
    return HessianTrace(estimate=float(forms.mean()), standard_error=error, hvp_count=count)


def hessian_density(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    steps: int = 50,
    vectors: int = 2,
    params: Sequence[torch.Tensor] | None = None,
    seed: int = 0,
) -> HessianDensity:
    """Spectral density by stochastic Lanczos quadrature.

    SPEC: m = ``steps`` Lanczos steps from each of n_v = ``vectors`` random unit vectors; nodes =
    Ritz values, weights = squared first components of the Ritz vectors, averaged over the
    vectors; weights sum to 1. A run that reaches an invariant subspace early contributes fewer
    (exact) nodes. Costs ``steps · vectors`` Hessian-vector products at most.
    """
    if steps < 1 or vectors < 1:
        raise ValueError(f"steps and vectors must be at least 1, got {steps} and {vectors}")
    generator = torch.Generator().manual_seed(seed)
    nodes: list[float] = []
    weights: list[float] = []
    with hessian_operator(model, loss_fn, inputs, targets, params) as operator:
        for _ in range(vectors):
            alphas, betas = _lanczos(operator, generator, steps)
            values, ritz_vectors = _ritz(alphas, betas)
            nodes.extend(float(v) for v in values)
            weights.extend(float(w) / vectors for w in ritz_vectors[0] ** 2)
        count = operator.count
    return HessianDensity(nodes=nodes, weights=weights, hvp_count=count)


def smooth_density(
    density: HessianDensity,
    sigma: float | None = None,
    points: int = 1000,
    grid: Sequence[float] | None = None,
) -> tuple[list[float], list[float]]:
    """(grid, values): the density's point masses convolved with a Gaussian of width ``sigma``, for plots.

    By default ``sigma`` is 1% of the spread of the nodes and the grid spans the nodes ± 3σ with
    ``points`` points; the smoothed curve integrates to 1 over such a grid.
    """
    nodes = torch.tensor(density.nodes, dtype=torch.float64)
    weights = torch.tensor(density.weights, dtype=torch.float64)
    spread = float(nodes.max() - nodes.min()) if nodes.numel() else 0.0
    if sigma is None:
        sigma = 0.01 * spread if spread > 0 else max(1e-3 * float(nodes.abs().max()), 1e-12)
    if grid is None:
        axis = torch.linspace(float(nodes.min()) - 3 * sigma, float(nodes.max()) + 3 * sigma, points, dtype=torch.float64)
    else:
        axis = torch.tensor(list(grid), dtype=torch.float64)
    gaussians = torch.exp(-0.5 * ((axis[:, None] - nodes[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return axis.tolist(), (gaussians @ weights).tolist()


def hessian_erank(eigenvalues: HessianEigenvalues | Sequence[float]) -> float:
    """erank of the magnitudes of the top-k eigenvalues: p_k = |λ_k| / Σ|λ|; exp(−Σ p log p)."""
    values = eigenvalues.eigenvalues if isinstance(eigenvalues, HessianEigenvalues) else list(eigenvalues)
    return float(spectrum_erank(torch.tensor(values, dtype=torch.float64).abs()))


def hessian_near_zero_mass(density: HessianDensity, lambda_max: float | None = None, rel: float = 1e-3) -> float:
    """The density's weight on |λ| ≤ rel · |λ_max|; the "sparse spectrum" of He et al. grows with it.

    ``lambda_max`` defaults to the largest |node| (the extreme Ritz values converge first, so this
    is close to the true |λ_max| for any reasonable number of steps).
    """
    nodes = torch.tensor(density.nodes, dtype=torch.float64)
    weights = torch.tensor(density.weights, dtype=torch.float64)
    if nodes.numel() == 0:
        return math.nan
    reference = abs(lambda_max) if lambda_max is not None else float(nodes.abs().max())
    return float(weights[nodes.abs() <= rel * reference].sum())
