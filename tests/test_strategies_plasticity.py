"""Plasticity strategies (cbp, er_l2, l2, shrink_perturb, l2_init, redo): behaviour, checked
against closed forms and computations made independently here."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from collapsebench.errors import CollapsebenchError
from collapsebench.metrics import erank
from collapsebench_plugins.architectures import collapsebench_architectures
from collapsebench_plugins.strategies.cbp import ContinualBackprop
from collapsebench_plugins.strategies.er_l2 import EffectiveRankL2, mean_erank
from collapsebench_plugins.strategies.redo import ReDo
from collapsebench_plugins.strategies.regularizers import L2Init, ShrinkPerturb, WeightDecay
from collapsebench_plugins.strategies.units import replaceable_units
from conftest import QUICK

ARCHITECTURES = {a.name: a for a in collapsebench_architectures()}


def build(name="mlp", input_shape=(5,), n_classes=3, seed=0, **options):
    torch.manual_seed(seed)
    return ARCHITECTURES[name].factory(input_shape, n_classes, False, **options)


def mlp(widths=(8, 6), in_features=5, seed=0):
    return build("mlp", (in_features,), 3, seed, widths=list(widths))


def synthetic_stream(n_experiences=1, n=96, in_features=5, n_classes=3, seed=0):
    """Gaussian inputs labelled by a random linear map: learnable, and different per experience."""
    from collapsebench_plugins.streams.tensors import assemble, tensor_dataset

    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for _ in range(n_experiences):
        mapping = torch.randn(in_features, n_classes, generator=generator)
        for part in (train, test):
            x = torch.randn(n, in_features, generator=generator)
            part.append(tensor_dataset(x, (x @ mapping).argmax(dim=1)))
    return assemble(train, test, [set(range(n_classes))] * n_experiences)


def template(model, plugins, optimizer=None, epochs=1, batch_size=16):
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates import SupervisedTemplate

    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with warnings.catch_warnings():  # "no loggers": on purpose, nothing to log here
        warnings.simplefilter("ignore", UserWarning)
        evaluator = EvaluationPlugin(loggers=[])
    return SupervisedTemplate(
        model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), train_mb_size=batch_size,
        train_epochs=epochs, eval_mb_size=256, device="cpu", plugins=list(plugins),
        evaluator=evaluator,
    )


def train(model, plugins, stream, **kwargs):
    strategy = template(model, plugins, **kwargs)
    for experience in stream.train_stream:
        strategy.train(experience)
    return strategy


def hidden(model, x):
    """Each tapped layer's activation on ``x``, computed here by running the MLP by hand."""
    outputs, h = [], x
    for linear, activation in zip(model.features.linears, model.features.activations):
        h = activation(linear(h))
        outputs.append(h)
    return outputs


# --- continual backprop -----------------------------------------------------------------------


def set_statistics(plugin, name, age, utility, mean_activation=None):
    stats = plugin.statistics[name]
    stats.age = torch.tensor(age, dtype=torch.long)
    stats.utility = torch.tensor(utility, dtype=torch.float32)
    if mean_activation is not None:
        stats.mean_activation = torch.tensor(mean_activation, dtype=torch.float32)
    stats.due = 0.0


def test_cbp_replaces_exactly_the_k_mature_units_of_lowest_bias_corrected_utility():
    model = mlp()
    plugin = ContinualBackprop(model, replacement_rate=0.4, maturity_threshold=10, decay_rate=0.99)
    fc1, fc2 = model.features.linears
    # Units 5-7 are immature (age <= 10) with the lowest utility of all: never candidates.
    # Among the 5 mature ones, 0.4 * 5 = 2 are due. Raw utility would pick units 1 and 3;
    # bias correction (u / (1 - 0.99^age)) makes the young unit 3 worth more than unit 4.
    age = [500, 500, 500, 11, 500, 10, 3, 0]
    utility = [0.50, 0.10, 0.90, 0.05, 0.20, 0.0, 0.0, 0.0]
    set_statistics(plugin, "fc1", age, utility)
    set_statistics(plugin, "fc2", [0] * 6, [0.0] * 6)
    corrected = {i: utility[i] / (1 - 0.99 ** age[i]) for i in range(8) if age[i] > 10}
    expected = sorted(corrected, key=corrected.get)[:2]
    assert sorted(expected) == [1, 4]  # the test's premise: bias correction changes the choice

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    plugin.replace_due_units(torch.optim.SGD(model.parameters(), lr=0.1))

    replaced = sorted(plugin.last_replaced["fc1"].tolist())
    assert replaced == [1, 4]
    assert plugin.replaced_total == {"fc1": 2, "fc2": 0}
    kept = [i for i in range(8) if i not in replaced]
    assert torch.equal(fc1.weight[kept], before["features.linears.0.weight"][kept])
    assert torch.equal(fc2.weight[:, kept], before["features.linears.1.weight"][:, kept])
    assert torch.all(fc2.weight[:, replaced] == 0)
    assert torch.all(fc1.bias[replaced] == 0)
    assert not torch.equal(fc1.weight[replaced], before["features.linears.0.weight"][replaced])
    # fresh rows come from the initial distribution: within the initial weights' range
    bound = plugin.layers[0].initial_weights.abs().max()
    assert torch.all(fc1.weight[replaced].abs() <= bound)
    assert plugin.statistics["fc1"].age[replaced].tolist() == [0, 0]
    assert torch.equal(model.head.weight, before["head.weight"])


