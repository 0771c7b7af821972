"""The Continual ImageNet network of Dohare et al. (2024).

Three convolutions (5x5x32, 3x3x64, 3x3x128), each followed by ReLU and 2x2 max-pooling,
then fully connected layers of 128 and 128 ReLU units and the head. On 32x32 inputs with
unpadded ("valid") convolutions the last feature map is 128 x 2 x 2, the 512 inputs of the
first fully connected layer, as in the paper.
"""

from __future__ import annotations

from torch import nn

from collapsebench import Tap

from .initialization import init_hidden_layer

CONVOLUTIONS = ((32, 5), (64, 3), (128, 3))  # (channels, kernel size)
HIDDEN_UNITS = (128, 128)


def feature_map_size(size: int, padding: str) -> int:
    """Height (or width) of the last feature map; below 1 means the input is too small."""
    for _, kernel in CONVOLUTIONS:
        if padding == "valid":
            size -= kernel - 1
        if size < 2:  # a 2x2 max-pool needs two rows
            return 0
        size //= 2
    return size


class ConvNetFeatures(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], padding: str):
        super().__init__()
        channels, height, width = input_shape
        self.convs = nn.ModuleList()
        self.conv_activations = nn.ModuleList()
        # The tapped conv activation is the pooled map: that is what the next layer reads and
        # what the reference implementation's continual backprop measures.
        self.pools = nn.ModuleList()
        for out_channels, kernel in CONVOLUTIONS:
            self.convs.append(nn.Conv2d(channels, out_channels, kernel, padding=padding))
            self.conv_activations.append(nn.ReLU())
            self.pools.append(nn.MaxPool2d(2))
            channels = out_channels
        flat = channels * feature_map_size(height, padding) * feature_map_size(width, padding)
        sizes = [flat, *HIDDEN_UNITS]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.linear_activations = nn.ModuleList(nn.ReLU() for _ in HIDDEN_UNITS)
        self.feature_dim = HIDDEN_UNITS[-1]
        for layer in (*self.convs, *self.linears):
            init_hidden_layer(layer)

    def forward(self, x):
        for conv, activation, pool in zip(self.convs, self.conv_activations, self.pools):
            x = pool(activation(conv(x)))
        x = x.flatten(1)
        for linear, activation in zip(self.linears, self.linear_activations):
            x = activation(linear(x))
        return x

    def taps(self, head: nn.Linear | None) -> list[Tap]:
        # conv3's reader is fc1, which sees the flattened C x H x W map: channel c owns the
        # contiguous columns c*k .. (c+1)*k - 1 of fc1's weight, k = in_features / 128.
        layers = [
            (f"conv{i + 1}", conv, pool) for i, (conv, pool) in enumerate(zip(self.convs, self.pools))
        ] + [(f"fc{i + 1}", linear, act) for i, (linear, act) in enumerate(zip(self.linears, self.linear_activations))]
        readers = [layer for _, layer, _ in layers[1:]] + [head]
        return [
            Tap(
                name=name,
                module=output,
                weights=(layer.weight,),
                incoming=layer,
                outgoing=reader,
                width=layer.weight.shape[0],
            )
            for (name, layer, output), reader in zip(layers, readers)
        ]
