"""Built-in architectures, provided through the same hook a third-party collapsebench plugin uses.

Every factory takes ``(input_shape, n_classes, multihead, **options)`` and returns a model
with a head from :mod:`.heads` (one ``Linear``, or Avalanche's multi-head classifier), its
tapped layers (``collapsebench_taps()``) and a resettable head
(``collapsebench_reset_head()``). Options are checked here, before torch is imported; the
models live in sibling modules imported only when a model is built.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from collapsebench import Architecture, CollapsebenchError, Option, hookimpl

ACTIVATION_NAMES = ("relu", "tanh", "leaky_relu", "sigmoid", "gelu")
CONVNET_PADDINGS = ("auto", "valid", "same")
GRU_READOUTS = ("flatten", "mean")


def parameter_count(model) -> int:
    """The number of scalar parameters of ``model`` (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters())


# --- checks a person can act on ----------------------------------------------------------


def _check_classes(architecture: str, n_classes: int) -> None:
    if not isinstance(n_classes, int) or n_classes < 1:
        raise CollapsebenchError(
            f"Architecture {architecture!r} needs a positive number of classes, got {n_classes!r}."
        )


def _image_shape(architecture: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = _int_shape(input_shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise CollapsebenchError(
            f"Architecture {architecture!r} needs images (channels, height, width); "
            f"the stream declares inputs of shape {shape}. Use 'mlp' for other inputs."
        )
    return shape


def _int_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    # Streams may declare sizes as numpy or torch integers.
    try:
        return tuple(operator.index(s) for s in input_shape)
    except TypeError:
        raise CollapsebenchError(f"An input shape must be a sequence of integers, got {input_shape!r}.") from None


def _positive_ints(architecture: str, option: str, values: Sequence[int]) -> list[int]:
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise CollapsebenchError(
            f"Option {option!r} of {architecture!r} must be a non-empty list of positive integers, got {values!r}."
        )
    return values


# --- factories ---------------------------------------------------------------------------


def _build_mlp(input_shape, n_classes, multihead, *, widths, activation):
    _check_classes("mlp", n_classes)
    widths = _positive_ints("mlp", "widths", widths)
    in_features = math.prod(input_shape)
    if in_features < 1:
        raise CollapsebenchError(f"Architecture 'mlp' got an empty input shape {tuple(input_shape)}.")
    from .heads import attach_head
    from .mlp import MLPFeatures

    return attach_head(MLPFeatures(in_features, widths, activation), n_classes, multihead)


def _build_convnet(input_shape, n_classes, multihead, *, padding):
    _check_classes("convnet", n_classes)
    channels, height, width = _image_shape("convnet", input_shape)
    from .convnet import feature_map_size

    def fits(mode: str) -> bool:
        return feature_map_size(height, mode) >= 1 and feature_map_size(width, mode) >= 1

    if padding == "auto":
        # Dohare et al.'s unpadded convolutions where the image is large enough for them
        # (at least 18x18), "same" padding on smaller images such as the 8x8 digits.
        padding = "valid" if fits("valid") else "same"
    if not fits(padding):
        raise CollapsebenchError(
            f"Inputs of {height}x{width} are too small for 'convnet' with {padding!r} padding: "
            "three 2x2 max-pools need at least 18x18 unpadded or 8x8 with padding='same'."
        )
    from .convnet import ConvNetFeatures
    from .heads import attach_head

    return attach_head(ConvNetFeatures((channels, height, width), padding), n_classes, multihead)


def _build_resnet18(input_shape, n_classes, multihead, *, width_multiplier, batch_norm):
    _check_classes("resnet18", n_classes)
    channels, _, _ = _image_shape("resnet18", input_shape)
    if not width_multiplier > 0:
        raise CollapsebenchError(f"Option 'width_multiplier' of 'resnet18' must be positive, got {width_multiplier!r}.")
    from .heads import attach_head
    from .resnet import ResNet18Features

    return attach_head(ResNet18Features(channels, width_multiplier, batch_norm), n_classes, multihead)


def _gru_factory(architecture: str, bidirectional: bool):
    def build(input_shape, n_classes, multihead, *, channels, frames, kernel_size, readout):
        _check_classes(architecture, n_classes)
        shape = _image_shape(architecture, input_shape)
        channels = _positive_ints(architecture, "channels", channels)
        if not 1 <= frames <= shape[1]:
            raise CollapsebenchError(
                f"Option 'frames' of {architecture!r} must be between 1 and the image height {shape[1]}, got {frames}."
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise CollapsebenchError(
                f"Option 'kernel_size' of {architecture!r} must be a positive odd number, got {kernel_size}."
            )
        from .convgru import ConvGRUFeatures
        from .heads import attach_head

        features = ConvGRUFeatures(shape, channels, frames, kernel_size, bidirectional, readout)
        return attach_head(features, n_classes, multihead)

    build.__name__ = f"_build_{architecture}"
    return build


def _architecture(name: str, description: str, build, options: tuple[Option, ...]) -> Architecture:
    """A record whose factory fills in defaults and checks options itself, so that calling it
    directly (in a test, from another plugin) behaves exactly like a run."""

    def factory(input_shape, n_classes, multihead, **given):
        return build(_int_shape(input_shape), operator.index(n_classes), multihead, **record.resolve_options(given))

    factory.__name__ = factory.__qualname__ = build.__name__
    factory.__doc__ = f"Build a {name!r} model: factory(input_shape, n_classes, multihead, **options)."
    record = Architecture(name=name, description=description, factory=factory, options=options)
    return record


_GRU_OPTIONS = (
    Option("channels", [32, 32], "hidden channels of each stacked ConvGRU layer; each layer is a tapped layer"),
    Option("frames", 4, "number of horizontal strips the image is cut into, the time steps of the GRU"),
    Option("kernel_size", 3, "size of the gates' square convolution kernels (odd)"),
    Option(
        "readout",
        "flatten",
        "how the head reads the final hidden state: flatten (every position) or mean (averaged)",
        choices=GRU_READOUTS,
    ),
)


@hookimpl
def collapsebench_architectures():
    return [
        _architecture(
            "mlp",
            "multilayer perceptron on flattened inputs; every hidden layer is tapped",
            _build_mlp,
            (
                Option("widths", [256, 256], "units of each hidden layer, input side first"),
                Option("activation", "relu", "nonlinearity after every hidden layer", choices=ACTIVATION_NAMES),
            ),
        ),
        _architecture(
            "convgru",
            "GRU with convolutional gates run top to bottom over horizontal strips of the image",
            _gru_factory("convgru", bidirectional=False),
            _GRU_OPTIONS,
        ),
        _architecture(
            "biconvgru",
            "ConvGRU in both directions over the strips, the two final states concatenated",
            _gru_factory("biconvgru", bidirectional=True),
            _GRU_OPTIONS,
        ),
        _architecture(
            "resnet18",
            "ResNet-18, CIFAR variant (3x3 stem, no max-pool), width multiplier for CPU budgets",
            _build_resnet18,
            (
                Option("width_multiplier", 0.25, "scales the 64/128/256/512 stage channels; 1.0 is the standard"),
                Option("batch_norm", True, "BatchNorm after every convolution (running statistics kept across tasks)"),
            ),
        ),
        _architecture(
            "convnet",
            "Dohare et al.'s Continual ImageNet network: 3 conv+pool layers, fully connected 128, 128",
            _build_convnet,
            (
                Option(
                    "padding",
                    "auto",
                    "convolution padding: valid as published, same for small images, auto picks",
                    choices=CONVNET_PADDINGS,
                ),
            ),
        ),
    ]