def test_cbp_carries_the_fractional_part_over_between_steps():
    model = mlp()
    plugin = ContinualBackprop(model, replacement_rate=0.1, maturity_threshold=10, decay_rate=0.99)
    set_statistics(plugin, "fc1", [100] * 5 + [0] * 3, [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0])
    set_statistics(plugin, "fc2", [0] * 6, [0.0] * 6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plugin.replace_due_units(optimizer)  # 0.1 * 5 = 0.5 due: nothing yet
    assert plugin.replaced_total["fc1"] == 0
    assert plugin.statistics["fc1"].due == pytest.approx(0.5)
    plugin.replace_due_units(optimizer)  # 0.5 + 0.5 = 1: the lowest-utility mature unit
    assert plugin.replaced_total["fc1"] == 1 and plugin.last_replaced["fc1"].tolist() == [4]
    assert plugin.statistics["fc1"].due == pytest.approx(0.0)


def test_cbp_replacement_changes_the_output_only_by_the_units_deviation_from_its_mean():
    """Zeroed outgoing weights plus the bias correction swap the unit's activation h_i(x) for its
    running mean f̂_i: the next layer's input changes by exactly w_out[:, i] (f̂_i - h_i(x)).

    Tolerance 1e-5 (float32). When f̂_i is the batch's mean activation, the batch-mean logits of
    a replacement in the last hidden layer are unchanged to that tolerance.
    """
    model = mlp(widths=(16, 12))
    # Realistic statistics from real training; rate 0 so that nothing is replaced meanwhile.
    plugin = ContinualBackprop(model, replacement_rate=0.0, maturity_threshold=0, decay_rate=0.9)
    train(model, [plugin], synthetic_stream())
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
    fc1_units, fc2_units = replaceable_units(model)[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    with torch.no_grad():
        h1, h2 = hidden(model, x)
        stats = plugin.statistics["fc1"]
        mean = stats.mean_activation / (1 - 0.9 ** stats.age.float())
        pre2 = model.features.linears[1](h1)
        expected = pre2 + (mean[3] - h1[:, 3:4]) * model.features.linears[1].weight[:, 3]
    plugin.replace(fc1_units, torch.tensor([3]), optimizer)
    with torch.no_grad():
        after = model.features.linears[1](model.features.activations[0](model.features.linears[0](x)))
    assert torch.allclose(after, expected, atol=1e-5)
    assert not torch.allclose(after, pre2, atol=1e-3)  # the replacement did change something

    # Last hidden layer, with f̂ set to this batch's mean: batch-mean logits unchanged.
    with torch.no_grad():
        h2 = hidden(model, x)[1]
        logits = model(x)
    stats = plugin.statistics["fc2"]
    stats.age[5] = 10**6  # bias correction factor 1
    stats.mean_activation[5] = h2[:, 5].mean()
    plugin.replace(fc2_units, torch.tensor([5]), optimizer)
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(after.mean(dim=0), logits.mean(dim=0), atol=1e-5)
    assert not torch.allclose(after, logits, atol=1e-3)


def test_cbp_fresh_units_of_consecutive_layers_replaced_together_keep_bias_zero():
    """Unit 2 of fc1 and unit 4 of fc2 in one step: fc2's fresh unit 4 ends with bias 0 (SPEC),
    fc2's other units absorb fc1's unit 2 through their old weights, and the head absorbs fc2's unit 4."""
    model = mlp()
    plugin = ContinualBackprop(model, replacement_rate=1.0, maturity_threshold=10, decay_rate=0.9)
    fc1, fc2 = model.features.linears
    age1, age2 = 50, 30
    set_statistics(plugin, "fc1", [age1 if i == 2 else 0 for i in range(8)], [0.1] * 8,
                   [0.7 if i == 2 else 0.0 for i in range(8)])
    set_statistics(plugin, "fc2", [age2 if i == 4 else 0 for i in range(6)], [0.1] * 6,
                   [0.3 if i == 4 else 0.0 for i in range(6)])
    with torch.no_grad():
        fc2.bias.fill_(0.25)
    old_fc2, old_head_bias = fc2.weight.detach().clone(), model.head.bias.detach().clone()
    old_head = model.head.weight.detach().clone()
    plugin.replace_due_units(torch.optim.SGD(model.parameters(), lr=0.1))

    assert plugin.last_replaced["fc1"].tolist() == [2] and plugin.last_replaced["fc2"].tolist() == [4]
    assert fc2.bias[4].item() == 0.0 and fc1.bias[2].item() == 0.0
    mean1, mean2 = 0.7 / (1 - 0.9**age1), 0.3 / (1 - 0.9**age2)
    others = [k for k in range(6) if k != 4]
    assert torch.allclose(fc2.bias[others], 0.25 + old_fc2[others, 2] * mean1, atol=1e-6)
    assert torch.allclose(model.head.bias, old_head_bias + old_head[:, 4] * mean2, atol=1e-6)
    assert torch.all(fc2.weight[:, 2] == 0) and torch.all(model.head.weight[:, 4] == 0)


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_cbp_zeroes_the_optimizer_state_of_replaced_weights(optimizer_name):
    model = mlp()
    if optimizer_name == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        buffers = ("momentum_buffer",)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        buffers = ("exp_avg", "exp_avg_sq")
    plugin = ContinualBackprop(model, replacement_rate=0.0, maturity_threshold=0, decay_rate=0.99)
    strategy = train(model, [plugin], synthetic_stream(), optimizer=optimizer)
    fc1, fc2 = model.features.linears
    units, kept = [1, 3], [0, 2, 4, 5, 6, 7]
    plugin.replace(replaceable_units(model)[0][0], torch.tensor(units), strategy.optimizer)
    state = strategy.optimizer.state
    for name in buffers:
        assert torch.all(state[fc1.weight][name][units] == 0)
        assert torch.all(state[fc1.bias][name][units] == 0)
        assert torch.all(state[fc2.weight][name][:, units] == 0)
        # the state of every other unit is intact (nonzero after training)
        assert torch.all(state[fc1.weight][name][kept].abs().sum(dim=1) > 0)
        assert torch.all(state[fc2.weight][name][:, kept].abs().sum(dim=0) > 0)


def test_cbp_during_training_replaces_only_mature_units_of_least_utility():
    model = mlp(widths=(16, 12))
    plugin = ContinualBackprop(model, replacement_rate=0.05, maturity_threshold=8, decay_rate=0.9)
    seen = []
    original = plugin.replace

    def checked_replace(layer, units, optimizer, **kwargs):
        stats = plugin.statistics[layer.name]
        eligible = torch.nonzero(stats.age > 8).flatten()
        corrected = stats.utility / (1 - 0.9 ** stats.age.float())
        others = [i for i in eligible.tolist() if i not in units.tolist()]
        seen.append((stats.age[units].min().item(), corrected[units].max().item(),
                     min((corrected[i].item() for i in others), default=float("inf"))))
        original(layer, units, optimizer, **kwargs)

    plugin.replace = checked_replace
    train(model, [plugin], synthetic_stream(n_experiences=2, n=160), epochs=3)
    # 2 experiences x 3 epochs x 10 steps; 28 units eligible after step 9: about 0.05*28*51 = 70 due
    assert sum(plugin.replaced_total.values()) >= 40
    assert all(min_age > 8 for min_age, _, _ in seen)
    assert all(worst_chosen <= best_other for _, worst_chosen, best_other in seen)


def test_cbp_replaces_conv_channels_including_a_flattened_reader():
    """convnet on 16x16 images: conv3's reader fc1 sees 128 channels x 2 x 2 positions, so
    channel c owns fc1's columns 4c .. 4c+3 and those are what is zeroed."""
    model = build("convnet", (1, 16, 16), 3, padding="same")
    plugin = ContinualBackprop(model, replacement_rate=0.0, maturity_threshold=0, decay_rate=0.99)
    assert [layer.name for layer in plugin.layers] == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    conv3 = plugin.layers[2]
    fc1 = model.features.linears[0]
    assert fc1.in_features == 128 * 4
    before = fc1.weight.detach().clone()
    plugin.replace(conv3, torch.tensor([2, 7]), torch.optim.SGD(model.parameters(), lr=0.1))
    zeroed = torch.nonzero(torch.all(fc1.weight == 0, dim=0)).flatten().tolist()
    assert zeroed == [8, 9, 10, 11, 28, 29, 30, 31]
    others = [c for c in range(512) if c not in zeroed]
    assert torch.equal(fc1.weight[:, others], before[:, others])
    assert torch.all(conv3.incoming.bias[[2, 7]] == 0)


def test_cbp_skips_layers_without_single_neighbours_and_says_so():
    with pytest.raises(CollapsebenchError, match="no tapped layer of .* has replaceable units.*incoming is None"):
        ContinualBackprop(build("convgru", (1, 8, 8), 3, channels=[4], frames=2), 1e-4, 100, 0.99)
    skipped = r"cbp leaves these tapped layers alone: .*layer1\.0 \(no single Linear/Conv2d produces"
    with pytest.warns(UserWarning, match=skipped):
        plugin = ContinualBackprop(build("resnet18", (3, 8, 8), 3, width_multiplier=0.0625), 1e-4, 100, 0.99)
    names = [layer.name for layer in plugin.layers]
    assert "layer1.0.conv1" in names and "layer1.0" not in names


def test_cbp_rejects_bad_options():
    with pytest.raises(CollapsebenchError, match="replacement_rate must be between 0 and 1"):
        ContinualBackprop(mlp(), 2.0, 100, 0.99)
    with pytest.raises(CollapsebenchError, match="decay_rate"):
        ContinualBackprop(mlp(), 1e-4, 100, 1.0)


# --- ReDo -------------------------------------------------------------------------------------


def test_redo_recycles_exactly_the_dormant_units():
    model = mlp(widths=(8, 6))
    fc1, fc2 = model.features.linears
    with torch.no_grad():
        fc1.weight[2] = 0.0
        fc1.bias[2] = -1.0  # dead: ReLU output 0 everywhere
        fc1.weight[5] *= 1e-3  # alive but dormant: about 1e-3 of a typical unit's magnitude
        fc1.bias[5] = 0.0
    stream = synthetic_stream(n=64)
    x = torch.stack([stream.train_stream[0].dataset[i][0] for i in range(64)])
    # The dormant sets, computed here from SPEC's score s_i = E|h_i| / mean_k E|h_k| on the batch.
    with torch.no_grad():
        expected = {}
        for name, h in zip(("fc1", "fc2"), hidden(model, x)):
            score = h.abs().mean(dim=0) / h.abs().mean()
            expected[name] = sorted(torch.nonzero(score <= 0.025).flatten().tolist())
    assert {2, 5} <= set(expected["fc1"]) and len(expected["fc1"]) < 8
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    plugin = ReDo(model, every_n_steps=1, threshold=0.025)
    # One step on the whole batch at learning rate 0: only ReDo changes weights.
    train(model, [plugin], stream, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), batch_size=64)
    recycled = {name: sorted(plugin.last_recycled[name].tolist()) for name in ("fc1", "fc2")}
    assert recycled == expected
    # Every weight that belongs to no recycled unit is untouched; those that do are fresh or zero.
    readers = {"fc1": fc2, "fc2": model.head}
    columns_in = {"fc1": list(range(5)), "fc2": [c for c in range(8) if c not in recycled["fc1"]]}
    for index, name in enumerate(("fc1", "fc2")):
        incoming, reader = model.features.linears[index], readers[name]
        kept = [i for i in range(incoming.out_features) if i not in recycled[name]]
        old = before[f"features.linears.{index}.weight"]
        assert torch.equal(incoming.weight[kept][:, columns_in[name]], old[kept][:, columns_in[name]])
        assert torch.all(reader.weight[:, recycled[name]] == 0)
        assert torch.all(incoming.bias[recycled[name]] == 0)
    assert torch.all(fc1.weight[2] != 0)  # the dead unit has fresh weights
    assert torch.equal(model.head.bias, before["head.bias"])


def test_redo_acts_every_k_steps():
    model = mlp()
    plugin = ReDo(model, every_n_steps=3, threshold=0.025)
    calls = []
    original = plugin.recycle
    plugin.recycle = lambda magnitudes, optimizer: (calls.append(plugin.steps), original(magnitudes, optimizer))
    train(model, [plugin], synthetic_stream(n=112))  # 7 steps of 16
    assert calls == [2, 5]  # after the 3rd and the 6th update


def test_redo_scores_units_on_the_last_score_batches_mini_batches():
    model = mlp()
    plugin = ReDo(model, every_n_steps=3, threshold=0.025, score_batches=2)
    # An independent record of fc1's activations in every training forward pass.
    seen = []
    model.features.activations[0].register_forward_hook(lambda _m, _i, out: seen.append(out.detach().abs()))
    scored = []
    original = plugin.recycle
    plugin.recycle = lambda magnitudes, optimizer: (scored.append(magnitudes["fc1"]), original(magnitudes, optimizer))
    train(model, [plugin], synthetic_stream(n=88), optimizer=torch.optim.SGD(model.parameters(), lr=0.0))
    # 6 steps (5 of 16, 1 of 8): recycling after steps 3 and 6, each scored on steps 2-3 and 5-6
    assert [len(batch) for batch in seen] == [16, 16, 16, 16, 16, 8]
    assert len(scored) == 2
    assert torch.allclose(scored[0], torch.cat(seen[1:3]).mean(dim=0))
    assert torch.allclose(scored[1], torch.cat(seen[4:6]).mean(dim=0))


# --- L2, Shrink & Perturb, L2 Init -----------------------------------------------------------


def fake_strategy(model, lr):
    return SimpleNamespace(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr),
                           loss=torch.zeros(()))


