"""Architectures: every registered one is built, run, tapped and reset the same way.

The generic tests are parametrized over the registry, so an architecture a plugin adds is
tested here without new test code. The tests after them check the built-in ones against
closed forms and independent constructions.
"""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
from torch import nn

from collapsebench.errors import CollapsebenchError
from collapsebench.manager import build_manager
from collapsebench.registry import Registry
from collapsebench.taps import capture_activations, taps_of
from collapsebench_plugins.architectures import collapsebench_architectures, parameter_count

ARCHITECTURES = {entry.record.name: entry.record for entry in Registry(build_manager()).entries("architecture")}
BUILTIN = {record.name: record for record in collapsebench_architectures()}
# split-digits, MNIST, CIFAR / ImageNet32, with the class counts of their streams
SHAPES = [((1, 8, 8), 10), ((1, 28, 28), 10), ((3, 32, 32), 100)]


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: with several threads on a busy machine, small convolutions
    spend far longer waiting for each other than computing (10 s against 0.6 s measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name, shape=(1, 8, 8), n_classes=10, multihead=False, **options):
    torch.manual_seed(0)
    return ARCHITECTURES[name].factory(shape, n_classes, multihead, **options)


def run(model, x, multihead: bool, task_labels=None):
    if not multihead:
        return model(x)
    return model(x, torch.zeros(len(x), dtype=torch.long) if task_labels is None else task_labels)


def adapt_to_task(model, task_label: int, classes: list[int]) -> None:
    """What Avalanche does before training on an experience with a new task label."""
    from avalanche.models.dynamic_modules import avalanche_model_adaptation

    experience = types.SimpleNamespace(classes_in_this_experience=classes, task_labels=[task_label])
    avalanche_model_adaptation(model, experience)


def test_builtins_are_registered():
    assert set(BUILTIN) == {"mlp", "convgru", "biconvgru", "resnet18", "convnet"}
    assert set(BUILTIN) <= set(ARCHITECTURES)


