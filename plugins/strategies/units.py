"""Re-initializing units of tapped layers: what continual backprop and ReDo share.

A unit is a feature of a dense layer or a channel of a convolutional one. Re-initializing it
touches three things, all reached through the model's tapped layers
(:func:`collapsebench.taps.taps_of`) and nothing else:

- its *incoming* weights: row ``i`` of the ``Linear``/``Conv2d`` producing the units (and its
  bias entry);
- its *outgoing* weights: what the next ``Linear``/``Conv2d`` reads from it. A ``Linear`` or a
  ``Conv2d`` reading the units directly gives column (input channel) ``i``. A ``Linear`` reading
  a flattened ``C x h x w`` feature map (the convnet's first dense layer, the ConvGRU's head)
  has ``C*h*w`` inputs; ``flatten`` is channel-major, so unit ``i`` owns the contiguous columns
  ``i*h*w .. (i+1)*h*w - 1``;
- the optimizer's state for those rows and columns.

The rule for layers where this does not apply: a tap whose ``incoming`` or ``outgoing`` is
``None`` (recurrent layers, ResNet block outputs that are a sum with the shortcut, the last
hidden layer of a multi-head model), whose reader's inputs are not a whole multiple of the
tap's width, or whose reader is a grouped convolution, is left alone, and
:func:`replaceable_units` says why.

Strategies re-initialize layers from the output side back: a unit's outgoing weights are
another layer's incoming rows, and a later layer's fresh rows must not overwrite the zeros
that keep an earlier layer's fresh units out of the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from collapsebench import Tap, taps_of

UNIT_LAYERS = (nn.Linear, nn.Conv2d)


@dataclass(eq=False)
class Units:
    """The units of one tapped layer, with the weights and optimizer state that belong to them."""

    tap: Tap
    incoming: nn.Linear | nn.Conv2d
    outgoing: nn.Linear | nn.Conv2d
    #: The incoming weights as they were when the strategy was built: fresh weights are
    #: drawn from them (see :meth:`fresh_incoming`).
    initial_weights: torch.Tensor

    @property
    def name(self) -> str:
        return self.tap.name

    @property
    def width(self) -> int:
        return self.incoming.weight.shape[0]

    def outgoing_by_unit(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` shaped like the outgoing weight, viewed as ``out x width x span``.

        ``span`` is 1 for a ``Linear`` reading the units, ``k*k`` for a ``Conv2d`` and ``h*w``
        for a ``Linear`` after a flattened feature map. A view: writing to it writes the tensor.
        """
        return tensor.view(tensor.shape[0], self.width, -1)

    def outgoing_magnitude(self) -> torch.Tensor:
        """Σ |w_out| over everything that reads each unit: one value per unit."""
        return self.outgoing_by_unit(self.outgoing.weight.detach()).abs().sum(dim=(0, 2))

    def outgoing_sums(self) -> torch.Tensor:
        """``out x width``: each unit's outgoing weights summed over its span.

        A unit held at a constant activation a feeds output ``k`` of the next layer exactly
        ``a * sums[k, unit]`` (for a convolution: away from the zero-padded border).
        """
        return self.outgoing_by_unit(self.outgoing.weight.detach()).sum(dim=2)

    def fresh_incoming(self, count: int) -> torch.Tensor:
        """``count`` new rows of incoming weights, from the layer's initial distribution.

        Each entry is drawn (with replacement) from the layer's own initial weights: for the
        i.i.d. initializations every architecture uses, that is the initial distribution
        itself, whatever rule (He uniform, PyTorch's default, a normal) produced it.
        """
        shape = (count, *self.incoming.weight.shape[1:])
        picks = torch.randint(self.initial_weights.numel(), shape, device=self.initial_weights.device)
        return self.initial_weights.flatten()[picks]

    @torch.no_grad()
    def reinitialize(self, units: torch.Tensor, optimizer=None) -> None:
        """Fresh incoming weights and zero bias for ``units``, zero outgoing weights, zero
        optimizer state for all of those: the network's output no longer depends on them."""
        if units.numel() == 0:
            return
        self.incoming.weight[units] = self.fresh_incoming(units.numel()).to(self.incoming.weight)
        if self.incoming.bias is not None:
            self.incoming.bias[units] = 0.0
        self.outgoing_by_unit(self.outgoing.weight)[:, units] = 0.0
        if optimizer is not None:
            self.reset_optimizer_state(optimizer, units)

    @torch.no_grad()
    def reset_optimizer_state(self, optimizer, units: torch.Tensor) -> None:
        """Zero every per-element optimizer buffer (SGD's momentum, Adam's moments, ...) of
        the units' incoming rows, bias entries and outgoing columns.

        Buffers are recognized as state tensors shaped like their parameter. Per-tensor
        counters (Adam's ``step``) are left alone: torch keeps one per tensor, so resetting
        it would restart bias correction for every other unit of the layer too.
        """
        for parameter in (self.incoming.weight, self.incoming.bias, self.outgoing.weight):
            if parameter is None:
                continue
            for buffer in optimizer.state.get(parameter, {}).values():
                if not (torch.is_tensor(buffer) and buffer.shape == parameter.shape):
                    continue
                if parameter is self.outgoing.weight:
                    self.outgoing_by_unit(buffer)[:, units] = 0.0
                else:
                    buffer[units] = 0.0