def test_l2_plugin_is_torch_weight_decay():
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    ours, reference = mlp(), mlp()
    strategy = fake_strategy(ours, lr=0.1)
    nn.functional.cross_entropy(ours(x), y).backward()
    WeightDecay(0.3).after_backward(strategy)
    strategy.optimizer.step()
    torch_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, weight_decay=0.3)
    nn.functional.cross_entropy(reference(x), y).backward()
    torch_optimizer.step()
    for mine, theirs in zip(ours.parameters(), reference.parameters()):
        assert torch.allclose(mine, theirs, atol=1e-7)


def test_shrink_perturb_shrinks_by_one_minus_lr_times_decay_and_adds_noise_of_the_set_scale():
    """With no loss gradient, one plain SGD step gives θ' = (1 − ηλ)θ + σε: the shrink is exact
    without noise, and the residual has mean 0 and standard deviation σ (20,000 weights: the
    estimates are within 5%)."""
    lr, decay, sigma = 0.1, 2.0, 0.01  # shrink factor 0.8
    for noise, check in ((0.0, "exact"), (sigma, "noise")):
        model = mlp(widths=(200,), in_features=100)
        before = [p.detach().clone() for p in model.parameters()]
        strategy = fake_strategy(model, lr)
        plugin = ShrinkPerturb(decay, noise)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        plugin.after_backward(strategy)
        strategy.optimizer.step()
        plugin.after_update(strategy)
        residual = torch.cat([(p.detach() - 0.8 * b).flatten() for p, b in zip(model.parameters(), before)])
        if check == "exact":
            assert residual.abs().max() < 1e-6
        else:
            assert residual.numel() > 20_000
            assert abs(residual.mean().item()) < 5 * sigma / residual.numel() ** 0.5
            assert residual.std().item() == pytest.approx(sigma, rel=0.05)
            # hence E‖θ'‖² = 0.64‖θ‖² + σ²n, the norm shrunk by the set factor in expectation
            norm2 = sum((p.detach() ** 2).sum() for p in model.parameters())
            expected = 0.64 * sum((b ** 2).sum() for b in before) + sigma**2 * residual.numel()
            assert norm2.item() == pytest.approx(expected.item(), rel=0.01)


