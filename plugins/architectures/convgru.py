"""ConvGRU and Bi-ConvGRU: a GRU whose gates are convolutions, run over an image's strips.

The image is cut into ``frames`` horizontal strips (zero rows are added at the bottom when
the height does not divide evenly), which are the time steps, top to bottom. Each layer's
hidden state is a ``channels x strip height x width`` map; the next layer reads the
sequence of hidden states. The last layer's final hidden state feeds the head, either
flattened (the default: the head weighs every position) or averaged over its positions.
The bidirectional variant runs a second GRU bottom to top in each layer and concatenates
the two directions along channels (both the sequences the next layer reads and the final
states the head reads).

The gates follow ``torch.nn.GRU``, with convolutions in place of matrix products:
r = σ(W_ir∗x + W_hr∗h), z = σ(W_iz∗x + W_hz∗h), n = tanh(W_in∗x + r ⊙ (W_hn∗h)),
h' = (1 − z) ⊙ n + z ⊙ h (each convolution with its bias).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from collapsebench import Tap

from .initialization import init_hidden_layer


class ConvGRUCell(nn.Module):
    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        # The three gates' convolutions are stacked into one per input, as in torch.nn.GRU.
        self.input_gates = nn.Conv2d(in_channels, 3 * hidden_channels, kernel_size, padding="same")
        self.hidden_gates = nn.Conv2d(hidden_channels, 3 * hidden_channels, kernel_size, padding="same")
        # Gain sqrt(2) although the gates are sigmoid and tanh: it learned split-digits several
        # times faster than gain 1 or PyTorch's default (docs/architectures.md).
        init_hidden_layer(self.input_gates)
        init_hidden_layer(self.hidden_gates)

    def forward(self, x, h):
        x_reset, x_update, x_new = self.input_gates(x).chunk(3, dim=1)
        h_reset, h_update, h_new = self.hidden_gates(h).chunk(3, dim=1)
        reset = torch.sigmoid(x_reset + h_reset)
        update = torch.sigmoid(x_update + h_update)
        new = torch.tanh(x_new + reset * h_new)
        return (1 - update) * new + update * h


class ConvGRULayer(nn.Module):
    """One direction of one layer: the cell run over the frames."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int, reverse: bool = False):
        super().__init__()
        self.cell = ConvGRUCell(in_channels, hidden_channels, kernel_size)
        self.reverse = reverse
        # Its output is the final hidden state: the layer's tap.
        self.final_state = nn.Identity()

    def forward(self, frames: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        first = frames[0]
        h = first.new_zeros(first.shape[0], self.cell.hidden_channels, *first.shape[2:])
        states = []
        for x in reversed(frames) if self.reverse else frames:
            h = self.cell(x, h)
            states.append(h)
        if self.reverse:
            states.reverse()  # index t is frame t in both directions
        return states, self.final_state(h)

    def tap(self, name: str, reader: nn.Module | None) -> Tap:
        gates = self.cell
        return Tap(
            name,
            self.final_state,
            (gates.input_gates.weight, gates.hidden_gates.weight),
            # Each hidden unit is fed by three gates' channels of these convolutions, and by
            # itself through time: no single convolution produces it.
            incoming=None,
            outgoing=reader,
            width=gates.hidden_channels,
        )


class ConvGRUFeatures(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        channels: Sequence[int],
        frames: int,
        kernel_size: int,
        bidirectional: bool,
        readout: str = "flatten",
    ):
        super().__init__()
        in_channels, height, width = input_shape
        self.frames = frames
        self.padding_rows = -height % frames
        self.bidirectional = bidirectional
        self.readout = readout
        directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList()
        for hidden in channels:
            if bidirectional:
                layer = nn.ModuleDict(
                    {
                        "top_down": ConvGRULayer(in_channels, hidden, kernel_size),
                        "bottom_up": ConvGRULayer(in_channels, hidden, kernel_size, reverse=True),
                    }
                )
            else:
                layer = ConvGRULayer(in_channels, hidden, kernel_size)
            self.layers.append(layer)
            in_channels = directions * hidden
        positions = (height + self.padding_rows) // frames * width
        self.feature_dim = in_channels * (positions if readout == "flatten" else 1)

    def split_frames(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.padding_rows:
            x = F.pad(x, (0, 0, 0, self.padding_rows))
        return list(x.split(x.shape[2] // self.frames, dim=2))

    def forward(self, x):
        sequence = self.split_frames(x)
        for layer in self.layers:
            if self.bidirectional:
                down, down_final = layer["top_down"](sequence)
                up, up_final = layer["bottom_up"](sequence)
                sequence = [torch.cat(pair, dim=1) for pair in zip(down, up)]
                final = torch.cat((down_final, up_final), dim=1)
            else:
                sequence, final = layer(sequence)
        # Flattened, channel c owns the contiguous head columns c*k .. (c+1)*k - 1 (k positions).
        return final.flatten(1) if self.readout == "flatten" else final.mean(dim=(2, 3))

    def taps(self, head: nn.Linear | None) -> list[Tap]:
        if not self.bidirectional:
            readers = [None] * (len(self.layers) - 1) + [head]
            return [layer.tap(f"gru{i + 1}", reader) for i, (layer, reader) in enumerate(zip(self.layers, readers))]
        # The head reads the two directions' concatenation, so neither direction alone has
        # a reader whose inputs are exactly its units.
        return [
            layer[key].tap(f"gru{i + 1}.{direction}", None)
            for i, layer in enumerate(self.layers)
            for key, direction in (("top_down", "forward"), ("bottom_up", "backward"))
        ]
