"""End-to-end runs through the CLI on split-digits."""

from __future__ import annotations

import json
import re

import pytest

from collapsebench.metrics.accuracy import bwt, forgetting
from conftest import FIXTURE_PLUGINS, QUICK, REPO


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default run (smaller probe set) shared by the assertions below."""
    from collapsebench.cli import main

    run_dir = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", "--probe-size", "200", "--out", str(run_dir)]) == 0
    return run_dir, json.loads((run_dir / "results.json").read_text())


def test_accuracy_matrix_shape_and_ranges(default_run):
    _, result = default_run
    matrix = result["accuracy_matrix"]
    assert result["status"] == "complete"
    assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
    assert all(0.0 <= v <= 1.0 for row in matrix for v in row)
    # Each experience is learned when it is trained: above chance (0.5) on its two classes.
    diagonal = [matrix[i][i] for i in range(5)]
    assert min(diagonal) > 0.5 and sum(diagonal) / 5 > 0.8


def test_summary_agrees_with_the_matrix(default_run):
    _, result = default_run
    matrix, summary = result["accuracy_matrix"], result["summary"]
    assert summary["average_accuracy"] == pytest.approx(sum(matrix[-1]) / 5)
    # recomputed here by hand, independently of collapsebench.metrics.accuracy
    by_hand = [max(matrix[i][j] for i in range(4)) - matrix[4][j] for j in range(4)]
    assert summary["forgetting"] == pytest.approx(sum(by_hand) / 4)
    assert summary["bwt"] == pytest.approx(sum(matrix[4][j] - matrix[j][j] for j in range(4)) / 4)
    assert summary["forgetting"] == pytest.approx(forgetting(matrix))
    assert summary["bwt"] == pytest.approx(bwt(matrix))


def test_results_record_config_environment_metrics_timing(default_run):
    run_dir, result = default_run
    assert result["schema_version"] == 1
    config = result["config"]
    assert config["stream"] == "split-digits" and config["model"] == "mlp" and config["strategy"] == "naive"
    assert {p["name"] for p in config["plugins"]} >= {"builtin_strategies", "builtin_streams"}
    assert all(p["version"] for p in config["plugins"])
    assert {"python", "torch", "avalanche"} <= set(result["environment"])
    taps = [t["name"] for t in result["taps"]]
    records = result["metrics"]
    for experience in range(5):
        for kind in ("weight", "activation"):
            layers = {r["layer"] for r in records
                      if (r["name"], r["kind"], r["experience"]) == ("erank", kind, experience)}
            assert layers == set(taps)
    assert all(r["value"] >= 1.0 - 1e-6 for r in records if r["name"] == "erank")
    assert result["probe"]["size"] == 200
    assert {"train", "evaluate", "evaluators", "total"} <= set(result["timing"])
    assert (run_dir / "model.pt").stat().st_size > 0


def test_tensorboard_events_hold_accuracy_and_erank(default_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, result = default_run
    events = EventAccumulator(str(run_dir / "split-digits-mlp-naive-seed0"), size_guidance={"scalars": 0}).Reload()
    tags = events.Tags()["scalars"]
    assert any(t.startswith("Top1_Acc_Exp/eval_phase/test_stream") for t in tags)
    first_tap = result["taps"][0]["name"]
    assert f"erank/weight/{first_tap}" in tags and f"erank/activation/{first_tap}" in tags
    values = [e.value for e in events.Scalars(f"erank/activation/{first_tap}")]
    recorded = [r["value"] for r in result["metrics"]
                if (r["name"], r["kind"], r["layer"]) == ("erank", "activation", first_tap)]
    assert values == pytest.approx(recorded, rel=1e-5)


def test_tensorboard_names_the_run_wherever_it_is_pointed(default_run):
    """Event files in the run directory itself would be the run "." of `tensorboard --logdir RUN_DIR`."""
    from tensorboard_view import runs

    run_dir, _ = default_run
    assert runs(run_dir) == ["split-digits-mlp-naive-seed0"]
    assert runs(run_dir.parent) == ["out/split-digits-mlp-naive-seed0"]
    assert [p.name for p in run_dir.glob("events.out.tfevents.*")] == []


def test_custom_scalars_name_every_line_by_its_layer(default_run):
    """What the Custom Scalars tab shows: each chart's lines, named "<tag> (<run>)" by TensorBoard."""
    from tensorboard_view import chart_lines

    from collapsebench.report.tensorboard import PER_EXPERIENCE_CATEGORY

    run_dir, result = default_run
    taps = [t["name"] for t in result["taps"]]
    lines = chart_lines(run_dir)
    by_layer = {key: names for key, names in lines.items()
                if key[0].startswith("collapse: ") or key[0] == PER_EXPERIENCE_CATEGORY and " by layer: " in key[1]}
    assert len(by_layer) >= 20 and all(lines.values())
    for (category, title), names in by_layer.items():
        assert len(names) == len(set(names))
        tags = [name.removesuffix(" (split-digits-mlp-naive-seed0)") for name in names]
        assert all(tag != name for tag, name in zip(tags, names)), names  # the run, by name
        assert sorted(tag.rsplit("/", 1)[1] for tag in tags) == sorted(taps), (title, names)  # one line per layer
        if category == PER_EXPERIENCE_CATEGORY:
            assert title.endswith(f" by layer: {', '.join(taps)}")
    (accuracy,) = [names for (_, title), names in lines.items() if title.startswith("test accuracy after each")]
    assert sorted(accuracy) == sorted([f"per_experience/accuracy/test_exp{j} (split-digits-mlp-naive-seed0)"
                                       for j in range(5)] + ["per_experience/accuracy/mean_seen (split-digits-mlp-naive-seed0)"])