def test_l2_init_adds_the_penalty_and_pulls_toward_the_initial_weights():
    model = mlp()
    initial = [p.detach().clone() for p in model.parameters()]
    plugin, lam, lr = L2Init(0.5), 0.5, 0.2
    strategy = fake_strategy(model, lr)
    plugin.before_training(strategy)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    moved = [p.detach() - i for p, i in zip(model.parameters(), initial)]
    plugin.before_backward(strategy)
    assert strategy.loss.item() == pytest.approx(lam * sum((m**2).sum() for m in moved).item(), rel=1e-5)
    strategy.loss.backward()
    strategy.optimizer.step()
    # one step on λ‖θ − θ₀‖² alone: θ − θ₀ shrinks by exactly 1 − 2ηλ = 0.8
    for p, i, m in zip(model.parameters(), initial, moved):
        assert torch.allclose(p.detach() - i, 0.8 * m, atol=1e-6)


def test_l2_init_keeps_training_closer_to_the_initial_weights_than_naive():
    stream = synthetic_stream(n_experiences=2)

    def distance(plugins):
        model = mlp(seed=3)
        initial = [p.detach().clone() for p in model.parameters()]
        torch.manual_seed(0)
        train(model, plugins, stream, epochs=3)
        return sum(((p.detach() - i) ** 2).sum() for p, i in zip(model.parameters(), initial)).sqrt().item()

    naive, anchored = distance([]), distance([L2Init(1.0)])
    assert anchored < 0.7 * naive


