"""Hostile runs (issue 17: divergence, plugin faults, signals, lost data, resume).

Runs use the default split-digits stream with one epoch, and real processes where a signal or
an exit code is the point.
"""

from __future__ import annotations

import json
import pickle
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FIXTURE_PLUGINS, REPO

HOSTILE = REPO / "tests" / "fixtures" / "hostile"
ONE_EPOCH = ["--epochs", "1", "--probe-size", "100"]


def spawn(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "collapsebench.cli", *map(str, args)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
    )


def wait_for(process, prefix: str) -> list[str]:
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return lines
    pytest.fail(f"never saw {prefix!r}:\n" + "".join(lines))


def test_divergence_stops_with_a_diverged_result(cli, tmp_path):
    """--lr inf is refused; a finite but absurd learning rate diverges within an experience."""
    code, out, err = cli("run", "--lr", "1e30", *ONE_EPOCH, "--out", tmp_path)
    assert code == 4, err
    assert "Training diverged in experience 1, iteration" in err and "Traceback" not in err
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "diverged"
    assert result["divergence"]["experience"] == 0 and result["divergence"]["iteration"] >= 1
    assert result["divergence"]["cause"] in ("loss",) or result["divergence"]["cause"].endswith(("weight", "bias"))
    assert result["accuracy_matrix"] == []  # no experience finished
    assert not (tmp_path / "checkpoint.pkl").exists() and not (tmp_path / "model.pt").exists()


def test_divergence_after_finished_experiences_keeps_them(cli, tmp_path, monkeypatch):
    """The guard itself: experiences that finished before the divergence stay in the result."""
    from collapsebench import divergence

    calls = {"n": 0}
    original = divergence._first_non_finite_parameter

    def fail_in_second_experience(model):
        calls["n"] += 1
        return "fake.weight" if calls["n"] > 4 else original(model)  # two checks per experience here

    monkeypatch.setattr(divergence, "_first_non_finite_parameter", fail_in_second_experience)
    code, out, err = cli("run", *ONE_EPOCH, "--out", tmp_path)
    assert code == 4, err
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "diverged" and result["divergence"]["cause"] == "fake.weight"
    finished = result["divergence"]["experience"]
    assert finished >= 1 and len(result["accuracy_matrix"]) == finished
    assert "(parameter fake.weight became NaN or infinite)" in err


def _guarded_strategy(**attributes):
    from types import SimpleNamespace

    return SimpleNamespace(**{"loss": torch.tensor(1.0), "model": torch.nn.Linear(2, 2), "retain_graph": False,
                              "clock": SimpleNamespace(train_exp_iterations=0),  # as Avalanche's clock counts
                              "experience": SimpleNamespace(current_experience=0), **attributes})


def _iterate(guard, strategy, iterations, losses=None):
    """Runs the guard's callback for the experience's ``iterations`` (1-based), with ``losses[i]`` at iteration i."""
    for iteration in iterations:
        strategy.loss = (losses or {}).get(iteration, torch.tensor(1.0))
        strategy.clock.train_exp_iterations = iteration - 1  # the clock counts after the guard
        guard.after_training_iteration(strategy)


@pytest.mark.parametrize("loss, diverged", [
    (torch.tensor(1.5), False), (torch.tensor(float("nan")), True), (torch.tensor([float("inf")]), True),
    (torch.tensor([1.0, 2.0]), False), (torch.tensor([1.0, float("nan")]), True),  # an unreduced loss
    (2.0, False), (None, False),  # not a tensor: nothing the guard can read
])
def test_the_guard_names_the_iteration_of_the_first_non_finite_loss_at_its_next_check(loss, diverged):
    from collapsebench import divergence

    every = divergence.LOSS_EVERY
    guard, strategy = divergence.DivergenceGuard(), _guarded_strategy()
    _iterate(guard, strategy, range(1, every), {5: loss, 9: torch.tensor(float("inf"))} if diverged else {5: loss})
    if diverged:
        with pytest.raises(divergence.TrainingDiverged) as raised:
            _iterate(guard, strategy, [every])
        assert raised.value.what == "loss" and raised.value.iteration == 5  # not 9, and not the check's 16
    else:
        _iterate(guard, strategy, [every])


