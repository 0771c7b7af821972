"""benchmarks/bench_speed.py's epoch pairing: one hand-loop epoch beside every collapsebench epoch,
and Avalanche's loop given back afterwards (the benchmark wraps it for the length of one run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench_speed():
    spec = importlib.util.spec_from_file_location("bench_speed", REPO / "benchmarks" / "bench_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_epoch_is_paired_and_the_loop_is_restored(bench_speed, shared_mnist_root):
    from avalanche.training.templates.update_type.sgd_update import SGDUpdate

    from collapsebench.leanloop import LeanLoopMixin

    from collapsebench.manager import build_manager
    from collapsebench.records import StreamContext
    from collapsebench.registry import Registry

    manager = build_manager()
    registry = Registry(manager)
    stream, mlp = registry.get("stream", "split-mnist"), registry.get("architecture", "mlp")
    context = StreamContext(seed=0, scenario="class", data_root=shared_mnist_root)
    experiences = bench_speed.stream_tensors(stream.factory(context, **stream.option_defaults()).benchmark)
    model_factory = lambda: mlp.factory((1, 28, 28), 10, False, **mlp.option_defaults())  # noqa: E731
    loops = [owner.__dict__["training_epoch"] for owner in bench_speed.loop_owners()]
    assert loops[0] is SGDUpdate.__dict__["training_epoch"] and loops[1] is LeanLoopMixin.__dict__["training_epoch"]

    with bench_speed._EpochPairs(model_factory, experiences, 64, 0.01, 0.9, seed=0) as pairs:
        train, _ = bench_speed.collapsebench_run(manager, registry, shared_mnist_root, 2, 64, 0.01, 0.9, seed=0)
    assert [owner.__dict__["training_epoch"] for owner in bench_speed.loop_owners()] == loops  # restored
    assert len(pairs.pairs) == len(experiences) * 2  # 5 experiences, 2 epochs each
    assert all(ours > 0 and hand > 0 for ours, hand in pairs.pairs)
    # The hand epochs ran inside collapsebench's recorded training time, which therefore holds both.
    assert train > sum(ours + hand for ours, hand in pairs.pairs) * 0.99
    # The hand model trained: its experiences are the stream's own tensors, on its own optimizer.
    assert pairs.experience == len(experiences) - 1


def _run(shared_mnist_root, tmp_path, name):
    import json

    from collapsebench.config import build_config
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry
    from collapsebench.runner import execute

    manager = build_manager()
    config = build_config({"stream": "split-mnist", "model": "mlp", "strategy": "naive", "evaluators": [],
                           "epochs": 1, "batch_size": 64, "seed": 3, "data_root": str(shared_mnist_root),
                           "out": str(tmp_path / name), "probe_size": 50, "device": "cpu"})
    execute(config, manager, Registry(manager), echo=lambda *a, **k: None)
    results = json.loads((tmp_path / name / "results.json").read_text())
    return {key: results[key] for key in ("accuracy_matrix", "online_accuracy", "summary", "metrics")}, (tmp_path / name / "model.pt").read_bytes()


def _ran_with(bench_speed, loop, shared_mnist_root, tmp_path, name):
    ran = []

    def counted(strategy, **kwargs):
        ran.append(type(strategy).__name__)
        return loop(strategy, **kwargs)

    with bench_speed.epoch_loop(lambda original: counted):
        result = _run(shared_mnist_root, tmp_path, name)
    assert len(ran) == 5 and ran[0].startswith("LeanDispatch_")  # the run's loop was the one replaced
    return result


def test_the_ablations_loops_train_as_the_runs_loop(bench_speed, shared_mnist_root, tmp_path):
    """The ablation's Avalanche loop and "Avalanche's loop inline" are the same computation as the
    run's own loop: same accuracies, same weights."""
    from avalanche.training.templates.update_type.sgd_update import SGDUpdate

    ours = _run(shared_mnist_root, tmp_path, "ours")
    for name, loop in (("avalanche", SGDUpdate.__dict__["training_epoch"]), ("inline", bench_speed.inline_epoch)):
        other = _ran_with(bench_speed, loop, shared_mnist_root, tmp_path, name)
        assert other[0] == ours[0], name
        assert other[1] == ours[1], name


def test_the_timed_inline_loop_trains_as_the_runs_loop(bench_speed, shared_mnist_root, tmp_path):
    """The breakdown's timed loop is the same computation, though it times every piece of the step."""
    ours = _run(shared_mnist_root, tmp_path, "ours")
    clock = bench_speed._StepClock()
    timed = _ran_with(bench_speed, lambda strategy, **kw: bench_speed.timed_inline_epoch(clock, strategy, **kw),
                      shared_mnist_root, tmp_path, "timed")
    assert timed[0] == ours[0]
    assert timed[1] == ours[1]
    # Nothing runs between its criterion and its backward pass: the backward starts from the criterion.
    assert {"forward", "backward (from the criterion)", "optimizer step", "callback OnlineAccuracy.after_forward",
            "criterion", "criterion as the one-element loss"} <= set(clock.ns)
    assert "backward" not in clock.ns


def test_the_breakdown_times_the_same_minibatches_in_both_loops(bench_speed, shared_mnist_root):
    import argparse

    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    manager = build_manager()
    registry = Registry(manager)
    mlp = registry.get("architecture", "mlp")
    model_factory = lambda: mlp.factory((1, 28, 28), 10, False, **mlp.option_defaults())  # noqa: E731
    args = argparse.Namespace(repeats=1, epochs=1, batch_size=64, lr=0.01, momentum=0.9, data_root=shared_mnist_root)
    text = bench_speed.breakdown(args, manager, registry, experiences=None, model_factory=model_factory)
    rows = {line.rsplit(None, 3)[0]: [float(v) for v in line.rsplit(None, 3)[1:]]
            for line in text.splitlines() if line and line[0].isalpha() and not line.startswith("One")}
    # The hand epochs run over the run's own tensors: as many minibatches as the run's loop.
    assert rows["hand: forward"][0] == rows["forward"][0] == rows["next minibatch"][0] > 0
    assert all(us > 0 for _, us, _ in rows.values())
    assert 95 < sum(share for piece, (_, _, share) in rows.items() if piece.startswith("hand: ")) < 105