# --- ER+L2 ------------------------------------------------------------------------------------


def test_er_ascent_step_raises_the_batch_erank():
    model = mlp(widths=(32, 32), in_features=10)
    plugin = EffectiveRankL2(model, "ascent", beta=1.0, step_size=0.05, batch_size=100, weight_decay=0.0)
    x = torch.randn(100, 10) @ torch.diag(torch.logspace(0, -2, 10))  # badly conditioned inputs
    with torch.no_grad():
        before = float(mean_erank(hidden(model, x)))
    plugin.ascend(model, x, torch.zeros(100, dtype=torch.long))
    assert plugin.last_objective == pytest.approx(before, rel=1e-6)
    with torch.no_grad():
        after = float(mean_erank(hidden(model, x)))
    assert after > before + 0.05


def test_er_loss_mode_subtracts_beta_times_mean_erank_of_the_training_batch():
    model = mlp(widths=(8, 6))
    plugin = EffectiveRankL2(model, "loss", beta=0.25, step_size=0.01, batch_size=100, weight_decay=0.0)
    x = torch.randn(16, 5)
    plugin.before_forward(None)
    model(x)
    plugin.after_forward(None)
    strategy = SimpleNamespace(model=model, loss=torch.tensor(1.0))
    plugin.before_backward(strategy)
    expected = sum(float(erank(h)) for h in hidden(model, x)) / 2
    assert strategy.loss.item() == pytest.approx(1.0 - 0.25 * expected, rel=1e-5)
    assert strategy.loss.requires_grad