def test_the_guard_checks_parameters_at_its_parameter_checks_and_at_the_end_of_an_epoch():
    from collapsebench import divergence

    every = divergence.PARAMETER_EVERY
    assert every % divergence.LOSS_EVERY == 0 and every > divergence.LOSS_EVERY
    guard, strategy = divergence.DivergenceGuard(), _guarded_strategy()
    with torch.no_grad():
        strategy.model.weight[0, 0] = float("nan")
    _iterate(guard, strategy, range(1, every))  # parameters are not read between, nor at the loss checks
    with pytest.raises(divergence.TrainingDiverged) as raised:
        _iterate(guard, strategy, [every])
    assert raised.value.what == "weight" and raised.value.iteration == every

    # An epoch that ends between checks: its losses and the parameters are read then.
    guard, strategy = divergence.DivergenceGuard(), _guarded_strategy()
    with torch.no_grad():
        strategy.model.weight[0, 0] = float("nan")
    _iterate(guard, strategy, range(1, 6))
    strategy.clock.train_exp_iterations = 5
    with pytest.raises(divergence.TrainingDiverged) as raised:
        guard.after_training_epoch(strategy)
    assert raised.value.what == "weight" and raised.value.iteration == 5

    guard, strategy = divergence.DivergenceGuard(), _guarded_strategy()
    _iterate(guard, strategy, range(1, 6), {3: torch.tensor(float("nan"))})
    strategy.clock.train_exp_iterations = 5
    with pytest.raises(divergence.TrainingDiverged) as raised:
        guard.after_training_epoch(strategy)
    assert raised.value.what == "loss" and raised.value.iteration == 3


def test_the_guard_keeps_no_graph():
    from collapsebench import divergence

    guard, strategy = divergence.DivergenceGuard(), _guarded_strategy()
    weight = torch.ones(2, requires_grad=True)
    strategy.loss = (weight * 2).sum()
    guard.after_training_iteration(strategy)
    assert not guard._losses[0].requires_grad and guard._losses[0].grad_fn is None
    assert guard.__getstate__()["_losses"] == []


def test_sweep_counts_a_diverged_job_as_finished(tmp_path):
    from collapsebench.config import identity_of
    from collapsebench.sweep.driver import plan
    from collapsebench.sweep.grid import Job, state_of

    config = {"strategy": "naive", "seed": 0, "lr": 1e30, "resolved_options": {"strategy": {"naive": {}}}}
    job = Job("t", "naive", 0, str(tmp_path), config, identity_of(config))
    (tmp_path / "results.json").write_text(json.dumps({"status": "diverged", "config": config}))
    assert state_of(job) == "diverged"
    to_run, done = plan([job])
    assert done == [job] and to_run == []


@pytest.mark.parametrize("spec, fragment", [
    (["--strategy", "listy"], "The strategy 'listy' (from collapsebench plugin 'shapes'): its factory returned list; "
                              "expected collapsebench.StrategyParts"),
    (["--evaluators", "nothing"], "The evaluator 'nothing' (from collapsebench plugin 'shapes'): its factory returned "
                                  "NoneType; expected a list of Avalanche metrics"),
])
def test_factories_of_the_wrong_shape(cli, tmp_path, spec, fragment):
    code, out, err = cli("run", "--plugin", HOSTILE / "shapes.py", *spec, *ONE_EPOCH, "--out", tmp_path / "run")
    assert code == 2 and fragment in err, err
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_plugin_raising_mid_training_is_named_and_keeps_the_partial_result(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "collapsebench.cli", "run", "--plugin", str(HOSTILE / "raises_midway.py"),
         "--strategy", "naive+raises_midway", *ONE_EPOCH, "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True,
    )
    assert process.returncode == 3, process.stderr
    err = process.stderr
    assert "collapsebench plugin 'raises_midway' raised during training: ZeroDivisionError" in err
    assert 'raises_midway.py", line' in err  # the plugin author's traceback is kept
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "failed" and result["error"]["plugin"] == "raises_midway"
    assert len(result["accuracy_matrix"]) == 1
    assert (tmp_path / "checkpoint.pkl").exists()


