"""Experiment trackers: the collapsebench_loggers hook, and the built-in tensorboard, csv and
wandb loggers (W&B in its offline mode, read back from its local run directory)."""

from __future__ import annotations

import csv
import json
import struct
import sys

import pytest

SPY_PLUGIN = '''
from collapsebench import Logger, hookimpl

SEEN = {"names": set(), "closed": 0, "run_dir": None}


def _spy(context):
    from avalanche.logging import BaseLogger

    class Spy(BaseLogger):
        def log_single_metric(self, name, value, x_plot):
            SEEN["names"].add(name)

        def close(self):
            SEEN["closed"] += 1

    SEEN["run_dir"] = context.run_dir
    return Spy()


@hookimpl
def collapsebench_loggers():
    return [Logger("spy", "remembers every metric name it is given", _spy)]
'''


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One short run with the spy, csv and wandb (offline) loggers, and no TensorBoard."""
    from collapsebench.cli import main

    folder = tmp_path_factory.mktemp("loggers")
    plugin = folder / "spyplugin.py"
    plugin.write_text(SPY_PLUGIN)
    run_dir = folder / "run"
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(folder / "wandb"), "WANDB_SILENT": "true",
           "WANDB_CONFIG_DIR": str(folder / "wandb-config"), "WANDB_CACHE_DIR": str(folder / "wandb-cache")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        (folder / "wandb").mkdir()
        code = main(["run", "--plugin", str(plugin), "--logger", "spy,csv,wandb", "--epochs", "1",
                     "--probe-size", "100", "--evaluators", "weights", "--out", str(run_dir)])
    assert code == 0
    seen = sys.modules["collapsebench_user_plugin_spyplugin"].SEEN
    return run_dir, json.loads((run_dir / "results.json").read_text()), seen


def test_hook_loggers_receive_every_metric_and_are_closed(tracked_run):
    run_dir, result, seen = tracked_run
    assert seen["run_dir"] == run_dir and seen["closed"] == 1
    assert "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp004" in seen["names"]
    assert any(name.startswith("weight_erank") or "erank" in name for name in seen["names"]), sorted(seen["names"])
    assert result["config"]["loggers"] == ["spy", "csv", "wandb"]


def test_a_run_without_tensorboard_writes_no_event_files(tracked_run):
    run_dir, _, _ = tracked_run
    assert not list(run_dir.rglob("events.out.tfevents.*"))


def test_csv_logger_writes_avalanche_csv_files(tracked_run):
    run_dir, result, _ = tracked_run
    with open(run_dir / "csv" / "eval_results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows, "no evaluation rows"
    final = [r for r in rows if int(r["training_exp"]) == 4]
    assert len(final) == 5  # the last experience's row of the accuracy matrix, one row per test experience
    by_exp = {int(r["eval_exp"]): float(r["eval_accuracy"]) for r in final}
    assert by_exp == pytest.approx(dict(enumerate(result["accuracy_matrix"][-1])), abs=1e-4)


def wandb_records(path):
    """The protobuf records of an offline ``.wandb`` file: a 7-byte W&B header, then LevelDB's
    log format (32 KiB blocks of records, each with a 7-byte header: crc, length, type)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = struct.unpack("<HB", data[position + 4:position + 7])
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL or FIRST start a record
        if kind in (1, 4):  # FULL or LAST end it
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_logger_writes_an_offline_run(tracked_run):
    run_dir, result, _ = tracked_run
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(run_dir.rglob("*"))[:20]
    (log,) = runs[0].glob("run-*.wandb")  # the offline log that `wandb sync` uploads later
    assert log.name == f"run-{(run_dir / 'wandb-run-id.txt').read_text().strip()}.wandb"
    history, kinds = {}, set()
    for record in wandb_records(log):
        kinds.add(record.WhichOneof("record_type"))
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)  # newer wandb fills nested_key only
                history.setdefault(key, []).append(json.loads(item.value_json))
    assert "exit" in kinds  # the run was finished, not left open
    assert "erank/weight/fc1" in history  # the evaluators' values too, not only accuracy
    last_row = history["Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp004"]
    assert last_row[-1] == pytest.approx(result["accuracy_matrix"][-1][4], abs=1e-6)


