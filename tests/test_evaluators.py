"""The built-in evaluators: records and summaries named per SPEC, consistent with each other and with
independent computations, TensorBoard output, and training left exactly as it would be without them."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from collapsebench.cli import main

WEIGHT_METRICS = {"erank", "erank_peak_normalized", "stable_rank", "srank", "approx_rank", "weight_magnitude"}
ACTIVATION_METRICS = {"erank", "erank_peak_normalized", "srank", "feature_rank", "dead_units", "dormant_units",
                      "feature_norm"}
HESSIAN_METRICS = {"hessian_top_eigenvalues", "hessian_trace", "hessian_density", "hessian_erank",
                   "hessian_near_zero_mass"}
ALL = "weights,activations,hessian,cka,plasticity"
# Replay draws from the global RNG for its buffer, so any evaluator that moved it would show.
SMALL_RUN = ["--epochs", "1", "--probe-size", "150", "--strategy", "replay", "--strategy-option", "mem_size=40"]
CHEAP_HESSIAN = ["--evaluator-option", "hessian.k=3", "--evaluator-option", "hessian.trace_samples=4",
                 "--evaluator-option", "hessian.density_steps=12", "--evaluator-option", "hessian.density_vectors=1",
                 "--evaluator-option", "hessian.batch_size=32", "--evaluator-option", "hessian.per_layer=true"]
K = 3


def _run(out, *args):
    no_checkpoint = out.parent / f"{out.name}.toml"
    no_checkpoint.write_text("checkpoint = false\n")  # checkpoints are not what these tests are about
    assert main(["run", "--config", str(no_checkpoint), *map(str, args), "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluators") / "all"
    return out, _run(out, *SMALL_RUN, "--evaluators", ALL, *CHEAP_HESSIAN)


def _records(result, **match):
    return [r for r in result["metrics"] if all(r.get(k) == v for k, v in match.items())]


def test_evaluators_leave_training_unchanged(full_run, tmp_path):
    _, measured = full_run
    bare = _run(tmp_path / "bare", *SMALL_RUN, "--evaluators", "")
    assert bare["metrics"] == []
    assert measured["accuracy_matrix"] == bare["accuracy_matrix"]


def test_layer_records_per_experience_and_tap(full_run):
    _, result = full_run
    taps = {t["name"] for t in result["taps"]}
    for experience in range(5):
        for kind, names in (("weight", WEIGHT_METRICS), ("activation", ACTIVATION_METRICS)):
            found = _records(result, kind=kind, experience=experience, phase="end")
            assert {(r["name"], r["layer"]) for r in found} == {(n, t) for n in names for t in taps}
            assert len(found) == len(names) * len(taps)
    for r in _records(result, kind="activation"):
        if r["name"] in ("dead_units", "dormant_units"):
            assert 0.0 <= r["value"] <= 1.0
        if r["name"] in ("srank", "feature_rank"):
            assert r["value"] == int(r["value"]) and 0 <= r["value"] <= 256


def test_peak_normalized_erank_follows_the_recorded_erank(full_run):
    _, result = full_run
    for kind in ("weight", "activation"):
        for layer in (t["name"] for t in result["taps"]):
            eranks = [r["value"] for r in _records(result, name="erank", kind=kind, layer=layer)]
            normalized = [r["value"] for r in _records(result, name="erank_peak_normalized", kind=kind, layer=layer)]
            expected = [e / max(eranks[: i + 1]) for i, e in enumerate(eranks)]
            assert normalized == pytest.approx(expected, rel=1e-12)
            assert all(v <= 1.0 for v in normalized)


def test_activation_summary_agrees_with_the_records(full_run):
    from scipy.stats import pearsonr, spearmanr

    _, result = full_run
    summary, matrix = result["summary"], result["accuracy_matrix"]
    layers = [t["name"] for t in result["taps"]]

    def at_end(name, experience, layer):
        (record,) = _records(result, name=name, kind="activation", layer=layer, experience=experience, phase="end")
        return record["value"]

    ratios = [at_end("erank", 4, layer) / max(r["value"] for r in _records(result, name="erank", kind="activation",
                                                                           layer=layer)) for layer in layers]
    assert summary["capacity_retention"] == pytest.approx(np.mean(ratios))
    assert 0.0 < summary["capacity_retention"] <= 1.0
    assert summary["dead_units"] == pytest.approx(np.mean([at_end("dead_units", 4, layer) for layer in layers]))
    assert summary["dormant_units"] == pytest.approx(np.mean([at_end("dormant_units", 4, layer) for layer in layers]))

    forgetting = [max(matrix[i][j] for i in range(4)) - matrix[4][j] for j in range(4)]
    drops = [np.mean([at_end("erank_peak_normalized", j, layer) - at_end("erank_peak_normalized", 4, layer)
                      for layer in layers]) for j in range(4)]
    correlation = summary["forgetting_erank_correlation"]
    assert correlation["n"] == 4
    for key, statistic in (("pearson", pearsonr), ("spearman", spearmanr)):
        expected = statistic(forgetting, drops)[0]
        if math.isnan(expected):
            assert correlation[key] is None  # NaN is written to results.json as null
        else:
            assert correlation[key] == pytest.approx(expected)


def test_hessian_at_the_end_of_each_experience_and_the_start_of_the_next(full_run):
    _, result = full_run
    layers = {t["name"] for t in result["taps"]}
    blocks = {("model", "all")} | {("layer", name) for name in layers}
    for phase, experiences in (("end", range(5)), ("start", range(1, 5))):
        for experience in experiences:
            found = [r for r in result["metrics"] if r["name"].startswith("hessian_")
                     and (r["phase"], r["experience"]) == (phase, experience)]
            assert {(r["name"], r["kind"], r["layer"]) for r in found} == {
                (n, kind, layer) for n in HESSIAN_METRICS for kind, layer in blocks}
    for experience in range(1, 5):
        # "start" is before the first update: the clock has not moved since the previous end
        (start,) = _records(result, name="hessian_trace", kind="model", phase="start", experience=experience)
        (end,) = _records(result, name="hessian_trace", kind="model", phase="end", experience=experience - 1)
        assert start["iteration"] == end["iteration"]
    for top in _records(result, name="hessian_top_eigenvalues"):
        eigenvalues = top["data"]["eigenvalues"]
        assert len(eigenvalues) == K and top["value"] == eigenvalues[0]
        assert [abs(v) for v in eigenvalues] == sorted((abs(v) for v in eigenvalues), reverse=True)
    for density in _records(result, name="hessian_density"):
        assert density["value"] is None
        assert sum(density["data"]["weights"]) == pytest.approx(1.0)
        assert len(density["data"]["nodes"]) == len(density["data"]["weights"])
    for r in _records(result, name="hessian_erank"):
        assert 1.0 - 1e-9 <= r["value"] <= K + 1e-9
    for r in _records(result, name="hessian_near_zero_mass"):
        assert 0.0 <= r["value"] <= 1.0 + 1e-9


def test_cka_compares_each_learned_experience_with_every_later_one(full_run):
    _, result = full_run
    layers = {t["name"] for t in result["taps"]}
    for experience in range(5):
        found = _records(result, name="cka", phase="end", experience=experience)
        assert {(r["data"]["probe_experience"], r["kind"], r["layer"]) for r in found} == {
            (j, f"exp{j}", layer) for j in range(experience) for layer in layers}
        assert all(0.0 <= r["value"] <= 1.0 + 1e-9 for r in found)
    final = {(r["data"]["probe_experience"], r["layer"]): r["value"]
             for r in _records(result, name="cka", phase="end", experience=4)}
    summary = result["summary"]
    for layer in layers:
        assert summary["cka_first_after_last"][layer] == pytest.approx(final[(0, layer)])
        assert summary["cka_after_last"][layer] == pytest.approx(np.mean([final[(j, layer)] for j in range(4)]))


def test_plasticity_is_the_diagonal_over_the_fresh_accuracy(full_run):
    _, result = full_run
    matrix, summary = result["accuracy_matrix"], result["summary"]
    fresh = [r["value"] for r in sorted(_records(result, name="fresh_accuracy", kind="model", layer="all"),
                                        key=lambda r: r["experience"])]
    assert len(fresh) == 5 and all(0.0 < a <= 1.0 for a in fresh)
    assert summary["fresh_accuracy"] == fresh
    assert summary["plasticity"] == pytest.approx([matrix[j][j] / fresh[j] for j in range(5)])
    assert summary["plasticity_mean"] == pytest.approx(np.mean(summary["plasticity"]))


def test_tensorboard_gets_scalars_histograms_and_density_figures(full_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from collapsebench.eventfiles import log_dirs

    run_dir, result = full_run
    (events_dir,) = log_dirs(run_dir)
    tags = EventAccumulator(str(events_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0}).Reload().Tags()
    layer = result["taps"][0]["name"]
    assert {f"stable_rank/weight/{layer}", f"feature_rank/activation/{layer}", f"cka/exp0/{layer}",
            "hessian_trace/model/all", "hessian_trace/model_start/all", f"hessian_erank/layer/{layer}",
            "fresh_accuracy/model/all"} <= set(tags["scalars"])
    assert {f"erank/weight/{layer}/histogram", f"erank/activation/{layer}/histogram"} <= set(tags["histograms"])
    assert {"hessian_density/model/all/figure", "hessian_density/model_start/all/figure"} <= set(tags["images"])


def test_erank_is_the_light_subset_and_refuses_to_double_record(cli, tmp_path):
    code, out, err = cli("run", "--evaluators", "erank,weights", "--out", tmp_path / "run")
    assert code == 2 and "subset of 'weights'" in err


def test_every_n_iterations_adds_measurements_on_the_cadence(tmp_path):
    result = _run(tmp_path / "cadence", "--epochs", "1", "--probe-size", "100", "--evaluators", "activations",
                  "--evaluator-option", "every_n_iterations=4")
    ends = [r["iteration"] for r in _records(result, name="erank", kind="activation", phase="end", layer="fc1")]
    during = _records(result, name="erank", kind="activation", phase="iteration", layer="fc1")
    starts = [0] + ends[:-1]
    expected = [(e, s + n) for e, (s, stop) in enumerate(zip(starts, ends)) for n in range(4, stop - s + 1, 4)]
    assert [(r["experience"], r["iteration"]) for r in during] == expected
    # the summary still reads the end-of-experience values only
    assert result["summary"]["dead_units"] == pytest.approx(np.mean(
        [r["value"] for r in _records(result, name="dead_units", phase="end", experience=4)]))


# --- the metric objects directly, on a model with dropout and batch norm -----------------------


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
        self.norm, self.drop, self.relu = nn.BatchNorm1d(8), nn.Dropout(0.5), nn.ReLU()

    def forward(self, x):
        return self.fc2(self.drop(self.relu(self.norm(self.fc1(x)))))

    def collapsebench_taps(self):
        from collapsebench.taps import Tap

        return [Tap("fc1", self.relu, (self.fc1.weight,), incoming=self.fc1, outgoing=self.fc2, width=8)]


def _context_and_strategy(experience=0, iteration=0):
    from collapsebench.evaluation import Recorder
    from collapsebench.probe import ProbeSet

    generator = torch.Generator().manual_seed(1)
    n = 40
    probe = ProbeSet(inputs=torch.randn(n, 6, generator=generator), targets=torch.randint(0, 3, (n,), generator=generator),
                     task_labels=torch.zeros(n, dtype=torch.long), experiences=torch.arange(n) % 2,
                     indices=torch.arange(n) // 2)
    model = _Net()
    context = SimpleNamespace(probe=probe, recorder=Recorder(), config=None)
    strategy = SimpleNamespace(model=model, device="cpu", _criterion=nn.CrossEntropyLoss(),
                               experience=SimpleNamespace(current_experience=experience),
                               clock=SimpleNamespace(train_iterations=iteration, train_exp_iterations=iteration))
    return context, strategy


def test_probe_activations_are_shared_by_evaluators_measuring_at_the_same_moment():
    from collapsebench_plugins.evaluators.activations import ActivationMetric
    from collapsebench_plugins.evaluators.similarity import CkaMetric

    context, strategy = _context_and_strategy()
    calls = []
    strategy.model.fc1.register_forward_hook(lambda *_: calls.append(1))
    metrics = [ActivationMetric(context), CkaMetric(context)]
    for metric in metrics:
        list(metric.measure(strategy, "end"))
    assert len(calls) == 1
    list(metrics[0].measure(strategy, "start"))  # another moment: the head may have changed
    strategy.clock.train_iterations = 7
    list(metrics[0].measure(strategy, "end"))
    assert len(calls) == 3


def test_measuring_restores_mode_gradients_and_random_state():
    from collapsebench_plugins.evaluators.activations import ActivationMetric
    from collapsebench_plugins.evaluators.hessian import HessianMetric
    from collapsebench_plugins.evaluators.weights import WeightMetric

    context, strategy = _context_and_strategy()
    model = strategy.model
    model.train()
    model(torch.randn(5, 6)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    running_mean = model.norm.running_mean.clone()
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    for metric in (WeightMetric(context), ActivationMetric(context),
                   HessianMetric(context, k=2, per_layer=True, trace_samples=3, density_steps=5, density_vectors=1,
                                 batch_size=16, figures=False)):
        measurements = list(metric.measure(strategy, "end"))
        assert measurements and all(m.value is None or isinstance(m.value, float | int) for m in measurements)
    assert all(module.training for module in model.modules())
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(model.norm.running_mean, running_mean)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads


def test_weight_metrics_match_independent_formulas():
    from collapsebench_plugins.evaluators.weights import WeightMetric

    context, strategy = _context_and_strategy()
    values = {m.name: m.value for m in WeightMetric(context).measure(strategy, "end")}
    weight = strategy.model.fc1.weight.detach().double().numpy()
    sigma = np.linalg.svd(weight, compute_uv=False)
    p = sigma / sigma.sum()
    assert values["erank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert values["erank_peak_normalized"] == 1.0
    assert values["stable_rank"] == pytest.approx(np.linalg.norm(weight, "fro") ** 2 / np.linalg.norm(weight, 2) ** 2)
    assert values["srank"] == int(np.argmax(np.cumsum(sigma) / sigma.sum() >= 0.99) + 1)
    assert values["approx_rank"] == int(np.argmax(np.cumsum(sigma**2) / (sigma**2).sum() >= 0.99) + 1)
    assert values["weight_magnitude"] == pytest.approx(np.abs(weight).mean())


def test_hessian_loss_is_the_criterion_on_the_experience_probe_batch():
    """The top eigenvalue equals that of the dense Hessian of the criterion on that experience's first inputs."""
    from collapsebench_plugins.evaluators.hessian import HessianMetric

    context, strategy = _context_and_strategy(experience=1)
    model = strategy.model.eval()
    metric = HessianMetric(context, k=1, trace_samples=2, density_steps=5, density_vectors=1, batch_size=8,
                           figures=False, tol=1e-8)
    (top,) = [m for m in metric.measure(strategy, "start") if m.name == "hessian_top_eigenvalues"]
    chosen = torch.nonzero(context.probe.experiences == 1).flatten()[:8]
    x, y = context.probe.inputs[chosen], context.probe.targets[chosen]
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().flatten() for p in params])

    def loss_of(vector):
        pieces, start = {}, 0
        for (name, _), shape in zip(model.named_parameters(), shapes):
            size = math.prod(shape)
            pieces[name] = vector[start:start + size].view(shape)
            start += size
        return nn.functional.cross_entropy(torch.func.functional_call(model, pieces, (x,)), y)

    dense = torch.autograd.functional.hessian(loss_of, flat.double().float())
    eigenvalues = torch.linalg.eigvalsh(dense.double())
    largest = eigenvalues[eigenvalues.abs().argmax()]
    assert top.value == pytest.approx(float(largest), rel=1e-4)