@pytest.mark.parametrize("mode", ["ascent", "loss"])
def test_er_l2_ends_with_higher_activation_erank_than_naive(mode):
    """Same seed, same data: the final activation erank (mean over layers, on held-out inputs)
    is higher with the regularizer than without. Over 5 seeds of data and model the ratio was
    1.18 to 1.44 (both modes): 1.1 leaves room."""
    stream = synthetic_stream(n_experiences=2, n=160, in_features=10, seed=1)
    probe = torch.randn(200, 10, generator=torch.Generator().manual_seed(5))

    def final_erank(plugins):
        model = mlp(widths=(32, 32), in_features=10, seed=2)
        torch.manual_seed(0)
        train(model, plugins(model), stream, epochs=2,
              optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        with torch.no_grad():
            return float(mean_erank(hidden(model, probe)))

    naive = final_erank(lambda model: [])
    regularized = final_erank(
        lambda model: [EffectiveRankL2(model, mode, beta=0.5, step_size=0.05, batch_size=100, weight_decay=1e-3)]
    )
    assert regularized > naive * 1.1


# --- through the command line ------------------------------------------------------------------


def test_replay_plus_cbp_from_the_command_line_and_toml(cli, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('strategy = "replay+cbp"\nevaluators = []\n[strategy_options.cbp]\nmaturity_threshold = 20\n')
    code, out, err = cli("run", "--config", config, "--strategy-option", "cbp.replacement_rate=0.01",
                         *QUICK, "--out", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    resolved = result["config"]["resolved_options"]["strategy"]
    assert resolved["cbp"] == {"replacement_rate": 0.01, "maturity_threshold": 20, "decay_rate": 0.99}
    assert resolved["replay"]["mem_size"] == 2000
    diagonal = [result["accuracy_matrix"][i][i] for i in range(5)]
    assert sum(diagonal) / 5 > 0.6  # still learns each experience while replacing units
