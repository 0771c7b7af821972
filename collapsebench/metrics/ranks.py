"""Rank and capacity metrics of one layer's weight or activation matrix (SPEC, "Rank and capacity metrics").

Every function takes a plain tensor: a weight matrix ``out x rest`` or an activation matrix
``n x d`` (see :mod:`collapsebench.taps`), so nothing here knows about models or Avalanche.
Singular values are computed in float64: the smallest of them decide ``srank`` and
``feature_rank``, and float32 SVD noise is of the order of the thresholds those use.
"""

from __future__ import annotations

import torch

__all__ = [
    "singular_values",
    "erank",
    "spectrum_erank",
    "stable_rank",
    "srank",
    "approx_rank",
    "feature_rank",
    "dead_units",
    "dormant_units",
    "weight_magnitude",
    "feature_norm",
    "spectrum_stable_rank",
    "spectrum_srank",
    "spectrum_approx_rank",
    "spectrum_feature_rank",
]


def _as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """A 2-D view: a vector is one row, a conv kernel ``C_out x ...`` becomes ``C_out x rest``."""
    if tensor.dim() == 1:
        return tensor.unsqueeze(0)
    if tensor.dim() > 2:
        return tensor.reshape(tensor.shape[0], -1)
    return tensor


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """σ₁ ≥ σ₂ ≥ … of ``matrix`` (``torch.linalg.svdvals``) in float64, detached.

    Tensors of more than two dimensions are reshaped to ``shape[0] x rest`` first (SPEC's weight
    convention).
    """
    return torch.linalg.svdvals(_as_matrix(matrix.detach()).to(torch.float64))


def erank(matrix: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli): p_k = σ_k / Σσ; erank = exp(−Σ p_k log p_k), p_k = 0 terms dropped.

    1 for a rank-one matrix, d for d equal singular values; invariant to scaling the matrix.
    The all-zero (or empty) matrix has no spectrum to spread: its erank is defined as 0.

    Returns a 0-dim tensor of ``matrix``'s floating dtype and is differentiable through
    ``svdvals`` (the ER+L2 regularizer ascends on it): the p log p terms at p = 0 and the
    zero-matrix case are masked so that gradients stay finite. Use ``float(erank(m))`` for a number.
    """
    matrix = _as_matrix(matrix)
    out_dtype = matrix.dtype if matrix.dtype.is_floating_point else torch.float64
    if matrix.numel() == 0:
        return torch.zeros((), dtype=out_dtype, device=matrix.device)
    return spectrum_erank(torch.linalg.svdvals(matrix.to(torch.float64))).to(out_dtype)


def spectrum_erank(magnitudes: torch.Tensor) -> torch.Tensor:
    """erank of a spectrum given as non-negative values (σ's, or |λ|'s of a Hessian); 0 when all are 0.

    Differentiable, with the p log p terms at p = 0 masked so that gradients stay finite.
    """
    total = magnitudes.sum()
    # A zero total would make every p a 0/0; dividing by 1 instead keeps the graph finite.
    nonzero_total = total > 0
    p = magnitudes / torch.where(nonzero_total, total, torch.ones_like(total))
    positive = p > 0
    # log(1) = 0 for masked entries so neither the value nor its gradient sees log(0).
    p_log_p = torch.where(positive, p * torch.log(torch.where(positive, p, torch.ones_like(p))), torch.zeros_like(p))
    return torch.where(nonzero_total, torch.exp(-p_log_p.sum()), torch.zeros_like(total))


def stable_rank(matrix: torch.Tensor) -> float:
    """Stable rank (classical): ‖M‖_F² / ‖M‖₂² = Σσ² / σ₁². 0 for the zero matrix.

    Not to be confused with :func:`srank`, which some codebases call "stable rank".
    """
    return spectrum_stable_rank(singular_values(matrix))


def spectrum_stable_rank(sigma: torch.Tensor) -> float:
    """:func:`stable_rank` from given singular values σ₁ ≥ σ₂ ≥ … (one SVD shared by several metrics)."""
    if sigma.numel() == 0 or sigma[0] == 0:
        return 0.0
    return float((sigma**2).sum() / sigma[0] ** 2)


def _least_k_reaching(cumulative_fraction: torch.Tensor, level: float) -> int:
    """The least k (1-based) with cumulative_fraction[k-1] ≥ level."""
    # A tiny slack so that exactly-reached levels are not missed by float64 rounding of the sum.
    reached = cumulative_fraction >= level - 1e-12
    return int(torch.nonzero(reached)[0, 0].item()) + 1


def srank(matrix: torch.Tensor, delta: float = 0.01) -> int:
    """srank (Kumar et al.): the least k with Σ_{i≤k} σ_i / Σσ ≥ 1 − δ (δ = 0.01). 0 for the zero matrix."""
    return spectrum_srank(singular_values(matrix), delta)


def spectrum_srank(sigma: torch.Tensor, delta: float = 0.01) -> int:
    """:func:`srank` from given singular values σ₁ ≥ σ₂ ≥ …."""
    total = sigma.sum()
    if sigma.numel() == 0 or total == 0:
        return 0
    return _least_k_reaching(torch.cumsum(sigma, 0) / total, 1.0 - delta)


def approx_rank(matrix: torch.Tensor, threshold: float = 0.99) -> int:
    """Approximate rank (Dohare et al.): the least k with Σ_{i≤k} σ_i² / Σσ² ≥ 0.99. 0 for the zero matrix."""
    return spectrum_approx_rank(singular_values(matrix), threshold)


def spectrum_approx_rank(sigma: torch.Tensor, threshold: float = 0.99) -> int:
    """:func:`approx_rank` from given singular values σ₁ ≥ σ₂ ≥ …."""
    energy = sigma**2
    total = energy.sum()
    if energy.numel() == 0 or total == 0:
        return 0
    return _least_k_reaching(torch.cumsum(energy, 0) / total, threshold)


def feature_rank(features: torch.Tensor, eps: float = 0.01) -> int:
    """Feature rank (Lyle et al.): #{ i : σ_i(Φ/√n) > ε }, ε = 0.01, on an ``n x d`` activation matrix Φ."""
    features = _as_matrix(features)
    n = features.shape[0]
    if n == 0:
        return 0
    return spectrum_feature_rank(singular_values(features), n, eps)