def test_plugin_stopping_the_run_with_a_message_keeps_the_partial_result(tmp_path):
    """A CollapsebenchError from a collapsebench plugin mid-training: its message, exit 2, the plugin
    named, no traceback (it is a message, not a bug), and the finished experience kept."""
    process = subprocess.run(
        [sys.executable, "-m", "collapsebench.cli", "run", "--plugin", str(HOSTILE / "refuses_midway.py"),
         "--strategy", "naive+refuses_midway", *ONE_EPOCH, "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True,
    )
    assert process.returncode == 2, process.stderr
    err = process.stderr
    assert ("collapsebench plugin 'refuses_midway' stopped the run before experience 2 finished: "
            "The replay buffer file /nowhere/buffer.npz is missing.") in err
    assert "holds the 1 finished experience(s)" in err and f"collapsebench run --resume {tmp_path}" in err
    assert "Traceback" not in err
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "failed" and len(result["accuracy_matrix"]) == 1
    assert result["error"] == {"plugin": "refuses_midway", "experience": 1, "user_error": True,
                               "message": "The replay buffer file /nowhere/buffer.npz is missing", "traceback": None}
    assert (tmp_path / "checkpoint.pkl").exists()


def test_collapsebench_failing_mid_training_keeps_what_was_measured(cli, tmp_path, monkeypatch):
    """collapsebench's own code failing after an experience finished (here: its evaluation of
    experience 2): the result is written with status "failed", then the error is raised as it is."""
    from collapsebench import runner

    calls = {"n": 0}
    real = runner.evaluate

    def fails_the_second_time(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("collapsebench's own bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", fails_the_second_time)
    with pytest.raises(ValueError, match="collapsebench's own bug"):
        cli("run", *ONE_EPOCH, "--out", tmp_path)
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "failed" and len(result["accuracy_matrix"]) == 1
    error = result["error"]
    assert error["plugin"] is None and error["experience"] == 1 and not error["user_error"]
    assert error["message"] == "ValueError: collapsebench's own bug" and "fails_the_second_time" in error["traceback"]


def test_sigterm_stops_at_a_safe_point_with_a_partial_result(tmp_path):
    """What SLURM, Kubernetes and `timeout` send: handled as Ctrl-C is, exit 143."""
    process = spawn("run", "--epochs", "200", "--probe-size", "100", "--out", tmp_path)
    lines = wait_for(process, "experience 2/5")
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    try:
        rest, _ = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the run did not stop within 90 s of SIGTERM:\n" + "".join(lines))
    assert process.returncode == 143, "".join(lines) + rest
    assert "stopped by SIGTERM" in rest and "Traceback" not in rest
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "partial" and len(result["accuracy_matrix"]) == 1
    assert (tmp_path / "checkpoint.pkl").exists()


# SIGINT's variant is slow-only: the same deferral as SIGTERM's, and Ctrl-C's own stop path is in
# tests/test_resume.py; each variant is a real run of 8-17 s.
@pytest.mark.parametrize("signum, code", [pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow),
                                          (signal.SIGTERM, 143)])
def test_a_signal_during_the_final_write_still_leaves_results_and_model(tmp_path, signum, code):
    process = spawn("run", "--plugin", HOSTILE / "slow_final_write.py", *ONE_EPOCH, "--out", tmp_path,
                    env={"HOSTILE_SLOW_WRITE": "1"})
    lines = wait_for(process, "WRITING RESULTS")
    process.send_signal(signum)
    rest, _ = process.communicate(timeout=90)
    assert process.returncode == code, "".join(lines) + rest
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "complete"
    assert (tmp_path / "model.pt").stat().st_size > 0


def test_failed_rerun_leaves_a_complete_run_untouched(cli, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = cli("run", *ONE_EPOCH, "--out", run_dir)
    assert code == 0, err
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    # With --overwrite, but data that is missing: the failure must come before anything is touched.
    code, out, err = cli("run", "--overwrite", "--stream", "split-mnist", "--data-root", tmp_path / "nothing",
                         *ONE_EPOCH, "--out", run_dir)
    assert code == 2 and "MNIST is not in the data root" in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before

    code, out, err = cli("run", "--overwrite", *ONE_EPOCH, "--seed", "1", "--out", run_dir)
    assert code == 0, err
    events = [p.relative_to(run_dir) for p in run_dir.rglob("events.out.tfevents.*")]
    assert len(events) == 1, events  # the old run's TensorBoard file went with it
    assert events[0].parent.name == "split-digits-mlp-naive-seed1"  # and its folder: the new run has a new name
    assert not (run_dir / "split-digits-mlp-naive-seed0").exists()
    assert json.loads((run_dir / "results.json").read_text())["config"]["seed"] == 1


def test_resume_refuses_an_edited_config(cli, tmp_path):
    killed = tmp_path / "killed"
    process = subprocess.run(
        [sys.executable, "-m", "collapsebench.cli", "run", "--plugin", str(FIXTURE_PLUGINS / "dies_before_third.py"),
         "--strategy", "naive+dies_before_third", *ONE_EPOCH, "--out", str(killed)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "COLLAPSEBENCH_TEST_KILL": "1"},
    )
    assert process.returncode == 9, process.stderr
    recorded = json.loads((killed / "config.json").read_text())
    (killed / "config.json").write_text(json.dumps({**recorded, "lr": 0.5, "seed": 3}))
    code, out, err = cli("run", "--resume", killed)
    assert code == 2, err
    assert "no longer matches the config its checkpoint was trained with (changed: lr, seed)" in err
    assert (killed / "checkpoint.pkl").exists()


def scalar_steps(run_dir) -> list[tuple[str, int]]:
    """(tag, step) of every summary value in every event file, layout excepted."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    seen = []
    for path in sorted(run_dir.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            seen += [(v.tag, event.step) for v in event.summary.value if v.tag != "custom_scalars__config__"]
    return seen


def test_resume_logs_no_scalar_twice_for_one_step(cli, tmp_path):
    """Interrupted after an epoch of experience 2 had been logged; resumed from the checkpoint of experience 1."""
    process = spawn("run", "--epochs", "3", "--probe-size", "100", "--evaluator-option", "weights.every_n_iterations=5",
                    "--out", tmp_path)
    lines = wait_for(process, "experience 2/5")
    lines += wait_for(process, "  epoch 2/3")
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=90)
    assert process.returncode == 130, "".join(lines) + rest
    before = scalar_steps(tmp_path)
    code, out, err = cli("run", "--resume", tmp_path)
    assert code == 0, err
    steps = scalar_steps(tmp_path)
    duplicated = {key for key in steps if steps.count(key) > 1}
    assert not duplicated, sorted(duplicated)[:10]
    # Both event files in the run's one folder: TensorBoard shows one run, by its name.
    assert [p.parent.name for p in tmp_path.rglob("events.out.tfevents.*")] == ["split-digits-mlp-naive-seed0"] * 2
    assert len(steps) > len(before)


def test_a_checkpoint_that_cannot_be_written_is_a_message(cli, tmp_path, monkeypatch):
    """A full disk fails in torch's zip writer with "unexpected pos": the user gets a message, not that."""
    import shutil

    from collapsebench import checkpoint

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint, "save", full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    code, out, err = cli("run", *ONE_EPOCH, "--out", tmp_path)
    assert code == 2, err
    assert "The checkpoint could not be written in" in err and "Only 0 MiB are free there" in err
    # The experience that finished before the checkpoint was due is kept.
    assert "The run stopped before experience 2 finished: " in err and "holds the 1 finished experience(s)" in err
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "failed" and len(result["accuracy_matrix"]) == 1
    assert result["error"]["plugin"] is None and result["error"]["user_error"]


def test_a_result_that_cannot_be_written_either_leaves_the_first_error(cli, tmp_path, monkeypatch):
    """The disk that failed the checkpoint refuses results.json too: the user sees the first error."""
    import errno

    from collapsebench import checkpoint, results

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_write_json = results.write_json

    def no_results_json(path, *args, **kwargs):
        if Path(path).name == results.RESULTS_FILE:
            full_disk()
        return real_write_json(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", full_disk)
    monkeypatch.setattr(results, "write_json", no_results_json)
    code, out, err = cli("run", *ONE_EPOCH, "--out", tmp_path)
    assert code == 2 and "The checkpoint could not be written in" in err and "Traceback" not in err
    assert not (tmp_path / "results.json").exists()


def test_held_signal_handlers_are_given_back():
    """A run that failed between its training block and its final write must not keep Ctrl-C."""
    from collapsebench.interrupts import StopAtSafePoint, deferred_interrupts, release_all

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    held = StopAtSafePoint()
    with deferred_interrupts(held, hold=True):
        pass
    assert signal.getsignal(signal.SIGINT) is not before[0]  # held for the final write
    with deferred_interrupts(StopAtSafePoint()):  # the next run releases it first
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with deferred_interrupts(StopAtSafePoint(), hold=True):
        pass
    release_all()  # what the CLI does once a command ends
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_the_interrupt_check_is_called_only_once_a_stop_is_requested():
    """The lean dispatch leaves the idle check out; a request (as the signal handler makes it)
    brings it back at the next event, so the run stops at the end of that very iteration."""
    from avalanche.core import SupervisedPlugin
    from avalanche.training.templates import SupervisedTemplate

    from collapsebench.dispatch import listeners, with_lean_dispatch
    from collapsebench.interrupts import StopAtSafePoint
    from test_lean_eval import tiny_train_stream

    stopper = StopAtSafePoint()
    iterations = []

    class RequestsAtTheThirdStep(SupervisedPlugin):
        def after_forward(self, strategy, **kwargs):
            iterations.append(strategy.clock.train_exp_iterations)
            if len(iterations) == 3:
                stopper.request(signal.SIGINT)

    model = torch.nn.Linear(3, 2)
    strategy = with_lean_dispatch(SupervisedTemplate)(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=1, train_epochs=1, device="cpu", plugins=[RequestsAtTheThirdStep(), stopper], evaluator=None)
    assert listeners([stopper], "after_training_iteration") == []
    with pytest.raises(KeyboardInterrupt):
        strategy.train(tiny_train_stream()[0])
    assert iterations == [0, 1, 2]  # stopped at the end of the iteration in which it was asked
    assert listeners([stopper], "after_training_iteration") == [stopper.after_training_iteration]
    assert pickle.loads(pickle.dumps(stopper)).requested  # the weak reference is not pickled
