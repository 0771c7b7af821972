"""Files from someone else (issue 17): loading a run directory never executes code by surprise.

A planted checkpoint.pkl carries a pickle whose ``__reduce__`` writes a marker file; the marker
appearing means the payload ran.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
from pathlib import Path

import pytest

from collapsebench import signing
from collapsebench.checkpoint import CHECKPOINT_FILE, CONFIG_FILE, check_trusted
from collapsebench.config import build_config
from collapsebench.errors import CollapsebenchError
from conftest import REPO


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the payload ran"))


def planted_run(tmp_path: Path) -> tuple[Path, Path]:
    run_dir, marker = tmp_path / "run", tmp_path / "MARKER"
    run_dir.mkdir()
    (run_dir / CONFIG_FILE).write_text(json.dumps(build_config({"out": str(run_dir)}).to_dict()))
    (run_dir / CHECKPOINT_FILE).write_bytes(pickle.dumps({"strategy": Payload(marker)}))
    return run_dir, marker


def test_the_payload_is_real(tmp_path):
    """Guards the other tests: unpickling the planted file does run its payload."""
    run_dir, marker = planted_run(tmp_path)
    pickle.loads((run_dir / CHECKPOINT_FILE).read_bytes())
    assert marker.read_text() == "the payload ran"


def test_resume_refuses_a_planted_checkpoint(cli, tmp_path):
    run_dir, marker = planted_run(tmp_path)
    code, out, err = cli("run", "--resume", run_dir)
    assert code == 2, err
    assert "carries no signature from this installation" in err
    assert "--trust-checkpoint" in err and "Traceback" not in err
    assert not marker.exists()
    assert (run_dir / CHECKPOINT_FILE).exists()  # refused, not deleted: it is the user's to judge


def test_a_checkpoint_altered_after_signing_is_refused(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    tmp = tmp_path / "new.tmp"
    tmp.write_bytes(pickle.dumps({"experiences_done": 1}))
    signing.install(tmp, path)
    check_trusted(tmp_path)  # signed by this installation: accepted
    marker = tmp_path / "MARKER"
    path.write_bytes(pickle.dumps({"strategy": Payload(marker)}))
    with pytest.raises(CollapsebenchError, match="does not match its signature"):
        check_trusted(tmp_path)
    check_trusted(tmp_path, trust=True)  # the user's explicit word
    assert not marker.exists()


def test_a_signature_file_copied_from_elsewhere_does_not_help(tmp_path, monkeypatch):
    """A signature is only as good as the key: one made under another user's key is refused."""
    tmp = tmp_path / "new.tmp"
    tmp.write_bytes(b"checkpoint bytes")
    monkeypatch.setenv(signing.HOME_ENV, str(tmp_path / "someone-else"))
    signing.install(tmp, tmp_path / CHECKPOINT_FILE)
    monkeypatch.undo()
    with pytest.raises(CollapsebenchError, match="does not match its signature"):
        check_trusted(tmp_path)


def test_the_key_is_private_and_lives_outside_run_directories(tmp_path, monkeypatch, private_signing_key):
    assert signing.key_path().parent == private_signing_key  # the suite never writes the real home
    monkeypatch.setenv(signing.HOME_ENV, str(tmp_path / "home"))
    first = signing.digest(Path(__file__))
    key = tmp_path / "home" / signing.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert signing.digest(Path(__file__)) == first  # created once, then reused
    monkeypatch.delenv(signing.HOME_ENV)
    assert signing.key_path() == Path.home() / ".config" / "collapsebench" / signing.KEY_FILE


def test_an_unreadable_key_is_a_message(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(signing.HOME_ENV, str(blocker / "below"))
    with pytest.raises(CollapsebenchError, match="signing key .* could not be read or created"):
        signing.digest(Path(__file__))


def test_sweep_resume_fails_the_job_with_the_message(tmp_path):
    from collapsebench.sweep.work import FAILED, run_job
    from collapsebench.sweep.grid import Job

    run_dir, marker = planted_run(tmp_path)
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    job = Job(track="t", strategy="naive", seed=0, run_dir=str(run_dir), config=config, identity={}, resume=True)
    outcome = run_job(job)
    assert outcome.status == FAILED
    assert "carries no signature from this installation" in outcome.error
    assert not marker.exists()


def test_torch_files_are_read_with_weights_only(tmp_path):
    """No product code may read a torch file in a way that can run a pickled payload."""
    import torch

    marker = tmp_path / "MARKER"
    torch.save({"weights": torch.zeros(2), "payload": Payload(marker)}, tmp_path / "model.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "model.pt", weights_only=True)
    assert not marker.exists()
    unsafe = []
    for folder in ("collapsebench", "plugins", "benchmarks"):
        for source in sorted((REPO / folder).rglob("*.py")):
            for call in re.findall(r"torch\.load\([^)]*\)", source.read_text()):
                if "weights_only=True" not in call:
                    unsafe.append(f"{source.relative_to(REPO)}: {call}")
    assert not unsafe, unsafe


@pytest.mark.slow
def test_trust_checkpoint_resumes_an_unsigned_real_checkpoint(cli, tmp_path):
    """A checkpoint from another machine (no signature here) resumes only with --trust-checkpoint."""
    import subprocess
    import sys

    from conftest import FIXTURE_PLUGINS

    run_dir = tmp_path / "run"
    process = subprocess.run(
        [sys.executable, "-m", "collapsebench.cli", "run", "--plugin", str(FIXTURE_PLUGINS / "dies_before_third.py"),
         "--strategy", "naive+dies_before_third", "--epochs", "1", "--probe-size", "100", "--out", str(run_dir)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "COLLAPSEBENCH_TEST_KILL": "1"},
    )
    assert process.returncode == 9, process.stderr
    signing.signature_path(run_dir / CHECKPOINT_FILE).unlink()
    code, out, err = cli("run", "--resume", run_dir)
    assert code == 2 and "carries no signature" in err
    code, out, err = cli("run", "--resume", run_dir, "--trust-checkpoint")
    assert code == 0, err
    assert "Resuming after experience 2" in out
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"


def test_a_plain_sweep_over_a_planted_checkpoint_runs_no_payload(cli, tmp_path):
    """The sweep finds the checkpoint, tries to resume it, and fails that job with the message."""
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry
    from collapsebench.sweep.grid import build_jobs
    from collapsebench.tracks import get_track

    manager = build_manager([])
    track = get_track(manager, "split-digits-mlp")
    (job,) = build_jobs(manager, Registry(manager), track, ["naive"], [0], tmp_path / "runs", [], {}, [])
    run_dir, marker = Path(job.run_dir), tmp_path / "MARKER"
    run_dir.mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps(job.config))
    (run_dir / CHECKPOINT_FILE).write_bytes(pickle.dumps({"strategy": Payload(marker)}))
    code, out, err = cli("sweep", "--track", "split-digits-mlp", "--strategies", "naive", "--seeds", "0",
                         "--workers", "1", "--out", tmp_path / "runs")
    assert "1 from a checkpoint" in out, out + err
    assert code == 1, out + err
    assert "carries no signature from this installation" in (run_dir / "error.json").read_text()
    assert not marker.exists()