def spectrum_feature_rank(sigma: torch.Tensor, n: int, eps: float = 0.01) -> int:
    """:func:`feature_rank` from the singular values σ of the ``n x d`` activation matrix Φ (not of Φ/√n)."""
    if n == 0:
        return 0
    return int((sigma / n**0.5 > eps).sum().item())


def _unit_columns(activations: torch.Tensor) -> torch.Tensor:
    """``n x d`` activations; feature maps ``n x C x ...`` averaged over positions is the caller's job."""
    if activations.dim() != 2:
        raise ValueError(f"expected an n x d activation matrix, got shape {tuple(activations.shape)}")
    return activations.detach()


def dead_units(activations: torch.Tensor) -> float:
    """Fraction of units whose activation is exactly 0 on every probe input (ReLU family).

    ``activations`` is ``n x d``; a unit is a column.
    """
    columns = _unit_columns(activations)
    if columns.shape[1] == 0:
        return 0.0
    dead = (columns == 0).all(dim=0)
    return float(dead.to(torch.float64).mean())


def dormant_units(activations: torch.Tensor, tau: float = 0.025) -> float:
    """Fraction of τ-dormant units (Sokar et al.): s_i = E|h_i| / ((1/H) Σ_k E|h_k|), dormant when s_i ≤ τ.

    Expectations are over the probe inputs (rows of the ``n x d`` matrix), H = d. When every unit
    is silent (Σ_k E|h_k| = 0) all units count as dormant.
    """
    columns = _unit_columns(activations)
    if columns.shape[1] == 0:
        return 0.0
    mean_abs = columns.abs().to(torch.float64).mean(dim=0)
    layer_mean = mean_abs.mean()
    if layer_mean == 0:
        return 1.0
    score = mean_abs / layer_mean
    return float((score <= tau).to(torch.float64).mean())


def weight_magnitude(weight: torch.Tensor) -> float:
    """Mean |w| of a layer's weights (biases are not passed in)."""
    if weight.numel() == 0:
        return 0.0
    return float(weight.detach().abs().to(torch.float64).mean())


def feature_norm(activations: torch.Tensor) -> float:
    """Mean over probe inputs of ‖h(x)‖₂, the rows of an ``n x d`` activation matrix."""
    columns = _unit_columns(activations)
    if columns.shape[0] == 0:
        return 0.0
    return float(torch.linalg.vector_norm(columns.to(torch.float64), dim=1).mean())