def test_listing_architectures_does_not_import_torch():
    code = (
        "import sys, collapsebench_plugins.architectures as a; a.collapsebench_architectures(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- generic: every registered architecture ------------------------------------------


@pytest.mark.parametrize("multihead", [False, True], ids=["single", "multi"])
@pytest.mark.parametrize("shape,n_classes", SHAPES, ids=["8x8", "28x28", "32x32"])
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_backward(name, shape, n_classes, multihead):
    from avalanche.models import MultiTaskModule

    model = build(name, shape, n_classes, multihead)
    assert isinstance(model, MultiTaskModule) == multihead
    x = torch.randn(3, *shape)
    if multihead:
        adapt_to_task(model, 0, [0, 1])
        adapt_to_task(model, 1, [2, 3])
        out = run(model, x, multihead, task_labels=torch.tensor([0, 1, 0]))
    else:
        out = run(model, x, multihead)
    assert out.shape == (3, n_classes)
    out[:, :4].sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
    for tap in taps_of(model):
        assert any(w.grad.abs().sum() > 0 for w in tap.weights), f"no gradient reaches {tap.name}"


@pytest.mark.parametrize("shape,n_classes", SHAPES[:2], ids=["8x8", "28x28"])
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_taps_are_declared_in_forward_order_with_their_widths(name, shape, n_classes):
    model = build(name, shape, n_classes)
    taps = taps_of(model)
    assert taps, "an architecture must tap at least one layer"
    fired = []
    handles = [t.module.register_forward_hook(lambda *_, n=t.name: fired.append(n)) for t in taps]
    with capture_activations(taps) as captured:
        model(torch.randn(5, *shape))
    for handle in handles:
        handle.remove()
    assert fired == [t.name for t in taps]
    for tap in taps:
        assert captured[tap.name][0].shape == (5, tap.width), tap.name
        assert all(isinstance(w, nn.Parameter) for w in tap.weights)
        assert tap.weight_matrix().dim() == 2
        if tap.incoming is not None:
            assert tap.incoming.weight.shape[0] == tap.width and tap.incoming.weight in tap.weights
        if isinstance(tap.outgoing, nn.Conv2d):
            assert tap.outgoing.in_channels == tap.width
        elif isinstance(tap.outgoing, nn.Linear):
            assert tap.outgoing.in_features % tap.width == 0


def outgoing_columns(tap, unit: int) -> tuple[slice, ...]:
    """Where ``outgoing``'s weight reads ``unit``: an input channel, or the contiguous columns
    a flattened C x H x W map gives one channel."""
    if isinstance(tap.outgoing, nn.Conv2d):
        return (slice(None), slice(unit, unit + 1))
    per_unit = tap.outgoing.in_features // tap.width
    return (slice(None), slice(unit * per_unit, (unit + 1) * per_unit))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_incoming_and_outgoing_are_the_units_neighbours(name):
    """What continual backprop and ReDo rely on: re-drawing a unit's incoming weights
    changes that unit alone, and with its outgoing weights zeroed the output not at all."""
    model = build(name).eval()
    x = torch.randn(6, 1, 8, 8)
    moved = []
    for tap in taps_of(model):
        if tap.incoming is None:
            continue
        unit = tap.width // 2
        with torch.no_grad():
            if tap.outgoing is not None:
                tap.outgoing.weight[outgoing_columns(tap, unit)] = 0
            with capture_activations([tap]) as before:
                output_before = model(x)
            tap.incoming.weight[unit] += 3 * torch.randn_like(tap.incoming.weight[unit])
            with capture_activations([tap]) as after:
                output_after = model(x)
        changed = ((after[tap.name][0] - before[tap.name][0]).abs().sum(dim=0) > 0).nonzero().flatten().tolist()
        assert changed in ([unit], []), f"{tap.name}: re-drawing unit {unit} moved units {changed}"
        moved += [tap.name] if changed else []
        if tap.outgoing is not None:
            torch.testing.assert_close(output_after, output_before, msg=f"{tap.name}'s unit leaks past outgoing")
    if any(tap.incoming is not None for tap in taps_of(model)):  # recurrent taps have none
        assert moved, "no tapped unit responded to its incoming weights"


@pytest.mark.parametrize("multihead", [False, True], ids=["single", "multi"])
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_reset_head_leaves_the_tapped_layers_alone(name, multihead):
    model = build(name, multihead=multihead)
    if multihead:
        adapt_to_task(model, 0, [0, 1])
        adapt_to_task(model, 1, [2, 3])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.collapsebench_reset_head()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "collapsebench_reset_head() changed nothing"
    tapped = {id(w) for tap in taps_of(model) for w in tap.weights}
    assert not any(id(p) in tapped for n, p in model.named_parameters() if n in changed)
    head = getattr(model, "head", None)  # the built-ins' convention (plugins/architectures/heads.py)
    if name in BUILTIN:
        head_names = {f"head.{n}" for n, _ in head.named_parameters()}
        weights = {n for n in head_names if n.endswith("weight")}
        assert weights <= changed <= head_names
        assert len(weights) == (2 if multihead else 1)


# --- multi-head specifics ------------------------------------------------------------


def test_multihead_uses_one_head_per_task_and_masks_unseen_classes():
    model = build("mlp", multihead=True)
    adapt_to_task(model, 0, [0, 1])
    adapt_to_task(model, 1, [2, 3])
    assert len(model.head.classifiers) == 2
    x = torch.randn(4, 1, 8, 8)
    mixed = run(model, x, True, torch.tensor([0, 1, 0, 1]))
    features = model.features(x)
    for row, task in enumerate([0, 1, 0, 1]):
        expected = model.head.classifiers[str(task)](features[row : row + 1])[0]
        seen = [0, 1] if task == 0 else [2, 3]
        torch.testing.assert_close(mixed[row, seen], expected[seen])
        unseen = [c for c in range(10) if c not in seen]
        assert (mixed[row, unseen] == model.head.mask_value).all()
    # the last hidden layer has no single reader when every task has its own head
    assert taps_of(model)[-1].outgoing is None


def test_multihead_masks_every_class_of_a_task_without_a_head_yet():
    """Evaluators run probe inputs of later tasks before Avalanche has made their heads."""
    model = build("mlp", multihead=True)
    adapt_to_task(model, 0, [0, 1])
    out = run(model, torch.randn(3, 1, 8, 8), True, torch.tensor([0, 4, 4]))
    assert out.shape == (3, 10)
    assert (out[1:] == model.head.mask_value).all()
    assert (out[0, :2] != model.head.mask_value).all()


def test_single_head_last_tap_is_read_by_the_head():
    for name in ("mlp", "convnet", "convgru", "resnet18"):
        model = build(name)
        assert taps_of(model)[-1].outgoing is model.head, name


# --- parameter counts against independent constructions -----------------------------


def test_parameter_counts_match_closed_forms():
    # MLP 784-256-256-10
    assert parameter_count(build("mlp", (1, 28, 28), 10)) == (784 * 256 + 256) + (256 * 256 + 256) + (256 * 10 + 10)
    # Dohare et al.: conv 5x5x32, 3x3x64, 3x3x128 (valid), 128x2x2 = 512 -> 128 -> 128 -> head
    dohare = (3 * 32 * 25 + 32) + (32 * 64 * 9 + 64) + (64 * 128 * 9 + 128) + (512 * 128 + 128) + (128 * 128 + 128)
    assert parameter_count(build("convnet", (3, 32, 32), 2)) == dohare + 128 * 2 + 2
    # ConvGRU layer: input and hidden gate convolutions, three gates each, each with a bias
    def gru_layer(c_in, hidden, k=3):
        return 3 * hidden * (c_in + hidden) * k * k + 6 * hidden

    # flattened readout: the head weighs every position of the final 32 x 8 x 32 state
    assert parameter_count(build("convgru", (3, 32, 32), 100)) == (
        gru_layer(3, 32) + gru_layer(32, 32) + 32 * 8 * 32 * 100 + 100
    )
    assert parameter_count(build("convgru", (3, 32, 32), 100, readout="mean")) == (
        gru_layer(3, 32) + gru_layer(32, 32) + 32 * 100 + 100
    )
    bi = 2 * gru_layer(3, 32) + 2 * gru_layer(64, 32) + 64 * 100 + 100
    assert parameter_count(build("biconvgru", (3, 32, 32), 100, readout="mean")) == bi


def test_resnet18_full_width_matches_torchvision_cifar_variant():
    import torchvision

    reference = torchvision.models.resnet18(num_classes=100)
    reference.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)  # CIFAR stem
    reference.maxpool = nn.Identity()
    ours = build("resnet18", (3, 32, 32), 100, width_multiplier=1.0)
    assert parameter_count(ours) == parameter_count(reference) == 11_220_132
    # the multiplier scales every stage: a quarter width has about 1/16 of the convolution weights
    quarter = parameter_count(build("resnet18", (3, 32, 32), 100))
    assert 11_220_132 / 20 < quarter < 11_220_132 / 12


