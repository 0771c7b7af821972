"""Tapped layers: the one way an architecture tells evaluators and strategies what to look at.

An architecture's model implements ``collapsebench_taps() -> list[Tap]``. Evaluators read the
weights and activations of those layers; plasticity strategies (continual backprop, ReDo,
ER+L2) act on their units. Because every architecture answers the same question the same
way, no evaluator or strategy needs a special case per architecture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch takes seconds to import; --help and listing must not pay for it
    import torch
    from torch import nn


@dataclass(frozen=True, eq=False)
class Tap:
    """One hidden layer as the evaluators and strategies see it.

    - ``module``'s forward output is the layer's activation (after its nonlinearity).
      ``n x d`` for dense layers; ``n x C x ...`` feature maps are averaged over positions.
      Recurrent layers point at a module whose output is the final hidden state.
    - ``weights`` are the layer's incoming weight tensors (biases left out). Each is reshaped
      to ``out x rest`` and, when there are several (a GRU gate's input and hidden weights),
      they are concatenated along ``rest``.
    - ``incoming`` is the ``Linear``/``Conv2d`` whose output units are this layer's units and
      ``outgoing`` the one that reads them, for strategies that re-initialize units.
      Either may be ``None`` where the layer has no such simple neighbour (recurrent gates).
    """

    name: str
    module: nn.Module
    weights: tuple[nn.Parameter, ...]
    incoming: nn.Module | None = None
    outgoing: nn.Module | None = None
    #: The number of units (features or channels) the activation has.
    width: int = field(default=0)

    def weight_matrix(self) -> torch.Tensor:
        """The layer's weights as one ``out x rest`` matrix, detached."""
        import torch

        parts = [w.detach().reshape(w.shape[0], -1) for w in self.weights]
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def taps_of(model: nn.Module) -> list[Tap]:
    """The model's tapped layers, or a clear error if it does not declare any."""
    from collapsebench.errors import CollapsebenchError

    declare = getattr(model, "collapsebench_taps", None)
    if declare is None:
        raise CollapsebenchError(
            f"Model {type(model).__name__} does not declare its tapped layers: "
            "an architecture's model must implement collapsebench_taps() -> list[Tap]."
        )
    taps = list(declare())
    names = [t.name for t in taps]
    if len(set(names)) != len(names):
        raise CollapsebenchError(f"Model {type(model).__name__} declares a tapped layer name twice: {names}")
    return taps


def activation_matrix(output: torch.Tensor) -> torch.Tensor:
    """``n x d`` from a layer output: feature maps averaged over their positions (SPEC)."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.dim() > 2:
        output = output.flatten(2).mean(dim=2)
    return output


@contextlib.contextmanager
def capture_activations(taps: Sequence[Tap], detach: bool = True) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record each tap's activation matrix for every forward pass inside the block.

    With ``detach=False`` the captured tensors stay in the autograd graph, for regularizers
    that differentiate through them.
    """
    captured: dict[str, list[torch.Tensor]] = {t.name: [] for t in taps}
    handles = []
    for tap in taps:

        def hook(_module, _inputs, output, name=tap.name):
            matrix = activation_matrix(output)
            captured[name].append(matrix.detach() if detach else matrix)

        handles.append(tap.module.register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
