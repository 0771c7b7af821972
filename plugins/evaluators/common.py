"""What the layer evaluators share: the probe activations of the moment, single-threaded SVDs,
and running peaks for peak normalization."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from collapsebench import Tap, moment_key


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block on one torch thread, then restore the thread count.

    On a CPU whose cores are busy (other processes, or torch's own pool), multi-threaded
    LAPACK takes up to a thousand times longer for the small SVDs evaluators do: a 256 x 64
    float32 ``svdvals`` took 0.38 s on two busy threads and 0.2 ms on one (docs/evaluators.md).
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """σ₁ ≥ σ₂ ≥ … of a 2-D ``matrix`` in float64, as square roots of the eigenvalues of its smaller Gram matrix.

    The same numbers as ``collapsebench.metrics.singular_values`` (``svdvals`` in float64) to
    about 1e-14·σ₁ for every σ above √(d·ε)·σ₁ ≈ 2e-7·σ₁ (d the smaller side, ε float64's
    epsilon); below that, where the Gram matrix's rounding noise lives, values are set to 0.
    No rank metric looks that far down (feature_rank's threshold is 0.01·√n, srank's 1% of Σσ):
    on Gaussian, ReLU and dead-unit matrices erank agrees to 1e-12 relative, on one whose σ's
    span ten decades to 1e-5, and the integer ranks exactly (tests/test_evaluators.py).
    It is two to five times faster for the shapes evaluators see (a 256 x 784 weight matrix:
    8 ms against 39 ms on one core), which keeps the default evaluators within 10% of training.
    """
    matrix = matrix.detach().to(torch.float64)
    if matrix.dim() != 2:
        raise ValueError(f"expected a matrix, got shape {tuple(matrix.shape)}")
    if matrix.shape[0] > matrix.shape[1]:
        matrix = matrix.T
    if matrix.numel() == 0:
        return matrix.new_zeros(0)
    eigenvalues = torch.linalg.eigvalsh(matrix @ matrix.T)
    # eigvalsh is accurate to about d·ε·λ_max; anything below is noise, and zeroing it keeps
    # exactly-zero singular values (dead units) at 0 instead of ~1e-8·σ₁.
    noise = eigenvalues.shape[0] * torch.finfo(torch.float64).eps * eigenvalues[-1].clamp_min(0)
    return torch.where(eigenvalues > noise, eigenvalues, torch.zeros_like(eigenvalues)).sqrt().flip(0)


def probe_activations(context, strategy, phase: str, taps: list[Tap]) -> dict[str, torch.Tensor]:
    """Each tap's activations on the whole probe set now; one forward pass per moment, shared."""
    return context.probe.activations(strategy.model, taps, device=strategy.device, key=moment_key(strategy, phase))


class RecordedPeaks:
    """Running maxima of one metric's recorded values per layer, for erank(t) / max over u ≤ t of
    erank(u) (Zhu & Jin).

    The maxima are read from the run's :class:`~collapsebench.evaluation.Recorder`, over every
    phase, not kept apart: a resumed run restores the records but rebuilds its evaluators, and
    the peaks must still cover the whole run. New records are read incrementally.
    """

    def __init__(self, recorder, name: str, kind: str):
        self.recorder = recorder
        self.name = name
        self.kind = kind
        self._peaks: dict[str, float] = {}
        self._read = 0

    def _catch_up(self) -> None:
        records = self.recorder.records
        for record in records[self._read :]:
            value = record["value"]
            if (record["name"], record["kind"]) == (self.name, self.kind) and value is not None and math.isfinite(value):
                self._peaks[record["layer"]] = max(self._peaks.get(record["layer"], -math.inf), value)
        self._read = len(records)

    def peak(self, layer: str, including: float | None = None) -> float:
        """The layer's largest recorded value (and ``including``, the value about to be recorded)."""
        self._catch_up()
        peak = self._peaks.get(layer, -math.inf)
        return peak if including is None else max(peak, including)

    def normalize(self, layer: str, value: float) -> float:
        """``value`` over the running maximum including it; nan while that maximum is 0."""
        peak = self.peak(layer, including=value)
        return value / peak if peak > 0 else math.nan


def end_of_experience_values(recorder, kind: str) -> dict[int, dict[str, dict[str, float]]]:
    """experience -> layer -> name -> value of the records of ``kind`` taken after training on each experience."""
    values: dict[int, dict[str, dict[str, float]]] = {}
    for record in recorder.records:
        if record["kind"] == kind and record["phase"] == "end":
            values.setdefault(record["experience"], {}).setdefault(record["layer"], {})[record["name"]] = record["value"]
    return values