def why_not_replaceable(tap: Tap) -> str | None:
    """Why ``tap``'s units cannot be re-initialized one by one, or None if they can."""
    if tap.incoming is None:
        return "no single Linear/Conv2d produces its units (incoming is None)"
    if tap.outgoing is None:
        return "no single Linear/Conv2d reads its units (outgoing is None)"
    if not isinstance(tap.incoming, UNIT_LAYERS) or not isinstance(tap.outgoing, UNIT_LAYERS):
        return "its incoming and outgoing layers must be Linear or Conv2d"
    if isinstance(tap.incoming, nn.Conv2d) and tap.incoming.groups != 1:
        return "its incoming convolution is grouped"
    width = tap.incoming.weight.shape[0]
    if isinstance(tap.outgoing, nn.Conv2d):
        if tap.outgoing.groups != 1 or tap.outgoing.in_channels != width:
            return f"its reader is a convolution that does not read its {width} channels one to one"
    elif tap.outgoing.in_features % width != 0:
        return f"its reader has {tap.outgoing.in_features} inputs, not a whole multiple of its {width} units"
    return None


def replaceable_units(model: nn.Module) -> tuple[list[Units], dict[str, str]]:
    """The model's tapped layers whose units can be re-initialized, and why the others cannot.

    Call it on the freshly built model: the initial weights are recorded from it.
    """
    layers, skipped = [], {}
    for tap in taps_of(model):
        reason = why_not_replaceable(tap)
        if reason is not None:
            skipped[tap.name] = reason
            continue
        layers.append(Units(tap, tap.incoming, tap.outgoing, tap.incoming.weight.detach().clone()))
    return layers, skipped


def unit_mean(output) -> torch.Tensor:
    """Mean over the batch (and positions, for feature maps) of a layer output: one value per unit."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    return output.transpose(0, 1).reshape(output.shape[1], -1).mean(dim=1)


class OutputCapture:
    """Forward hooks on the taps' modules, installed for one training forward pass at a time,
    so that evaluation and probe passes never reach a strategy's statistics."""

    def __init__(self, taps: list[Tap], detach: bool = True):
        self.taps = taps
        self.detach = detach
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []

    def start(self) -> None:
        self.stop()
        self.outputs = {}
        for tap in self.taps:

            def hook(_module, _inputs, output, name=tap.name):
                if isinstance(output, (tuple, list)):
                    output = output[0]
                self.outputs[name] = output.detach() if self.detach else output

            self._handles.append(tap.module.register_forward_hook(hook))

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
