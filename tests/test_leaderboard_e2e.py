"""End to end: train a small split-digits track, submit it, verify it by re-running a seed, and
show that tampered submissions (edited file, consistently faked results, changed strategy
source) fail."""

from __future__ import annotations

import json
import textwrap

import pytest

from collapsebench.errors import CollapsebenchError
from collapsebench.leaderboard import hashing
from collapsebench.leaderboard.submission import read_submission
from collapsebench.leaderboard.verify import verify
from collapsebench.metrics.accuracy import accuracy_summaries

pytestmark = pytest.mark.slow

PLUGIN = '''
from pathlib import Path

from collapsebench import Strategy, StrategyParts, hookimpl


def _build(context):
    return StrategyParts()  # plain SGD


@hookimpl
def collapsebench_strategies():
    return [Strategy("tiny_naive", "naive SGD, from a file plugin whose source can be changed", _build)]


@hookimpl
def collapsebench_track_dirs():
    return [Path(__file__).parent / "tracks"]
'''

TRACK = """
[track]
description = "split-digits, a budget small enough for a test"
seeds = [0, 1]
[run]
stream = "split-digits"
model = "mlp"
model_options = { widths = [32, 32] }
epochs = 1
batch_size = 32
probe_size = 100
evaluators = ["activations"]
"""


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    from collapsebench.cli import main

    root = tmp_path_factory.mktemp("e2e")
    (root / "tracks").mkdir()
    (root / "tracks" / "tiny-digits.toml").write_text(textwrap.dedent(TRACK))
    plugin = root / "tiny_plugin.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    assert main(["run", "--plugin", str(plugin), "--track", "tiny-digits", "--strategy", "tiny_naive",
                 "--out", str(root / "runs")]) == 0
    assert main(["submit", str(root / "runs" / "seed0"), str(root / "runs" / "seed1"),
                 "--board", str(root / "board"), "--author", "test"]) == 0
    path = root / "board" / "submissions" / "tiny-digits" / "tiny_naive.json"
    return root, plugin, path


def test_a_submission_verifies_by_re_running_a_seed(submitted, cli):
    root, plugin, path = submitted
    submission = read_submission(path)
    assert submission["runs"][1]["summary"]["capacity_retention"] > 0
    code, out, _ = cli("leaderboard", "validate", path)
    assert code == 1 and "no installed track is named 'tiny-digits'" in out  # validating runs no plugin the file names
    code, out, _ = cli("leaderboard", "validate", path, "--plugin", plugin)
    assert code == 0, out
    code, out, err = cli("verify", path, "--seed", "1")
    assert code == 2 and f"file {plugin}" in out and "--trust" in err  # it names a plugin file: asks first
    code, out, err = cli("verify", path, "--seed", "1", "--trust")
    assert code == 0, out + err
    assert "seed 1: verified" in out
    assert json.loads(path.with_name("tiny_naive.verification").read_text())["records"][0]["seed"] == 1
    code, out, _ = cli("leaderboard", "--board", root / "board", "--track", "tiny-digits")
    assert code == 0 and "tiny_naive" in out and "seed 1, 20" in out


def test_an_edited_file_fails_validation_and_verification(submitted, tmp_path, cli):
    _, _, path = submitted
    edited = json.loads(path.read_text())
    edited["runs"][0]["accuracy_matrix"][-1][0] = 1.0
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    assert cli("leaderboard", "validate", tmp_path / "edited.json", "--plugin", submitted[1])[0] == 1
    code, _, err = cli("verify", tmp_path / "edited.json")
    assert code == 2 and "content_hash" in err


def test_consistently_faked_results_fail_the_re_run(submitted, tmp_path):
    """A forger who fixes the summary and the hash passes validation, but not the re-run."""
    _, _, path = submitted
    faked = json.loads(path.read_text())
    run = faked["runs"][0]
    run["accuracy_matrix"][-1] = [min(1.0, value + 0.3) for value in run["accuracy_matrix"][-1]]
    # Every summary that validation recomputes from the matrix, so only the re-run can tell.
    run["summary"].update(accuracy_summaries(run["accuracy_matrix"], run.get("online_accuracy")).values)
    faked["content_hash"] = hashing.content_hash(faked)
    verdict = verify(faked, seed=0, echo=lambda *_: None)
    assert not verdict.passed
    assert any(d.field.startswith("accuracy_matrix[4]") and not d.within_tolerance for d in verdict.differences)
    assert "NOT verified" in verdict.describe()


def test_a_changed_strategy_source_refuses_to_verify(submitted):
    _, plugin, path = submitted
    original = plugin.read_text()
    try:
        plugin.write_text(original.replace("return StrategyParts()  # plain SGD", "return StrategyParts()  # changed"))
        with pytest.raises(CollapsebenchError, match="installed source of strategy 'tiny_naive' differs"):
            verify(read_submission(path), echo=lambda *_: None)
    finally:
        plugin.write_text(original)


def test_a_current_track_is_run_submitted_and_verified(submitted, cli):
    """The runner's sparse results.json goes through submit, validate, verify and the board as it is."""
    root, plugin, _ = submitted
    sparse = textwrap.dedent(TRACK).replace("[track]\n", '[track]\nrank = ["plasticity_retention", "capacity_retention"]\n')
    (root / "tracks" / "tiny-digits-current.toml").write_text(sparse.replace("[run]\n", '[run]\nevaluation = "current"\n'))
    out_dir = root / "current-runs"
    code, out, err = cli("run", "--plugin", plugin, "--track", "tiny-digits-current", "--strategy", "tiny_naive",
                         "--out", out_dir)
    assert code == 0, out + err
    code, out, err = cli("submit", out_dir / "seed0", out_dir / "seed1", "--board", root / "board", "--plugin", plugin)
    assert code == 0, out + err
    path = root / "board" / "submissions" / "tiny-digits-current" / "tiny_naive.json"
    submission = read_submission(path)
    run = submission["runs"][0]
    assert run["evaluation"]["protocol"] == "current" and [len(row) for row in run["accuracy_rows"]] == [1] * 5
    assert "forgetting" not in run["summary"] and "plasticity_retention" in run["summary"]
    code, out, err = cli("verify", path, "--seed", "0", "--plugin", plugin)
    assert code == 0 and "seed 0: verified" in out, out + err
    code, out, _ = cli("leaderboard", "--board", root / "board", "--track", "tiny-digits-current", "--plugin", plugin)
    assert code == 0 and "tiny_naive" in out and "plasticity retention" in out and "new-task accuracy" in out, out