def test_same_seed_same_accuracy_matrix(default_run, cli, tmp_path):
    _, first = default_run
    code, out, err = cli("run", "--probe-size", "200", "--out", tmp_path / "again")
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["accuracy_matrix"] == first["accuracy_matrix"]


def test_readme_example_plugin_runs(cli, tmp_path):
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- example-plugin: (\S+) -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "the README must carry the example plugin"
    path = tmp_path / match.group(1)
    path.write_text(match.group(2))
    code, out, err = cli("run", "--plugin", path, "--strategy", "my_strategy", "--strategy-option", "noise=0.02",
                         *QUICK, "--evaluators", "", "--out", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["config"]["strategy"] == "my_strategy"
    assert result["config"]["resolved_options"]["strategy"]["my_strategy"] == {"noise": 0.02}
    assert any(p["name"] == "my_strategy" and p["source"] == "file" for p in result["config"]["plugins"])


def test_composed_strategy_and_toml_config(cli, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'strategy = "replay+lwf"\nepochs = 1\nprobe_size = 100\nevaluators = []\n'
        "[strategy_options.replay]\nmem_size = 50\n"
    )
    code, out, err = cli("run", "--config", config, "--seed", "3", "--out", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    resolved = result["config"]["resolved_options"]["strategy"]
    assert resolved["replay"]["mem_size"] == 50 and resolved["lwf"]["alpha"] == 1.0
    assert result["config"]["seed"] == 3


def test_interrupted_run_writes_a_complete_partial_result(cli, tmp_path):
    code, out, err = cli("run", "--plugin", FIXTURE_PLUGINS / "interrupting.py", "--strategy", "interrupting",
                         *QUICK, "--out", tmp_path / "run")
    assert code == 130
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["status"] == "partial"
    assert len(result["accuracy_matrix"]) == 1  # experience 2 was interrupted before its evaluation
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--strategy", "replya"], "Did you mean 'replay'?"),
        (["--model", "mpl"], "Did you mean 'mlp'?"),
        (["--evaluators", "erank,eranks"], "Unknown evaluator 'eranks'"),
        (["--epochs", "0"], "'epochs': expected at least 1"),
        (["--lr", "-1"], "'lr': expected a positive number"),
        (["--device", "gpu"], "device must be cpu"),
        (["--strategy", "replay", "--strategy-option", "mem_size=lots"], "Bad value for option 'mem_size'"),
        (["--strategy", "replay", "--strategy-option", "memsize=10"], "Did you mean 'mem_size'?"),
        (["--scenario", "domain"], "supports the scenarios class, task"),
        (["--strategy", "exploding", "--plugin", str(FIXTURE_PLUGINS / "failing_factory.py")],
         "strategy 'exploding' (from collapsebench plugin 'failing_factory') failed to build"),
    ],
)
def test_bad_input_gets_a_clear_message_and_exit_2(cli, tmp_path, args, expected):
    code, out, err = cli("run", *QUICK, *args, "--out", tmp_path / "run")
    assert code == 2
    assert expected in err
    assert "Traceback" not in err or "failed to build" in expected
    assert not (tmp_path / "run" / "results.json").exists()


def test_bad_toml_is_explained(cli, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("epochs = 'three'\n")
    code, out, err = cli("run", "--config", config)
    assert code == 2 and "'epochs' must be int" in err
    config.write_text("epoch = 3\n")
    code, out, err = cli("run", "--config", config)
    assert code == 2 and "Did you mean 'epochs'?" in err
