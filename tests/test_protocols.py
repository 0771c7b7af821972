"""Evaluation protocols: which cells each measures, which summaries each allows, online accuracy,
resume under ``current``, old result files, and a long stream whose per-experience work is flat."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import FIXTURE_PLUGINS, REPO
from collapsebench.errors import CollapsebenchError
from collapsebench.metrics import accuracy
from collapsebench.protocols import parse, resolve

T = 6

TINY_STREAM = textwrap.dedent('''
    """A stream of tiny fixed tensors: experience i is the same data whatever the stream's length."""
    import torch

    from collapsebench import Option, Stream, StreamData, hookimpl


    def _data(index, size):
        generator = torch.Generator().manual_seed(1000 + index)
        x = torch.randn(size, 4, generator=generator)
        direction = torch.randn(4, generator=generator)
        return x, (x @ direction > 0).long()


    def _build(context, n_experiences, train_size):
        from collapsebench_plugins.streams import tensors

        train = [tensors.tensor_dataset(*_data(i, train_size)) for i in range(n_experiences)]
        test = [tensors.tensor_dataset(*_data(10_000 + i, 4)) for i in range(n_experiences)]
        return StreamData(benchmark=tensors.assemble(train, test, [{0, 1}] * n_experiences), input_shape=(4,),
                          n_classes=2, scenario=context.scenario, fingerprint="tiny", fixed_samples=True)


    @hookimpl
    def collapsebench_streams():
        return [Stream("tiny", "tiny random tensors", _build, scenarios=("domain",),
                       options=(Option("n_experiences", 5, "experiences"), Option("train_size", 8, "samples each")))]
