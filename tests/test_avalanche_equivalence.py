"""The Avalanche shortcuts of a run against plain Avalanche.

- ``LeanEvaluationPlugin`` skips callbacks nobody listens to: every metric value it reports
  equals plain ``EvaluationPlugin``'s.
- ``LeanDispatchMixin`` skips per-iteration callbacks whose body is empty: every other callback
  is called as ``trigger_plugins`` calls it, in the same order, with the same results.
- ``fastdata``'s tensor minibatches: without shuffling, the very batches of Avalanche's
  DataLoader, and so the same accuracy matrix. With shuffling the order legitimately differs:
  both draw it from the global torch RNG (so from the run's seed), but DataLoader's sampler
  seeds a generator of its own from it and TensorBatches calls ``randperm`` on it directly.
  What holds then, and is tested: every epoch is a permutation of the experience with the same
  batch sizes, and the same seed gives the same order.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from collapsebench import CollapseMetric, Measurement
from collapsebench.dispatch import PER_ITERATION, does_nothing, listeners, with_lean_dispatch
from collapsebench.evaluation import GENERIC_RULES, LeanEvaluationPlugin, Recorder
from collapsebench.fastdata import PendingTensorBatches, TensorBatches, TensorBatchesPlugin

N_CLASSES, IN_FEATURES = 3, 5


def stream(n_experiences=2, n=70, seed=0):
    """Gaussian inputs labelled by a random linear map per experience (70: a last short batch)."""
    from collapsebench_plugins.streams.tensors import assemble, tensor_dataset

    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for _ in range(n_experiences):
        mapping = torch.randn(IN_FEATURES, N_CLASSES, generator=generator)
        for part in (train, test):
            x = torch.randn(n, IN_FEATURES, generator=generator)
            part.append(tensor_dataset(x, (x @ mapping).argmax(dim=1)))
    return assemble(train, test, [set(range(N_CLASSES))] * n_experiences)


def model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN_FEATURES, 16), nn.ReLU(), nn.Linear(16, N_CLASSES))


class Batches:
    """An Avalanche training plugin that keeps every minibatch the template trains or evaluates on."""

    def __init__(self):
        from avalanche.core import SupervisedPlugin

        seen = self.seen = {"train": [], "eval": [], "loaders": set()}

        class Keep(SupervisedPlugin):
            def before_training_iteration(self, strategy, **kwargs):
                seen["train"].append((strategy.mb_x.clone(), strategy.mb_y.clone()))
                seen["loaders"].add(type(strategy.dataloader).__name__)

            def before_eval_iteration(self, strategy, **kwargs):
                seen["eval"].append((strategy.mb_x.clone(), strategy.mb_y.clone()))
                seen["loaders"].add(type(strategy.dataloader).__name__)

        self.plugin = Keep()


def template(net, *, fast, plugins=(), evaluator=None, epochs=2, batch_size=16, lean_dispatch=False):
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates import SupervisedTemplate

    if evaluator is None:
        from avalanche.evaluation.metrics import accuracy_metrics

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # no loggers, on purpose
            evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    plugins = [TensorBatchesPlugin(), *plugins] if fast else list(plugins)  # first, as runner.make_template puts it
    cls = with_lean_dispatch(SupervisedTemplate) if lean_dispatch else SupervisedTemplate
    return cls(model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
               criterion=nn.CrossEntropyLoss(), train_mb_size=batch_size, train_epochs=epochs, eval_mb_size=32,
               device="cpu", plugins=plugins, evaluator=evaluator)


def accuracy_matrix(strategy, benchmark, shuffle):
    matrix = []
    for experience in benchmark.train_stream:
        strategy.train(experience, shuffle=shuffle)
        results = strategy.eval(benchmark.test_stream)
        matrix.append([results[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"]
                       for j in range(len(benchmark.test_stream))])
    return matrix


# --- fastdata: TensorBatches against Avalanche's DataLoader ----------------------------------


def test_unshuffled_tensor_batches_are_avalanches_batches():
    benchmark = stream(n_experiences=1)
    runs = {}
    for fast in (False, True):
        keep = Batches()
        strategy = template(model(), fast=fast, plugins=[keep.plugin], epochs=1)
        strategy.train(benchmark.train_stream[0], shuffle=False)
        strategy.eval(benchmark.test_stream)
        runs[fast] = keep.seen
        # Training batches come through the loader that gathers on first use.
        fast_loaders = {PendingTensorBatches.__name__, TensorBatches.__name__}
        assert keep.seen["loaders"] == (fast_loaders if fast else {"TaskBalancedDataLoader", "SingleDatasetDataLoader"})
    for phase in ("train", "eval"):
        plain, fast = runs[False][phase], runs[True][phase]
        assert [len(y) for _, y in plain] == [len(y) for _, y in fast] == ([16] * 4 + [6] if phase == "train" else [32, 32, 6])
        for (x0, y0), (x1, y1) in zip(plain, fast):
            assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_same_accuracy_matrix_without_shuffling():
    benchmark = stream()
    plain = accuracy_matrix(template(model(), fast=False), benchmark, shuffle=False)
    fast = accuracy_matrix(template(model(), fast=True), benchmark, shuffle=False)
    assert plain == fast
    assert plain[0][0] > 1 / N_CLASSES  # it learned: the comparison is not between two untrained nets


def _shuffled_epochs(fast, seed):
    benchmark = stream(n_experiences=1)
    keep = Batches()
    strategy = template(model(), fast=fast, plugins=[keep.plugin], epochs=2)
    torch.manual_seed(seed)
    strategy.train(benchmark.train_stream[0])
    return keep.seen["train"], benchmark.train_stream[0].dataset


@pytest.mark.parametrize("fast", [False, True], ids=["dataloader", "tensor_batches"])
def test_shuffled_order_is_a_permutation_fixed_by_the_seed(fast):
    batches, _ = _shuffled_epochs(fast, seed=3)
    again, _ = _shuffled_epochs(fast, seed=3)
    other, _ = _shuffled_epochs(fast, seed=4)
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches, other))
    assert [len(y) for _, y in batches] == ([16] * 4 + [6]) * 2


def test_shuffled_epochs_hold_each_sample_once_in_both_loaders():
    plain, dataset = _shuffled_epochs(False, seed=3)
    fast, _ = _shuffled_epochs(True, seed=3)
    everything = torch.stack([dataset[i][0] for i in range(len(dataset))])

    def epoch_rows(batches, epoch):
        rows = torch.cat([x for x, _ in batches[5 * epoch:5 * epoch + 5]])
        return sorted(map(tuple, rows.tolist()))

    expected = sorted(map(tuple, everything.tolist()))
    for epoch in (0, 1):
        assert epoch_rows(plain, epoch) == epoch_rows(fast, epoch) == expected
    # The documented difference: same seed, different order.
    assert not torch.equal(plain[0][0], fast[0][0])


def test_an_epoch_shuffled_whole_cuts_the_same_minibatches_as_a_gather_per_minibatch(monkeypatch):
    """Up to SHUFFLE_WHOLE_BYTES an epoch is gathered in shuffled order once and sliced; beyond,
    each minibatch is gathered. Same seed, same minibatches, to the last bit."""
    from collapsebench import fastdata

    x = torch.randn(70, 5, generator=torch.Generator().manual_seed(0))
    tensors = (x, torch.arange(70), torch.zeros(70, dtype=torch.long))

    def epochs(limit):
        monkeypatch.setattr(fastdata, "SHUFFLE_WHOLE_BYTES", limit)
        torch.manual_seed(5)
        loader = TensorBatches(tensors, batch_size=16, shuffle=True)
        return [batch for _ in range(2) for batch in loader]

    whole, per_minibatch = epochs(sum(t.nbytes for t in tensors)), epochs(sum(t.nbytes for t in tensors) - 1)
    assert len(whole) == len(per_minibatch) == 10
    for a, b in zip(whole, per_minibatch):
        assert all(torch.equal(u, v) and u.is_contiguous() for u, v in zip(a, b))
    assert all(t._base is not None for t in whole[0]) and all(t._base is None for t in per_minibatch[0])
    assert sorted(torch.cat([y for _, y, _ in whole[:5]]).tolist()) == list(range(70))  # each sample once


@pytest.mark.parametrize("n, drop_last", [(70, False), (64, False), (70, True), (10, False)])
def test_no_minibatch_left_after_an_epoch_shuffled_whole_holds_its_copy(n, drop_last):
    """The template holds the epoch's last minibatch into the next epoch: gathered on its own, it
    lets the shuffled copy go before the next epoch makes its own (one copy at a time, not two)."""
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(0))
    tensors = (x, torch.arange(n), torch.zeros(n, dtype=torch.long))
    torch.manual_seed(5)
    batches = list(TensorBatches(tensors, batch_size=16, shuffle=True, drop_last=drop_last))
    *sliced, last = batches
    epoch_bytes = n * 5 * 4
    assert all(b[0].untyped_storage().nbytes() == epoch_bytes for b in sliced)  # views of the copy
    assert all(t._base is None and t.untyped_storage().nbytes() == t.nbytes for t in last)
    assert len(last[1]) == (16 if drop_last or n % 16 == 0 else n % 16)
    seen = torch.cat([y for _, y, _ in batches]).tolist()
    assert len(set(seen)) == len(seen) == (n // 16 * 16 if drop_last else n)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_replay_leaves_the_experiences_it_replaces_ungathered(monkeypatch):
    """Avalanche's ReplayPlugin swaps in its own loader from the second experience on: the
    experience's tensor loader is then never iterated, so never gathered."""
    from avalanche.training.plugins import ReplayPlugin

    from collapsebench import fastdata

    gathered = []
    real = fastdata.gather_onto
    monkeypatch.setattr(fastdata, "gather_onto", lambda dataset, device: gathered.append(len(dataset)) or real(dataset, device))
    keep = Batches()
    strategy = template(model(), fast=True, plugins=[ReplayPlugin(mem_size=20), keep.plugin], epochs=1)
    for experience in stream(n_experiences=3).train_stream:
        strategy.train(experience)
    assert gathered == [70]  # the first experience only, before the buffer had anything to replay
    assert keep.seen["loaders"] == {PendingTensorBatches.__name__, "ReplayDataLoader"}