def test_resnet18_without_batch_norm_has_no_batch_norm():
    model = build("resnet18", batch_norm=False)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


# --- ConvGRU: the recurrence really carries information ------------------------------


def test_bidirectional_directions_run_top_down_and_bottom_up():
    """With the update gate shut (z = 0) and no hidden-to-hidden weights, each direction's
    final state is computed from the last strip it reads alone: the bottom strip top-down,
    the top strip bottom-up."""
    model = build("biconvgru", (1, 8, 8), 10, channels=[4], frames=4, kernel_size=1).eval()
    with torch.no_grad():
        for direction in model.features.layers[0].values():
            direction.cell.hidden_gates.weight.zero_()
            direction.cell.input_gates.bias[4:8] = -1e4  # chunks: reset, update, new
    taps = {t.name: t for t in taps_of(model)}
    x = torch.randn(2, 1, 8, 8)

    def finals(inputs):
        with torch.no_grad(), capture_activations(list(taps.values())) as captured:
            model(inputs)
        return {name: values[0] for name, values in captured.items()}

    base = finals(x)
    top, bottom = x.clone(), x.clone()
    top[:, :, :2] += 1.0
    bottom[:, :, 6:] += 1.0
    torch.testing.assert_close(finals(top)["gru1.forward"], base["gru1.forward"])
    assert not torch.allclose(finals(top)["gru1.backward"], base["gru1.backward"])
    torch.testing.assert_close(finals(bottom)["gru1.backward"], base["gru1.backward"])
    assert not torch.allclose(finals(bottom)["gru1.forward"], base["gru1.forward"])


def first_strip_task(n: int, generator: torch.Generator, patterns: torch.Tensor):
    """8x8 noise images whose label is set by a pattern in the top strip (rows 0-1) alone."""
    labels = torch.randint(len(patterns), (n,), generator=generator)
    images = torch.randn(n, 1, 8, 8, generator=generator)
    images[:, :, :2] = patterns[labels] + 0.5 * torch.randn(n, 1, 2, 8, generator=generator)
    return images, labels