@pytest.mark.parametrize("case", ["gaussian", "relu_dead_units", "wide", "ten_decades"])
def test_gram_singular_values_agree_with_svdvals_where_the_metrics_look(case):
    from collapsebench.metrics import singular_values as svdvals
    from collapsebench.metrics.ranks import (spectrum_approx_rank, spectrum_erank, spectrum_feature_rank,
                                             spectrum_srank, spectrum_stable_rank)
    from collapsebench_plugins.evaluators.common import singular_values

    generator = torch.Generator().manual_seed(3)
    matrix = {
        "gaussian": lambda: torch.randn(1000, 256, generator=generator),
        "relu_dead_units": lambda: torch.relu(torch.randn(500, 128, generator=generator))
        * (torch.rand(128, generator=generator) > 0.5),
        "wide": lambda: 0.05 * torch.randn(256, 784, generator=generator),
        "ten_decades": lambda: torch.randn(300, 300, generator=generator, dtype=torch.float64)
        @ torch.diag(torch.logspace(0, -10, 300, dtype=torch.float64)),
    }[case]()
    exact, fast = svdvals(matrix), singular_values(matrix)
    assert fast.dtype == torch.float64 and fast.shape == exact.shape
    assert torch.all(fast[:-1] >= fast[1:])
    # Through the Gram matrix, σ is off by about ε·σ₁²/σ: tiny for large σ, growing for small ones.
    top, eps = float(exact[0]), torch.finfo(torch.float64).eps
    above_noise = exact > 1e-6 * top
    bound = 1e-13 * top + 100 * eps * top**2 / exact[above_noise]
    assert torch.all((fast[above_noise] - exact[above_noise]).abs() <= bound)
    assert float(torch.cat([fast[~above_noise], fast.new_zeros(1)]).max()) < 1e-6 * top
    if case == "relu_dead_units":
        dead = int((matrix == 0).all(dim=0).sum())
        assert dead > 0 and int((fast == 0).sum()) >= dead  # dead units give exact zeros, as with svdvals
    tolerance = 1e-4 if case == "ten_decades" else 1e-11
    assert float(spectrum_erank(fast)) == pytest.approx(float(spectrum_erank(exact)), rel=tolerance)
    assert spectrum_srank(fast) == spectrum_srank(exact)
    assert spectrum_approx_rank(fast) == spectrum_approx_rank(exact)
    assert spectrum_feature_rank(fast, matrix.shape[0]) == spectrum_feature_rank(exact, matrix.shape[0])
    assert spectrum_stable_rank(fast) == pytest.approx(spectrum_stable_rank(exact), rel=1e-10)


