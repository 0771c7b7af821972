"""ResNet-18, CIFAR variant: a 3x3 stem without max-pool, four stages of two basic blocks.

Channels are 64, 128, 256, 512 times the width multiplier; stages 2-4 halve the resolution.
BatchNorm is the standard kind (running statistics, momentum 0.1) and is never reset between
experiences: see docs/architectures.md for what that does across tasks.
"""

from __future__ import annotations

from torch import nn

from collapsebench import Tap

from .initialization import init_hidden_layer

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


def stage_channels(width_multiplier: float) -> list[int]:
    return [max(1, round(c * width_multiplier)) for c in STAGE_CHANNELS]


def conv_norm(in_channels: int, out_channels: int, kernel: int, stride: int, batch_norm: bool) -> nn.Sequential:
    # Without BatchNorm the convolution needs its own bias; with it the bias would be redundant.
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)
    init_hidden_layer(conv)
    norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
    return nn.Sequential(conv, norm)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, batch_norm: bool):
        super().__init__()
        self.conv1 = conv_norm(in_channels, out_channels, 3, stride, batch_norm)
        self.relu1 = nn.ReLU()
        self.conv2 = conv_norm(out_channels, out_channels, 3, 1, batch_norm)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_norm(in_channels, out_channels, 1, stride, batch_norm)
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        hidden = self.relu1(self.conv1(x))
        return self.relu2(self.conv2(hidden) + self.shortcut(x))

    def taps(self, name: str, reader: nn.Module | None) -> list[Tap]:
        conv1, conv2 = self.conv1[0], self.conv2[0]
        output_weights = (conv2.weight,)
        if isinstance(self.shortcut, nn.Sequential):
            output_weights += (self.shortcut[0].weight,)
        return [
            Tap(f"{name}.conv1", self.relu1, (conv1.weight,), incoming=conv1, outgoing=conv2, width=conv1.out_channels),
            # The block output is a sum with the shortcut: no single convolution produces
            # its units, and the next block reads them through its shortcut as well.
            Tap(name, self.relu2, output_weights, incoming=None, outgoing=reader, width=conv2.out_channels),
        ]


class ResNet18Features(nn.Module):
    def __init__(self, in_channels: int, width_multiplier: float, batch_norm: bool):
        super().__init__()
        channels = stage_channels(width_multiplier)
        self.stem = conv_norm(in_channels, channels[0], 3, 1, batch_norm)
        self.stem_relu = nn.ReLU()
        self.stages = nn.ModuleList()
        previous = channels[0]
        for index, out_channels in enumerate(channels):
            # the first block of stages 2-4 halves the resolution and changes the width
            stride = 1 if index == 0 else 2
            blocks = [BasicBlock(previous, out_channels, stride, batch_norm)]
            blocks += [BasicBlock(out_channels, out_channels, 1, batch_norm) for _ in range(BLOCKS_PER_STAGE - 1)]
            self.stages.append(nn.Sequential(*blocks))
            previous = out_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels[-1]

    def forward(self, x):
        x = self.stem_relu(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return self.pool(x).flatten(1)

    def taps(self, head: nn.Linear | None) -> list[Tap]:
        stem_conv = self.stem[0]
        # The stem feeds the first block both through a convolution and through the identity
        # shortcut, so it has no single reader.
        taps = [Tap("stem", self.stem_relu, (stem_conv.weight,), incoming=stem_conv, width=stem_conv.out_channels)]
        blocks = [(f"layer{s + 1}.{b}", block) for s, stage in enumerate(self.stages) for b, block in enumerate(stage)]
        for index, (name, block) in enumerate(blocks):
            # Average pooling keeps channel c as feature c, so the head reads the last block
            # unit for unit.
            reader = head if index == len(blocks) - 1 else None
            taps.extend(block.taps(name, reader))
        return taps