def test_mlflow_logger_records_a_run_in_a_local_store(tmp_path):
    """Read back with MLflow's own client: the run's parameters, its metric history, its end."""
    pytest.importorskip("mlflow", reason="mlflow is not installed (it is in the dev group; outside it: uv sync --extra mlflow)")
    from mlflow.tracking import MlflowClient

    from collapsebench.cli import main

    run_dir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        code = main(["run", "--logger", "mlflow", "--epochs", "1", "--probe-size", "100", "--evaluators", "weights",
                     "--lr", "0.02", "--out", str(run_dir)])
    assert code == 0
    result = json.loads((run_dir / "results.json").read_text())
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    run = client.get_run((run_dir / "mlflow-run-id.txt").read_text().strip())
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.02" and run.data.params["strategy"] == "naive"
    history = client.get_metric_history(run.info.run_id, "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp004")
    assert history[-1].value == pytest.approx(result["accuracy_matrix"][-1][4], abs=1e-6)
    assert len(history) == 5  # one evaluation after each experience
    assert "erank/weight/fc1" in run.data.metrics
    assert not list(run_dir.rglob("events.out.tfevents.*"))


def test_an_unknown_logger_fails_before_training(cli, tmp_path):
    code, out, err = cli("run", "--logger", "tensorboard,nosuch", "--out", tmp_path / "run")
    assert code == 2
    assert "nosuch" in err and "tensorboard" in err and "wandb" in err
    assert not (tmp_path / "run").exists()


def test_loggers_are_listed(cli):
    code, out, _ = cli("list", "loggers")
    assert code == 0
    for name in ("tensorboard", "csv", "wandb", "mlflow"):
        assert name in out


def test_a_directory_with_an_earlier_runs_logs_is_refused_without_overwrite(cli, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stale = run_dir / "events.out.tfevents.1.old-host"
    stale.write_bytes(b"an earlier run's events")
    code, _, err = cli("run", "--out", run_dir)
    assert code == 2 and "events.out.tfevents.1.old-host" in err and "--overwrite" in err
    assert stale.exists()  # refused before anything was touched


def test_overwrite_clears_every_trackers_old_files(cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    (run_dir / "wandb" / "offline-run-old").mkdir(parents=True)
    (run_dir / "csv").mkdir()
    (run_dir / "csv" / "eval_results.csv").write_text("old\n")
    stale = run_dir / "events.out.tfevents.1.old-host"  # where runs before the per-run folder wrote them
    from torch.utils.tensorboard import SummaryWriter

    # An earlier run's events in its own folder (another seed: another name), and in the old place.
    for where in (run_dir / "split-digits-mlp-naive-seed7", run_dir / "split-digits-mlp-naive-seed0"):
        writer = SummaryWriter(str(where), filename_suffix=".old")
        writer.add_scalar("from_the_old_run", 1.0, 0)
        writer.close()
    stale.write_bytes(b"")
    code, _, err = cli("run", "--out", run_dir, "--overwrite", "--epochs", "1", "--probe-size", "100",
                       "--evaluators", "weights")
    assert code == 0, err
    assert not stale.exists() and not (run_dir / "wandb").exists() and not (run_dir / "csv").exists()
    assert not (run_dir / "split-digits-mlp-naive-seed7").exists()  # emptied, so removed
    events = EventAccumulator(str(run_dir / "split-digits-mlp-naive-seed0"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "from_the_old_run" not in tags and "per_experience/accuracy/mean_seen" in tags
    assert len(list(run_dir.rglob("events.out.tfevents.*"))) == 1


def test_a_folder_with_an_earlier_runs_events_is_refused_without_overwrite(cli, tmp_path):
    stale = tmp_path / "run" / "split-digits-mlp-replay-seed0" / "events.out.tfevents.1.old-host"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run's events")
    code, _, err = cli("run", "--out", tmp_path / "run")
    assert code == 2 and "split-digits-mlp-replay-seed0" in err and "--overwrite" in err
    assert stale.exists()