''')


@pytest.fixture(scope="module")
def tiny_plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "tiny_stream.py"
    path.write_text(TINY_STREAM)
    return str(path)


def tiny_args(plugin, n_experiences, *extra):
    return ["--plugin", plugin, "--stream", "tiny", "--stream-option", f"n_experiences={n_experiences}",
            "--model-option", "widths=[8]", "--probe-size", "16", "--epochs", "1", "--batch-size", "4", *extra]


# --- which cells ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("full", [list(range(T))] * T),
    ("seen", [list(range(i + 1)) for i in range(T)]),
    ("current", [[i] for i in range(T)]),
    # full after experiences 2 and 5 (the 3rd, the 6th = the last), the current one otherwise
    ("every:3", [[0], [1], list(range(T)), [3], [4], list(range(T))]),
    ("every:4", [[0], [1], [2], list(range(T)), [4], list(range(T))]),
])
def test_each_protocol_measures_its_cells(name, expected):
    protocol = parse(name)
    assert [protocol.columns(i, T) for i in range(T)] == expected
    assert protocol.measured_cells(T) == sum(map(len, expected))
    assert parse("every:1").columns(2, T) == list(range(T))


@pytest.mark.parametrize("bad", ["sometimes", "every:0", "every:x", "every", 3])
def test_a_bad_protocol_is_refused_with_the_valid_ones(bad):
    with pytest.raises(CollapsebenchError, match="full|every:N"):
        parse(bad)


def test_a_bad_evaluation_flag_exits_2_before_avalanche_is_imported():
    code = ("import sys; from collapsebench.cli import main; rc = main(['run', '--evaluation', 'every:0']); "
            "assert 'avalanche' not in sys.modules; sys.exit(rc)")
    process = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert process.returncode == 2, process.stderr
    assert "every:N with N a whole number" in process.stderr and "Traceback" not in process.stderr


def test_config_and_stream_defaults_decide_the_protocol():
    from collapsebench.config import build_config
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    assert build_config({"evaluation": "Every:5"}).evaluation == "every:5"
    assert build_config({}).evaluation is None
    registry = Registry(build_manager([]))
    permuted = registry.get("stream", "permuted-mnist")
    assert resolve(None, permuted.default_evaluation, {"n_experiences": 800}).name == "current"
    assert resolve(None, permuted.default_evaluation, {"n_experiences": 10}).name == "full"
    assert resolve("seen", permuted.default_evaluation, {"n_experiences": 800}).name == "seen"
    assert registry.get("stream", "continual-imagenet32").default_evaluation == "current"
    assert resolve(None, registry.get("stream", "split-mnist").default_evaluation, {}).name == "full"


def test_a_stream_record_with_a_bad_default_protocol_fails_when_made():
    from collapsebench import Stream

    with pytest.raises(ValueError, match="default_evaluation"):
        Stream("s", "a stream", lambda context: None, default_evaluation="weekly")


# --- which summaries ------------------------------------------------------------------------

def measured(name: str, n: int = T) -> list[list[float | None]]:
    """A matrix with R[i][j] = 1 - 0.1 * (i - j) (plus 0.01 * j) where the protocol measures, None elsewhere."""
    protocol = parse(name)
    matrix = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in protocol.columns(i, n):
            matrix[i][j] = round(0.9 - 0.05 * abs(i - j) + 0.01 * j, 6)
    return matrix


@pytest.mark.parametrize("name, available, missing", [
    ("full", {"average_accuracy", "forgetting", "bwt"}, set()),
    ("seen", {"average_accuracy", "bwt"}, {"forgetting"}),
    ("every:4", {"average_accuracy", "bwt"}, {"forgetting"}),
    ("current", set(), {"average_accuracy", "forgetting", "bwt"}),
])
def test_each_protocol_allows_only_the_summaries_it_measured(name, available, missing):
    matrix = measured(name)
    found = accuracy.accuracy_summaries(matrix, online_accuracy=[0.5] * T, protocol=name)
    classic = {"average_accuracy", "forgetting", "bwt"}
    assert classic & set(found.values) == available
    assert set(found.unavailable) == missing
    for key in missing:
        assert f"protocol {name!r}" in found.unavailable[key] and "not measured: R[" in found.unavailable[key]
    # every protocol measures the diagonal, so the plasticity summaries are always there
    assert found.values["new_task_accuracy"] == [matrix[i][i] for i in range(T)]
    assert set(found.sources) == set(found.values)
    full = accuracy.accuracy_summaries(measured("full"))
    for key in available:  # what a sparser protocol reports equals the full matrix's value
        assert found.values[key] == pytest.approx(full.values[key])
    assert accuracy.summarize(matrix) == {k: found.values[k] for k in available}


def test_summaries_refuse_missing_cells_and_name_them():
    matrix = measured("current")
    with pytest.raises(accuracy.MissingCells, match=r"R\[0\]\[1\]"):
        accuracy.forgetting(matrix)
    with pytest.raises(accuracy.MissingCells, match=r"bwt needs the diagonal and the final row"):
        accuracy.bwt(matrix)


def test_plasticity_retention_compares_the_last_tenth_with_the_first():
    series = [1.0] * 10 + [0.8] * 80 + [0.5] * 10
    assert accuracy.retention(series) == pytest.approx(0.5)
    assert accuracy.retention([0.8, 0.4, 0.2]) == pytest.approx(0.25)  # fewer than 10 tasks: one each
    assert accuracy.retention([0.0, 0.3]) is None
    found = accuracy.accuracy_summaries(measured("current"), online_accuracy=[0.9, 0.9, 0.9, 0.6, 0.3, 0.45])
    assert found.values["online_plasticity_retention"] == pytest.approx(0.5)
    diagonal = found.values["new_task_accuracy"]
    assert found.values["plasticity_retention"] == pytest.approx(diagonal[-1] / diagonal[0])


# --- old files ------------------------------------------------------------------------------

def test_an_old_results_file_loads_as_full(tmp_path):
    from collapsebench.results import read_results
    from collapsebench.summary import render_summary

    matrix = measured("full", 3)
    old = {"schema_version": 1, "status": "complete", "accuracy_matrix": matrix,
           "summary": accuracy.summarize(matrix), "metrics": [], "timing": {}}
    (tmp_path / "results.json").write_text(json.dumps(old))
    loaded = read_results(tmp_path)
    assert loaded["evaluation"] == {"protocol": "full", "measured_cells": 9}
    assert "online_accuracy" not in loaded
    assert "evaluation full" in render_summary(loaded)


# --- the runner -----------------------------------------------------------------------------

def test_online_accuracy_is_counted_before_each_update(cli, tiny_plugin, tmp_path):
    """One update per experience (a minibatch of the whole experience, one epoch): the online
    accuracy of experience 1 is the accuracy, on experience 1's training samples, of the model
    after experience 0, which a one-experience run of the same seed leaves in model.pt."""
    import torch

    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry
    from collapsebench.records import StreamContext

    options = ["--stream-option", "train_size=64", "--batch-size", "64", "--evaluation", "current",
               "--evaluators", "weights", "--lr", "1.0"]
    for n in (1, 2):
        code, out, err = cli("run", *tiny_args(tiny_plugin, n, *options), "--out", tmp_path / f"t{n}")
        assert code == 0, err
    two = json.loads((tmp_path / "t2" / "results.json").read_text())
    one = json.loads((tmp_path / "t1" / "results.json").read_text())

    registry = Registry(build_manager([tiny_plugin]))
    stream = registry.get("stream", "tiny").factory(StreamContext(seed=0, scenario="domain", data_root=tmp_path),
                                                    n_experiences=2, train_size=64)
    model = registry.get("architecture", "mlp").factory((4,), 2, False, widths=[8], activation="relu")

    def accuracy_on(state, experience) -> float:
        model.load_state_dict(state)
        x, y = zip(*[(s[0], s[1]) for s in stream.benchmark.train_stream[experience].dataset])
        with torch.no_grad():
            return float((model(torch.stack(x)).argmax(1) == torch.tensor(y)).float().mean())

    after_first = torch.load(tmp_path / "t1" / "model.pt", weights_only=True)
    assert two["online_accuracy"][1] == pytest.approx(accuracy_on(after_first, 1))
    assert one["online_accuracy"][0] == two["online_accuracy"][0]
    # and it is not the accuracy after the update (the test must be able to fail)
    after_second = torch.load(tmp_path / "t2" / "model.pt", weights_only=True)
    assert accuracy_on(after_second, 1) != accuracy_on(after_first, 1)
    assert two["evaluation"] == {"protocol": "current", "measured_cells": 2}
    assert two["accuracy_matrix"][0][1] is None and two["accuracy_matrix"][1][0] is None
    assert set(two["summary_unavailable"]) >= {"average_accuracy", "forgetting", "bwt"}


@pytest.mark.parametrize("name", ["seen", "every:2", "full"])
def test_the_runner_measures_exactly_the_protocols_cells(cli, tiny_plugin, tmp_path, name):
    code, out, err = cli("run", *tiny_args(tiny_plugin, 5, "--evaluators", "weights", "--evaluation", name),
                         "--out", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    protocol = parse(name)
    assert [[j for j, v in enumerate(row) if v is not None] for row in result["accuracy_matrix"]] == \
        [protocol.columns(i, 5) for i in range(5)]
    assert result["evaluation"] == {"protocol": name, "measured_cells": protocol.measured_cells(5)}
    assert set(result["summary_sources"]) == set(result["summary"])
    assert ("forgetting" in result["summary"]) == (name == "full")
    assert "bwt" in result["summary"] and "average_accuracy" in result["summary"]


@pytest.mark.parametrize("every", [1, 2])
def test_a_current_run_resumes_to_the_uninterrupted_result(cli, tiny_plugin, tmp_path, every):
    args = [*tiny_args(tiny_plugin, 5), "--plugin", str(FIXTURE_PLUGINS / "dies_before_third.py"),
            "--strategy", "replay+dies_before_third", "--strategy-option", "replay.mem_size=6",
            "--evaluation", "current", "--seed", "3", "--checkpoint-every", str(every)]
    code, out, err = cli("run", *args, "--out", tmp_path / "whole")
    assert code == 0, err
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    killed = tmp_path / "killed"
    process = subprocess.run([sys.executable, "-m", "collapsebench.cli", "run", *args, "--out", str(killed)],
                             cwd=REPO, capture_output=True, text=True, env={**os.environ, "COLLAPSEBENCH_TEST_KILL": "1"})
    assert process.returncode == 9, process.stderr
    journal = killed / "journal.jsonl"
    assert journal.read_text().count("\n") == 2
    original = journal.read_bytes()
    at = original.index(b'"online_accuracy":0.') + len(b'"online_accuracy":0.')
    digit = b"1" if original[at:at + 1] != b"1" else b"2"
    journal.write_bytes(original[:at] + digit + original[at + 1:])  # same length, another value
    code, out, err = cli("run", "--resume", killed)
    assert code == 2 and "changed after its checkpoint" in err  # an edited journal is not read into results
    journal.write_bytes(original)
    code, out, err = cli("run", "--resume", killed)
    assert code == 0, err
    assert "Resuming after experience 2 of 5" in out
    resumed = json.loads((killed / "results.json").read_text())
    for key in ("accuracy_matrix", "online_accuracy", "evaluation", "summary", "summary_unavailable", "metrics"):
        assert resumed[key] == whole[key], key
    assert not (killed / "journal.jsonl").exists() and not (killed / "checkpoint.pkl").exists()


def test_checkpoint_cadence_counts_experiences_and_seconds():
    from collapsebench.checkpoint import Cadence

    now = [0.0]
    cadence = Cadence(every=2, seconds=5.0, clock=lambda: now[0])
    written = []
    for done, seconds_taken in enumerate([1, 1, 1, 1, 4, 1, 1, 9, 1, 1], start=1):
        now[0] += seconds_taken  # the experience's training and evaluation
        if cadence.due(done):
            written.append(done)
            cadence.saved()
    # every second experience, and only once 5 s passed since the last checkpoint (or the start)
    assert written == [6, 8]  # 10: only 2 s after the checkpoint at 8
    assert [d for d in range(1, 11) if Cadence(every=3).due(d)] == [3, 6, 9]  # seconds=0: no minimum


def test_checkpoint_seconds_decides_only_when_checkpoints_are_written(cli, tiny_plugin, tmp_path, monkeypatch):
    from collapsebench import checkpoint

    saved = []
    real_save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda strategy, run_dir, progress: saved.append(
        progress["experiences_done"]) or real_save(strategy, run_dir, progress))
    results = {}
    for seconds in ("0", "1e6"):
        saved.clear()
        code, out, err = cli("run", *tiny_args(tiny_plugin, 4, "--seed", "5", "--checkpoint-seconds", seconds),
                             "--out", tmp_path / seconds)
        assert code == 0, err
        results[seconds] = (list(saved), json.loads((tmp_path / seconds / "results.json").read_text()))
    assert results["0"][0] == [1, 2, 3] and results["1e6"][0] == []
    for key in ("accuracy_matrix", "online_accuracy", "summary", "metrics"):
        assert results["0"][1][key] == results["1e6"][1][key], key
    assert results["1e6"][1]["config"]["checkpoint_seconds"] == 1e6


def test_a_long_stream_keeps_per_experience_work_flat(cli, tiny_plugin, tmp_path, monkeypatch):
    """300 tiny experiences under ``current``: Avalanche's reported metrics, the checkpoint's progress
    and the gathered test tensors stay the same size from the first experience to the last."""
    from collapsebench import checkpoint, runner
    from collapsebench.fastdata import TensorBatchesPlugin

    reported, progress_sizes, cached = [], [], []
    real_row, real_save = runner.accuracy_row, checkpoint.save

    def counting_row(results, columns):
        reported.append(len(results))
        return real_row(results, columns)

    def measuring_save(strategy, run_dir, progress):
        progress_sizes.append(len(pickle.dumps(progress)))
        (swap,) = [p for p in strategy.plugins if isinstance(p, TensorBatchesPlugin)]  # the fixed-sample path is on
        cached.append(len(swap._gathered))
        real_save(strategy, run_dir, progress)

    monkeypatch.setattr(runner, "accuracy_row", counting_row)
    monkeypatch.setattr(checkpoint, "save", measuring_save)
    code, out, err = cli("run", *tiny_args(tiny_plugin, 30, "--evaluators", "", "--checkpoint-every", "7"),
                         "--out", tmp_path / "sparse")
    assert code == 0, err
    assert len(progress_sizes) == 4  # after experiences 7, 14, 21 and 28
    progress_sizes.clear(), cached.clear(), reported.clear()
    started = time.perf_counter()
    code, out, err = cli("run", *tiny_args(tiny_plugin, 300, "--evaluators", "weights", "--evaluation", "current"),
                         "--out", tmp_path / "long")
    elapsed = time.perf_counter() - started
    assert code == 0, err
    result = json.loads((tmp_path / "long" / "results.json").read_text())
    assert result["evaluation"] == {"protocol": "current", "measured_cells": 300}
    assert len(result["online_accuracy"]) == 300 and len(result["summary"]["new_task_accuracy"]) == 300
    assert len(reported) == 300 and max(reported) == reported[0]
    assert max(cached) == 1  # the latest test experience only
    assert progress_sizes[-1] <= progress_sizes[0] + 200  # timings' digits, not the records so far
    assert elapsed < 120, f"300 tiny experiences took {elapsed:.0f} s"