# --- LeanEvaluationPlugin against EvaluationPlugin --------------------------------------------


class WeightNorm(CollapseMetric):
    """A collapsebench evaluator metric at every cadence: end, start of experience, every 2 iterations."""

    def measure(self, strategy, phase):
        norm = torch.linalg.norm(strategy.model[0].weight.detach()).item()
        yield Measurement("norm", "weights", "fc", norm)


def _logged_run(lean, runs_metrics=False):
    """Every value logged, every eval result and every evaluator record of a two-experience run.

    ``runs_metrics``: only what every run has (experience and stream accuracy, epoch loss), where
    the lean plugin takes its direct-update path after each iteration; else every cadence.
    """
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.evaluation.metrics.loss import EpochLoss as AvalancheEpochLoss
    from avalanche.logging import BaseLogger
    from avalanche.training.plugins import EvaluationPlugin

    from collapsebench.evaluation import EpochLoss

    logged = []

    class Keep(BaseLogger):
        def log_single_metric(self, name, value, x_plot):
            logged.append((name, float(value) if not torch.is_tensor(value) else value.tolist(), x_plot))

    recorder = Recorder()
    if runs_metrics:
        metrics = [accuracy_metrics(experience=True, stream=True), loss_metrics(epoch=True)]
    else:
        metrics = [accuracy_metrics(minibatch=True, epoch=True, experience=True, stream=True),
                   loss_metrics(minibatch=True, epoch=True, experience=True, stream=True),
                   WeightNorm(recorder, every_n_iterations=2, at_experience_start=True)]
    flat = [m for group in metrics for m in (group if isinstance(group, list) else [group])]
    if lean:  # the run's epoch loss instead of Avalanche's
        flat = [EpochLoss() if type(m) is AvalancheEpochLoss else m for m in flat]
    evaluator = LeanEvaluationPlugin(*flat, loggers=[Keep()]) if lean else EvaluationPlugin(*flat, loggers=[Keep()])
    if lean and runs_metrics:
        assert evaluator._only_updating("after_training_iteration") and evaluator._only_updating("after_eval_iteration")
    benchmark = stream()
    strategy = template(model(), fast=False, evaluator=evaluator, lean_dispatch=lean)
    torch.manual_seed(0)
    results = []
    for experience in benchmark.train_stream:
        strategy.train(experience)
        results.append(strategy.eval(benchmark.test_stream))
    return logged, results, recorder.records


