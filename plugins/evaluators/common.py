"""What the layer evaluators share: the probe activations of the moment, single-threaded SVDs,
and running peaks for peak normalization."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from collapsebench.probe import moment_key
from collapsebench.taps import Tap


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


def probe_activations(context, strategy, phase: str, taps: list[Tap]) -> dict[str, torch.Tensor]:
    """Each tap's activations on the whole probe set now; one forward pass per moment, shared."""
    return context.probe.activations(strategy.model, taps, device=strategy.device, key=moment_key(strategy, phase))


class RunningPeaks:
    """The maximum of each series seen so far, for erank(t) / max over u ≤ t of erank(u) (Zhu & Jin)."""

    def __init__(self):
        self._peaks: dict[str, float] = {}

    def normalize(self, series: str, value: float) -> float:
        """Add ``value`` to ``series`` and return it over the series' running maximum (nan while that is 0)."""
        peak = max(self._peaks.get(series, -math.inf), value)
        self._peaks[series] = peak
        return value / peak if peak > 0 else math.nan

    def peak(self, series: str) -> float:
        return self._peaks[series]