def test_cka_references_survive_through_state_dict():
    from collapsebench_plugins.evaluators.similarity import CkaMetric

    context, strategy = _context_and_strategy(experience=0)
    first = CkaMetric(context)
    assert list(first.measure(strategy, "end")) == []  # nothing learned before experience 0
    resumed = CkaMetric(context)
    resumed.load_state_dict(first.state_dict())
    strategy.experience.current_experience, strategy.clock.train_iterations = 1, 10
    (measurement,) = resumed.measure(strategy, "end")
    # the model did not change, so experience 0's representation is exactly what it was
    assert (measurement.name, measurement.kind, measurement.layer) == ("cka", "exp0", "fc1")
    assert measurement.data == {"probe_experience": 0} and measurement.value == pytest.approx(1.0)
    with pytest.warns(UserWarning, match=r"experiences \[0\]"):
        context.recorder.add(measurement, 0, 0, "end")  # a record of experience 0 but no reference for it
        list(CkaMetric(context).measure(strategy, "end"))


def test_multi_head_runs_take_the_hessian_over_the_features_and_the_task_head_only(tmp_path):
    result = _run(tmp_path / "task", "--scenario", "task", "--epochs", "1", "--probe-size", "100",
                  "--evaluators", "hessian,cka,activations", *CHEAP_HESSIAN[:-2])
    state = torch.load(tmp_path / "task" / "model.pt", weights_only=True)
    features = sum(v.numel() for k, v in state.items() if k.startswith("features."))
    one_head = state["head.classifiers.0.classifier.weight"].numel() + state["head.classifiers.0.classifier.bias"].numel()
    assert sum(k.endswith("classifier.weight") for k in state) == 5  # a head per task by the end
    tops = _records(result, name="hessian_top_eigenvalues", kind="model")
    assert len(tops) == 9 and {r["data"]["parameters"] for r in tops} == {features + one_head}
    assert all(r["value"] is not None and math.isfinite(r["value"]) for r in result["metrics"]
               if r["name"] != "hessian_density")
    assert len(_records(result, name="cka", experience=4)) == 4 * len(result["taps"])
