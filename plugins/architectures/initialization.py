"""The one initialization rule for hidden layers, shared by every built-in architecture.

Weights: He (Kaiming) uniform with fan-in, U(-b, b) with b = gain * sqrt(3 / fan_in), the gain
that of the layer's nonlinearity. Biases: zero. This is the distribution continual backprop
(Dohare et al.) draws replacement units from, so a re-initialized unit starts like a fresh one.
PyTorch's own default (b = 1 / sqrt(fan_in)) shrinks the signal at every layer: without
BatchNorm the Continual ImageNet network and the ConvGRU barely moved from chance on
split-digits with it (docs/architectures.md has the measurements). Heads keep PyTorch's
default, which is also what ``collapsebench_reset_head`` draws from.
"""

from __future__ import annotations

from torch import nn

# torch.nn.init.calculate_gain has no entry for GELU; it is close to ReLU for positive inputs.
GAIN_NAMES = {"relu": "relu", "gelu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid"}


def init_hidden_layer(layer: nn.Linear | nn.Conv2d, activation: str = "relu") -> None:
    # nn.LeakyReLU's default negative slope, which calculate_gain must be told
    slope = 0.01 if activation == "leaky_relu" else 0.0
    nn.init.kaiming_uniform_(layer.weight, a=slope, mode="fan_in", nonlinearity=GAIN_NAMES[activation])
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