@pytest.mark.parametrize("name", ["convgru", "biconvgru"])
def test_convgru_remembers_the_first_strip(name):
    """Read top to bottom, the informative strip is the first of four frames: the final
    state must carry it through three more updates. (A cell that forgets its state each
    frame stays at chance, 0.25, on this task.)"""
    torch.manual_seed(0)
    patterns = torch.randn(4, 1, 2, 8).sign()
    generator = torch.Generator().manual_seed(1)
    model = build(name, (1, 8, 8), 4, channels=[8], frames=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        images, labels = first_strip_task(64, generator, patterns)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    images, labels = first_strip_task(1000, generator, patterns)
    with torch.no_grad():
        accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert accuracy > 0.7


def test_convgru_pads_heights_that_frames_do_not_divide():
    model = build("convgru", (1, 28, 28), 10, frames=5)  # 28 rows -> 30, strips of 6
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.head.in_features == 32 * 6 * 28


@pytest.mark.parametrize("name", ["convgru", "biconvgru"])
def test_mean_readout_feeds_the_head_the_tapped_final_state(name):
    model = build(name, (1, 8, 8), 10, readout="mean")
    taps = taps_of(model)
    last = taps[-2:] if name == "biconvgru" else taps[-1:]
    features = []
    model.head.register_forward_hook(lambda _m, inputs, _o: features.append(inputs[0]))
    with capture_activations(last) as captured:
        model(torch.randn(4, 1, 8, 8))
    torch.testing.assert_close(features[0], torch.cat([captured[t.name][0] for t in last], dim=1))


# --- people's mistakes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name,shape,options,message",
    [
        ("convnet", (1, 4, 4), {}, "too small"),
        ("convnet", (1, 12, 12), {"padding": "valid"}, "too small"),
        ("convgru", (784,), {}, "needs images"),
        ("resnet18", (1, 28), {}, "needs images"),
        ("convgru", (1, 8, 8), {"frames": 9}, "between 1 and the image height"),
        ("convgru", (1, 8, 8), {"kernel_size": 2}, "odd"),
        ("mlp", (1, 8, 8), {"widths": []}, "non-empty list"),
        ("mlp", (1, 8, 8), {"activation": "swish"}, "expected one of"),
        ("convgru", (1, 8, 8), {"readout": "max"}, "expected one of"),
        ("mlp", (1, 8, 8), {"width": [3]}, "Did you mean 'widths'"),
        ("resnet18", (3, 32, 32), {"width_multiplier": 0}, "must be positive"),
    ],
)
def test_mistakes_get_clear_errors(name, shape, options, message):
    with pytest.raises(CollapsebenchError, match=message):
        BUILTIN[name].factory(shape, 10, False, **options)


def test_convnet_padding_auto_is_valid_on_large_inputs_and_same_on_small():
    large = build("convnet", (3, 32, 32), 2)
    small = build("convnet", (1, 8, 8), 2)
    assert large.features.convs[0].padding == "valid" and large.features.linears[0].in_features == 512
    assert small.features.convs[0].padding == "same" and small.features.linears[0].in_features == 128


def test_hidden_layers_follow_the_he_uniform_rule():
    """Weights U(-b, b), b = gain * sqrt(3 / fan_in), biases 0: continual backprop's
    replacement distribution (plugins/architectures/initialization.py)."""
    import math

    cases = [("mlp", {"activation": "relu"}, math.sqrt(2)), ("mlp", {"activation": "tanh"}, 5 / 3),
             ("convnet", {}, math.sqrt(2)), ("resnet18", {"batch_norm": False}, math.sqrt(2))]
    for name, options, gain in cases:
        for tap in taps_of(build(name, (1, 28, 28), 10, **options)):
            layer = tap.incoming
            if layer is None:
                continue
            weight = layer.weight.detach()
            fan_in = weight[0].numel()
            bound = gain * math.sqrt(3 / fan_in)
            assert weight.abs().max() <= bound + 1e-6, (name, tap.name)
            if weight.numel() > 20_000:  # the empirical spread is close enough to compare
                assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05), (name, tap.name)
            assert layer.bias is None or not layer.bias.detach().any(), (name, tap.name)
    gru = build("convgru", (1, 28, 28), 10).features.layers[1].cell.hidden_gates
    assert gru.weight.detach().std().item() == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.05)


# --- through the command line --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["class", "task"])
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_split_digits_run_through_the_cli(name, scenario, tmp_path):
    """One epoch per experience: about 0.3 to 2 s a run on one thread."""
    import json

    from collapsebench.cli import main

    out = tmp_path / "run"
    argv = ["run", "--model", name, "--scenario", scenario, "--epochs", "1", "--probe-size", "100", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "complete"
    expected = [{"name": t.name, "width": t.width} for t in taps_of(build(name, (1, 8, 8), 10, scenario == "task"))]
    assert result["taps"] == expected
    matrix = result["accuracy_matrix"]
    assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
    if scenario == "task":  # two classes per head: the diagonal is above chance (0.5)
        assert sum(matrix[i][i] for i in range(5)) / 5 > 0.6


def test_shapes_may_be_numpy_or_torch_integers():
    import numpy as np

    for shape in (np.array([1, 8, 8]), torch.Size([1, 8, 8])):
        model = BUILTIN["convnet"].factory(tuple(shape), np.int64(10), False)
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