def test_lean_evaluation_reports_the_same_metric_values():
    plain_logged, plain_results, plain_records = _logged_run(lean=False)
    lean_logged, lean_results, lean_records = _logged_run(lean=True)
    assert lean_logged == plain_logged
    assert lean_results == plain_results
    assert lean_records == plain_records
    names = {name.split("/")[0] for name, _, _ in plain_logged}
    # Every kind of value was compared: minibatch, epoch, experience and stream metrics, ours too.
    assert {"Top1_Acc_MB", "Top1_Acc_Epoch", "Top1_Acc_Exp", "Top1_Acc_Stream", "Loss_MB", "norm"} <= names
    assert {r["phase"] for r in plain_records} == {"end", "start", "iteration"}


def test_lean_evaluation_of_the_runs_metrics_reports_the_same_values():
    plain_logged, plain_results, _ = _logged_run(lean=False, runs_metrics=True)
    lean_logged, lean_results, _ = _logged_run(lean=True, runs_metrics=True)
    assert lean_logged == plain_logged and lean_results == plain_results
    assert {name.split("/")[0] for name, _, _ in plain_logged} == {"Top1_Acc_Exp", "Top1_Acc_Stream", "Loss_Epoch"}


# --- LeanDispatchMixin against trigger_plugins ----------------------------------------------


