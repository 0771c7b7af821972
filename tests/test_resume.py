"""Runs survive interruption: a run killed after its second experience resumes to the same result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import FIXTURE_PLUGINS, QUICK, REPO

PLUGIN = str(FIXTURE_PLUGINS / "dies_before_third.py")
# replay: a strategy with state (its buffer) that the checkpoint must carry over.
ARGS = ["--plugin", PLUGIN, "--strategy", "replay+dies_before_third", "--strategy-option", "replay.mem_size=100",
        "--evaluators", "weights,activations,cka",
        *QUICK, "--seed", "7"]


def test_killed_run_resumes_to_the_uninterrupted_result(cli, tmp_path):
    code, out, err = cli("run", *ARGS, "--out", tmp_path / "whole")
    assert code == 0, err
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert not (tmp_path / "whole" / "checkpoint.pkl").exists()  # removed once the run is complete

    killed = tmp_path / "killed"
    process = subprocess.run(
        [sys.executable, "-m", "collapsebench.cli", "run", *ARGS, "--out", str(killed)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "COLLAPSEBENCH_TEST_KILL": "1"},
    )
    assert process.returncode == 9, process.stderr
    assert not (killed / "results.json").exists()
    assert (killed / "checkpoint.pkl").exists()

    code, out, err = cli("run", "--resume", killed)
    assert code == 0, err
    assert "Resuming after experience 2 of 5" in out
    resumed = json.loads((killed / "results.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["summary"] == whole["summary"]
    assert resumed["metrics"] == whole["metrics"]

    code, out, err = cli("run", "--resume", killed)
    assert code == 0 and "already complete" in out


@pytest.mark.parametrize("extra, message", [(["--seed", "3"], "drop --seed"), ([], "not a collapsebench run directory")])
def test_resume_refuses_what_it_cannot_honour(cli, tmp_path, extra, message):
    code, out, err = cli("run", "--resume", tmp_path, *extra)
    assert code == 2 and message in err


def test_ctrl_c_stops_at_a_safe_point_and_leaves_a_partial_result(tmp_path):
    """A real SIGINT mid-run: the process exits 130 promptly with a complete partial results.json."""
    import signal
    import time

    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "collapsebench.cli", "run", "--epochs", "200", "--probe-size", "100",
         "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    for line in process.stdout:  # wait until the second experience is under way
        lines.append(line)
        if line.startswith("experience 2/5"):
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the run did not stop within 90 s of Ctrl-C:\n" + "".join(lines))
    assert process.returncode == 130, "".join(lines) + rest
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "partial"
    assert len(result["accuracy_matrix"]) == 1
    assert (out / "checkpoint.pkl").exists()  # so that --resume can continue it
    assert "collapsebench run --resume" in rest
