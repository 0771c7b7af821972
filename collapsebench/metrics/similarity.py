"""Representation similarity (SPEC, "Representation similarity")."""

from __future__ import annotations

import math

import torch

__all__ = ["linear_cka"]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al.) of ``n x d₁`` and ``n x d₂`` activations of the same n inputs.

    Each matrix is centred by column, then CKA = ‖YᵀX‖_F² / (‖XᵀX‖_F · ‖YᵀY‖_F). It is 1 for X
    against itself and invariant to orthogonal transforms and isotropic scaling of either side.
    Computed in float64. When either matrix is constant over the inputs (zero after centring)
    CKA is 0/0 and ``nan`` is returned.
    """
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(f"linear_cka expects two n x d matrices, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs the same inputs on both sides: {x.shape[0]} rows vs {y.shape[0]}")
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    # Same value either way (‖YᵀX‖_F² = ⟨XXᵀ, YYᵀ⟩); pick the cheaper of feature or sample space.
    if n * n * (d1 + d2) < n * (d1 * d2 + d1 * d1 + d2 * d2):
        gram_x, gram_y = x @ x.T, y @ y.T
        cross = (gram_x * gram_y).sum()
        norm_x, norm_y = torch.linalg.matrix_norm(gram_x), torch.linalg.matrix_norm(gram_y)
    else:
        cross = torch.linalg.matrix_norm(y.T @ x) ** 2
        norm_x, norm_y = torch.linalg.matrix_norm(x.T @ x), torch.linalg.matrix_norm(y.T @ y)
    denominator = float(norm_x * norm_y)
    if denominator == 0.0:
        return math.nan
    return float(cross) / denominator