def test_empty_bodies_are_recognised_and_nothing_else():
    from avalanche.core import SupervisedPlugin

    def documented(strategy, **kwargs):
        """Only a docstring."""

    def returns_none(strategy):
        return None

    def sets(strategy):
        strategy.x = 1

    def generator(strategy):
        return
        yield

    class Callable:
        def __call__(self, strategy):
            pass

    assert does_nothing(documented) and does_nothing(returns_none)
    assert not does_nothing(sets) and not does_nothing(generator) and not does_nothing(Callable())
    # Avalanche's defaults are what the mixin skips: a default that gained a body would be called
    # again, correct but slower, and this test says so.
    for event in PER_ITERATION:
        assert does_nothing(getattr(SupervisedPlugin, event)), event


class Calls:
    """Avalanche training plugins that log their calls, one with empty overrides too."""

    def __init__(self):
        from avalanche.core import SupervisedPlugin

        log = self.log = []

        def recording(event):
            def callback(plugin, strategy, **kwargs):
                log.append((plugin.name, event, strategy.clock.train_iterations, sorted(kwargs)))
            return callback

        class Loud(SupervisedPlugin):
            name = "loud"

        for event in PER_ITERATION:
            setattr(Loud, event, recording(event))

        class Quiet(SupervisedPlugin):
            name = "quiet"

            def after_forward(self, strategy, **kwargs):
                pass

            def before_update(self, strategy, **kwargs):
                log.append(("quiet", "before_update", strategy.clock.train_iterations, sorted(kwargs)))

        self.plugins = [Loud(), Quiet()]


def test_lean_dispatch_calls_every_callback_that_does_something_in_order():
    runs = {}
    for lean in (False, True):
        calls = Calls()
        strategy = template(model(), fast=True, plugins=calls.plugins, lean_dispatch=lean)
        torch.manual_seed(0)
        benchmark = stream()
        for experience in benchmark.train_stream:
            strategy.train(experience)
            strategy.eval(benchmark.test_stream)
        runs[lean] = calls.log, [p.detach().clone() for p in strategy.model.parameters()]
        if lean:
            found = listeners(strategy.plugins, "after_forward")
            owners = [getattr(c, "__self__", None) for c in found]
            assert calls.plugins[0] in owners and calls.plugins[1] not in owners  # Quiet's empty one left out
    (plain_log, plain_params), (lean_log, lean_params) = runs[False], runs[True]
    assert lean_log == plain_log and len(plain_log) > 100
    assert all(torch.equal(a, b) for a, b in zip(plain_params, lean_params))


def test_lean_dispatch_follows_changes_to_the_plugin_list():
    calls = Calls()
    strategy = template(model(), fast=True, plugins=[], lean_dispatch=True)
    benchmark = stream(n_experiences=1)
    strategy.train(benchmark.train_stream[0])
    assert calls.log == []
    strategy.plugins.insert(0, calls.plugins[1])  # in place, as a plugin list is usually changed
    strategy.train(benchmark.train_stream[0])
    assert {event for _, event, _, _ in calls.log} == {"before_update"}


# --- LeanEvaluationPlugin's rules for Avalanche's GenericPluginMetric ---------------------------


SETTINGS = [(mode, reset_at, emit_at) for mode in ("train", "eval")
            for reset_at in ("iteration", "epoch", "experience", "stream", "never")
            for emit_at in ("iteration", "epoch", "experience", "stream")
            if mode == "train" or "epoch" not in (reset_at, emit_at)]  # what Avalanche accepts


