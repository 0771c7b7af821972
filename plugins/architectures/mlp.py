"""A multilayer perceptron over flattened inputs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from collapsebench import Tap

from .initialization import init_hidden_layer

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}


class MLPFeatures(nn.Module):
    """Linear layers of the given widths, each followed by its own activation module.

    Each layer owns its activation module so that the module's output is that layer's
    activation, which is what a tap needs.
    """

    def __init__(self, in_features: int, widths: Sequence[int], activation: str):
        super().__init__()
        sizes = [in_features, *widths]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.activations = nn.ModuleList(ACTIVATIONS[activation]() for _ in widths)
        for linear in self.linears:
            init_hidden_layer(linear, activation)
        self.feature_dim = sizes[-1]

    def forward(self, x):
        x = x.flatten(1)
        for linear, activation in zip(self.linears, self.activations):
            x = activation(linear(x))
        return x

    def taps(self, head: nn.Linear | None) -> list[Tap]:
        readers = [*self.linears[1:], head]
        return [
            Tap(
                name=f"fc{i + 1}",
                module=activation,
                weights=(linear.weight,),
                incoming=linear,
                outgoing=reader,
                width=linear.out_features,
            )
            for i, (linear, activation, reader) in enumerate(zip(self.linears, self.activations, readers))
        ]