@pytest.mark.parametrize("mode, reset_at, emit_at", SETTINGS)
def test_generic_metric_rules_match_what_its_callbacks_do(mode, reset_at, emit_at):
    """The rules LeanEvaluationPlugin uses to leave a GenericPluginMetric out of a per-iteration
    callback, checked against the class: a callback the rule calls idle touches nothing."""
    from avalanche.evaluation.metric_definitions import GenericPluginMetric
    from avalanche.evaluation.metrics import Mean

    touched = []

    class Probe(GenericPluginMetric):
        def reset(self):
            touched.append("reset")

        def update(self, strategy):
            touched.append("update")

        def result(self):
            touched.append("result")
            return 0.0

        def _package_result(self, strategy):
            touched.append("package")
            return []

    metric = Probe(Mean(), reset_at=reset_at, emit_at=emit_at, mode=mode)
    for callback, acts in GENERIC_RULES.items():
        touched.clear()
        getattr(metric, callback)(object())
        assert bool(touched) == acts(metric), (callback, touched)


@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_the_runs_evaluation_forwards_no_idle_iteration_callback():
    """The metric set of every run: experience and stream accuracy, epoch loss."""
    from avalanche.evaluation.metrics import accuracy_metrics

    from collapsebench.evaluation import EpochLoss

    evaluation = LeanEvaluationPlugin(accuracy_metrics(experience=True, stream=True), EpochLoss(), loggers=[])
    assert does_nothing(evaluation.before_training_iteration)
    assert [type(m).__name__ for m in evaluation._acting_metrics("after_training_iteration")] == ["EpochLoss"]
    assert evaluation._only_updating("after_training_iteration") == evaluation._acting_metrics("after_training_iteration")
    # The epoch loss never reads the experience (its equivalence test below gives it none): it is
    # updated without the logging view; Avalanche's accuracies still get it.
    assert evaluation._only_updating("after_eval_iteration")
    assert evaluation._without_view == {"after_training_iteration"}
    assert {type(m).__name__ for m in evaluation._acting_metrics("after_eval_iteration")} == {
        "ExperienceAccuracy", "StreamAccuracy"}


# --- The run's epoch loss read back in one pass, against Avalanche's per-minibatch update ---------


@pytest.mark.parametrize("shape, dtype", [((1,), torch.float32), ((), torch.float32), ((1,), torch.float64),
                                          ((1,), torch.float16), ((4,), torch.float32), ("mixed", torch.float32)])
def test_epoch_loss_read_in_one_pass_equals_avalanches_value(shape, dtype):
    """EpochLoss reads one-element losses back in one transfer and feeds Avalanche's Mean the same
    floats in the same order; other losses (several elements, mixed shapes) go Avalanche's way."""
    from types import SimpleNamespace

    from avalanche.evaluation.metrics.loss import EpochLoss as AvalancheEpochLoss

    from collapsebench.evaluation import EpochLoss

    generator = torch.Generator().manual_seed(1)
    ours, theirs = EpochLoss(), AvalancheEpochLoss()
    for i in range(700):  # past FLUSH_EVERY twice, with values whose sum loses bits in float64
        size = (1,) if shape == "mixed" and i % 3 else () if shape == "mixed" else shape
        loss = (torch.rand(size, generator=generator, dtype=torch.float64) * 10 ** (i % 7)).to(dtype)
        strategy = SimpleNamespace(loss=loss, mb_y=torch.zeros(1 + i % 32, dtype=torch.long))
        ours.update(strategy)
        theirs.update(strategy)
    assert ours.result() == theirs.result()  # exactly, to the last bit
    assert ours._loss._mean_loss.weight == theirs._loss._mean_loss.weight


# --- dispatch.idle_rules against Avalanche's PeriodicEval --------------------------------------


@pytest.mark.parametrize("peval_mode", ["epoch", "iteration", "experience"])
@pytest.mark.parametrize("eval_every", [-1, 0, 1, 3])
def test_periodic_eval_rule_matches_what_its_callback_does(peval_mode, eval_every):
    """Left out of the lean dispatch only where its after-iteration callback evaluates nothing at
    any iteration; kept (and evaluating) otherwise."""
    from types import SimpleNamespace

    from avalanche.training.templates.base_sgd import PeriodicEval

    from collapsebench.dispatch import idle_rules

    plugin = PeriodicEval(eval_every=eval_every, peval_mode=peval_mode)
    evaluated = []
    for iteration in range(1, 13):
        strategy = SimpleNamespace(_eval_streams=["stream"], eval=lambda s, **kw: evaluated.append(s),
                                   clock=SimpleNamespace(train_exp_iterations=iteration))
        plugin.after_training_iteration(strategy)
    idle = idle_rules()[PeriodicEval.after_training_iteration](plugin)
    assert idle == (evaluated == [])
    assert (plugin.after_training_iteration in listeners([plugin], "after_training_iteration")) == (not idle)
