"""collapsebench sweep: the grid, skipping finished jobs, failures, the process pool and Ray.

The end-to-end tests share one tiny track (split-digits, one epoch, no evaluators) and one
local sweep of 2 strategies x 2 seeds; each later sweep checks itself against that one.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import textwrap
from pathlib import Path

import pytest

from collapsebench.cli import main
from collapsebench.errors import CollapsebenchError
from collapsebench.manager import build_manager
from collapsebench.registry import Registry
from collapsebench.sweep.driver import plan
from collapsebench.sweep.grid import build_jobs, identity_of, parse_seeds, parse_strategies, state_of
from collapsebench.sweep.progress import SweepProgress
from collapsebench.sweep.work import DONE, FAILED, Outcome, collect_files, record_failure, write_files
from collapsebench.tracks import get_track
from conftest import FIXTURE_PLUGINS

TINY_TRACK = """
    [track]
    description = "split-digits, one epoch, accuracy only: sweep tests"
    seeds = [0, 1]

    [run]
    stream = "split-digits"
    model = "mlp"
    epochs = 1
    probe_size = 100
    evaluators = []
"""
GRID = [(strategy, seed) for strategy in ("naive", "replay") for seed in (0, 1)]


@pytest.fixture(scope="module")
def tiny_plugin(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tiny-track")
    (root / "tracks").mkdir()
    (root / "tracks" / "tiny.toml").write_text(textwrap.dedent(TINY_TRACK))
    plugin = root / "tiny_track.py"
    plugin.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from collapsebench import hookimpl

        @hookimpl
        def collapsebench_track_dirs():
            return [Path({str(root / "tracks")!r})]
    """))
    return str(plugin)


def sweep(*args) -> tuple[int, str]:
    """``collapsebench sweep ARGS`` in this process; (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["sweep", *map(str, args)])
    return code, out.getvalue()


def result_of(out: Path, strategy: str, seed: int) -> dict:
    return json.loads((out / "tiny" / strategy / f"seed{seed}" / "results.json").read_text())


@pytest.fixture(scope="module")
def local_sweep(tiny_plugin, tmp_path_factory):
    """One sweep on the process pool; the matrices are read at once, before later tests touch the files."""
    out = tmp_path_factory.mktemp("sweep") / "runs"
    code, stdout = sweep("-p", tiny_plugin, "--track", "tiny", "--strategies", "naive,replay", "--seeds", "0-1",
                         "--workers", "2", "--out", out)
    matrices = {job: result_of(out, *job)["accuracy_matrix"] for job in GRID}
    return code, stdout, out, matrices


# --- the grid ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,2,5", [0, 2, 5]),
                                         ("5-6,1, 6", [1, 5, 6])])
def test_seed_lists_and_ranges(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("4-2", "runs backwards"), ("a", "numbers and ranges"), ("1,,2", "numbers")])
def test_bad_seed_lists_are_explained(text, message):
    with pytest.raises(CollapsebenchError, match=message):
        parse_seeds(text)


@pytest.fixture(scope="module")
def registry_and_track(tiny_plugin):
    manager = build_manager([tiny_plugin])
    return manager, Registry(manager), get_track(manager, "tiny")


def jobs_for(registry_and_track, tmp_path, strategies=("naive", "replay"), seeds=(0, 1), options=(), **free):
    manager, registry, track = registry_and_track
    return build_jobs(manager, registry, track, list(strategies), list(seeds), tmp_path / "runs", [], free, list(options))


def test_all_means_every_registered_strategy(registry_and_track):
    _, registry, _ = registry_and_track
    assert parse_strategies("all", registry) == registry.names("strategy")
    assert parse_strategies("replay, naive", registry) == ["replay", "naive"]
    with pytest.raises(CollapsebenchError, match="more than once"):
        parse_strategies("naive,naive", registry)


def test_jobs_follow_the_track_protocol_and_lay_out_run_directories(registry_and_track, tmp_path):
    jobs = jobs_for(registry_and_track, tmp_path)
    assert [(job.strategy, job.seed) for job in jobs] == GRID
    assert [Path(job.run_dir) for job in jobs] == [
        (tmp_path / "runs" / "tiny" / s / f"seed{n}").resolve() for s, n in GRID]
    config = jobs[0].config
    assert (config["track"], config["stream"], config["epochs"], config["probe_size"], config["evaluators"]) == (
        "tiny", "split-digits", 1, 100, [])
    assert config["out"] == jobs[0].run_dir and Path(config["data_root"]).is_absolute()


def test_strategy_options_reach_only_the_strategies_that_have_them(registry_and_track, tmp_path):
    jobs = jobs_for(registry_and_track, tmp_path, strategies=("naive", "replay", "replay+lwf"),
                    options=[("replay.mem_size", 40), ("alpha", 2.0)])
    tables = {job.strategy: job.config["strategy_options"] for job in jobs if job.seed == 0}
    assert tables == {"naive": {}, "replay": {"replay": {"mem_size": 40}},
                      "replay+lwf": {"replay": {"mem_size": 40}, "lwf": {"alpha": 2.0}}}
    resolved = next(job for job in jobs if job.strategy == "replay").identity["resolved_options"]["strategy"]
    assert resolved["replay"]["mem_size"] == 40
    with pytest.raises(CollapsebenchError, match="applies to none"):
        jobs_for(registry_and_track, tmp_path, strategies=("naive",), options=[("mem_size", 40)])
    with pytest.raises(CollapsebenchError, match="Did you mean 'mem_size'"):
        jobs_for(registry_and_track, tmp_path, strategies=("replay",), options=[("replay.memsize", 40)])
    with pytest.raises(CollapsebenchError, match="Did you mean 'replay'"):
        jobs_for(registry_and_track, tmp_path, strategies=("replya",))


def fake_result(job, status="complete", **changes) -> None:
    """A results.json as the runner writes it: the job's config, its resolved options, a status."""
    config = {**job.config, **changes, "resolved_options": job.identity["resolved_options"],
              "plugins": [{"name": "builtin_streams"}]}
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps({"schema_version": 1, "status": status, "config": config}))


def test_a_job_is_done_only_when_a_complete_result_records_its_config(registry_and_track, tmp_path):
    job = jobs_for(registry_and_track, tmp_path, strategies=("replay",), seeds=(0,))[0]
    assert state_of(job) == "missing"
    fake_result(job, status="partial")
    assert state_of(job) == "partial"
    fake_result(job)
    assert state_of(job) == "complete"
    # Where the run lived, where its data came from and its thread count do not change the result ...
    fake_result(job, out="/elsewhere", data_root="/mnt/data", threads=8, checkpoint=False)
    assert state_of(job) == "complete"
    # ... its budget and its strategy's options do.
    fake_result(job, epochs=2)
    assert state_of(job) == "stale"
    options = json.loads(json.dumps(job.identity["resolved_options"]))
    options["strategy"]["replay"]["mem_size"] += 1
    (Path(job.run_dir) / "results.json").write_text(json.dumps(
        {"schema_version": 1, "status": "complete", "config": {**job.config, "resolved_options": options}}))
    assert state_of(job) == "stale"
    (Path(job.run_dir) / "results.json").write_text("{ truncated")
    assert state_of(job) == "missing"
    record_failure(job.run_dir, job, "RuntimeError: boom", "Traceback ...")
    assert state_of(job) == "failed"


def test_plan_skips_complete_jobs_and_resumes_checkpointed_ones(registry_and_track, tmp_path):
    from collapsebench.checkpoint import CHECKPOINT_FILE, CONFIG_FILE

    complete, checkpointed, other_config, fresh = jobs_for(registry_and_track, tmp_path)
    fake_result(complete)
    for job, epochs in ((checkpointed, 1), (other_config, 3)):
        Path(job.run_dir).mkdir(parents=True)
        (Path(job.run_dir) / CHECKPOINT_FILE).write_bytes(b"checkpoint")
        (Path(job.run_dir) / CONFIG_FILE).write_text(json.dumps({**job.config, "epochs": epochs, "out": "/moved"}))
    to_run, done = plan([complete, checkpointed, other_config, fresh])
    assert done == [complete]
    assert [(job.run_dir, job.resume) for job in to_run] == [
        (checkpointed.run_dir, True), (other_config.run_dir, False), (fresh.run_dir, False)]


def test_failure_record_and_files_carried_back_from_a_ray_node(registry_and_track, tmp_path):
    job = jobs_for(registry_and_track, tmp_path, seeds=(0,))[0]
    path = record_failure(job.run_dir, job, "RuntimeError: boom", "Traceback (most recent call last): ...")
    error = json.loads(path.read_text())
    assert (error["status"], error["error"], error["job"]["strategy"], error["job"]["seed"]) == (
        "failed", "RuntimeError: boom", "naive", 0)
    assert error["traceback"].startswith("Traceback")
    # A node without the driver's file system ran the job in scratch space and sends its files.
    scratch = tmp_path / "scratch"
    (scratch / "sub").mkdir(parents=True)
    (scratch / "results.json").write_text(json.dumps({"status": "complete", "config": {"out": str(scratch)}}))
    (scratch / "model.pt").write_bytes(b"\x00weights")
    (scratch / "sub" / "events").write_bytes(b"tb")
    write_files(job.run_dir, collect_files(scratch, job))
    run_dir = Path(job.run_dir)
    assert json.loads((run_dir / "results.json").read_text())["config"]["out"] == job.run_dir
    assert (run_dir / "model.pt").read_bytes() == b"\x00weights" and (run_dir / "sub" / "events").read_bytes() == b"tb"
    assert not (run_dir / "error.json").exists()  # the old failure no longer describes this directory


def test_the_summary_table_shows_what_the_track_ranks_and_says_what_was_not_measured(registry_and_track, tmp_path):
    """Under ``current`` a run has no forgetting; the table says so instead of a blank, and a
    plasticity track's table shows the summaries its board ranks on."""
    import dataclasses

    from collapsebench.stats import label
    from collapsebench.sweep.driver import DEFAULT_SUMMARY_KEYS, summary_caption, summary_headers, summary_keys, summary_rows

    _, _, track = registry_and_track
    jobs = jobs_for(registry_and_track, tmp_path, strategies=("naive",))
    for job, retention in zip(jobs, (0.5, 0.7)):
        fake_result(job)
        path = Path(job.run_dir) / "results.json"
        result = json.loads(path.read_text())
        result.update(summary={"plasticity_retention": retention, "new_task_accuracy": [0.9, retention * 0.9]},
                      summary_unavailable={"forgetting": "not measured under evaluation protocol 'current'",
                                           "average_accuracy": "not measured under evaluation protocol 'current'"})
        path.write_text(json.dumps(result))
    assert summary_keys(track) == DEFAULT_SUMMARY_KEYS
    assert summary_rows(jobs) == [["naive", "2/2", "not measured", "not measured"]]
    declared = dataclasses.replace(track, rank=("plasticity_retention", "new_task_accuracy"))
    keys = summary_keys(declared)
    assert summary_headers(keys) == ["strategy", "complete seeds", "plasticity retention", "new task accuracy"]
    # mean ± t_{0.975,1} sd / sqrt(2); new-task accuracy is bounded, so its interval stops at 1
    assert summary_rows(jobs, keys) == [["naive", "2/2", "0.600 ± 1.271", "0.720 [0.148, 1.000]"]]
    assert summary_caption(jobs) == "Summaries: " + label(2)
    stream = io.StringIO()
    SweepProgress(1, stream=stream, live=False)("finished", jobs[0], Outcome(DONE, 1.0, summary={"plasticity_retention": 0.5}))
    assert "plasticity retention 0.500" in stream.getvalue()


def test_progress_counts_and_lines(registry_and_track, tmp_path):
    jobs = jobs_for(registry_and_track, tmp_path)
    stream = io.StringIO()
    progress = SweepProgress(len(jobs), stream=stream, live=False)
    progress.skipped(jobs[0])
    progress("running", jobs[1], None)
    progress("running", jobs[2], None)
    progress("finished", jobs[1], Outcome(DONE, 12.0, summary={"average_accuracy": 0.75}))
    progress("finished", jobs[2], Outcome(FAILED, 1.0, error="RuntimeError: boom"))
    lines = stream.getvalue().splitlines()
    assert "naive seed1" in lines[0] and "average accuracy 0.750" in lines[0]
    assert lines[0].endswith("[2/4] 1 done, 1 running, 0 failed, 1 skipped, 1 queued  (0m00s)")
    assert "RuntimeError: boom" in lines[1] and f"{jobs[2].run_dir}/error.json" in lines[1]
    assert "1 done, 1 failed, 1 skipped, 1 queued" in lines[1]
    live = io.StringIO()
    SweepProgress(3, stream=live, live=True)("running", jobs[0], None)
    assert live.getvalue().startswith("\r\033[K[0/3] 0 done, 1 running, 0 failed, 2 queued")


# --- the command -------------------------------------------------------------------------


def test_dry_run_lists_the_jobs_and_runs_nothing(tiny_plugin, tmp_path):
    code, stdout = sweep("-p", tiny_plugin, "--track", "tiny", "--strategies", "naive,replay", "--out", tmp_path,
                         "--dry-run")
    assert code == 0
    assert "2 strategies x 2 seeds = 4 jobs; 0 already complete; 4 to run" in stdout
    assert stdout.count("missing  run") == 4 and not (tmp_path / "tiny").exists()


@pytest.mark.parametrize("args, message", [
    (["--ray-address", "auto"], "--ray-address only appl"),
    (["--executor", "ray", "--cpus-per-job", "0"], "--cpus-per-job must be positive"),
    (["--seeds", "2-1"], "runs backwards"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--executor", "ray", "--workers", "-2"], "--workers must be at least 1, got -2"),
    (["--strategies", "naive,replya"], "Did you mean 'replay'"),
    (["--track", "tinny"], "Unknown track 'tinny'"),
])
def test_bad_sweeps_are_refused_before_anything_runs(tiny_plugin, tmp_path, capsys, args, message):
    flags = {"--track": "tiny", "--strategies": "naive", **dict(zip(args[::2], args[1::2]))}
    code = main(["sweep", "-p", tiny_plugin, "--out", str(tmp_path), *[x for kv in flags.items() for x in kv]])
    assert code == 2 and message in capsys.readouterr().err


def test_ray_missing_is_explained(monkeypatch):
    from collapsebench.sweep.executors import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(CollapsebenchError, match=r"collapsebench\[ray\]"):
        import_ray()


# --- end to end (worker processes import Avalanche: tens of seconds each) ------------------


def test_local_sweep_runs_every_job_of_the_grid(local_sweep):
    code, stdout, out, matrices = local_sweep
    assert code == 0, stdout
    for strategy, seed in GRID:
        result = result_of(out, strategy, seed)
        assert result["status"] == "complete"
        assert (result["config"]["track"], result["config"]["strategy"], result["config"]["seed"]) == (
            "tiny", strategy, seed)
        assert len(result["accuracy_matrix"]) == 5 and all(len(row) == 5 for row in result["accuracy_matrix"])
        assert (out / "tiny" / strategy / f"seed{seed}" / "sweep.log").read_text().count("experience ") >= 5
    assert matrices["naive", 0] != matrices["naive", 1]  # each job ran its own seed
    # ... and its own strategy: replay keeps old classes that naive SGD forgets at once.
    final = {job: sum(m[-1]) / 5 for job, m in matrices.items()}
    assert min(final["replay", s] for s in (0, 1)) > max(final["naive", s] for s in (0, 1)) + 0.2
    assert "4 done, 0 failed" in stdout and "naive       2/2" in stdout


def test_a_rerun_runs_only_missing_jobs_and_failures_do_not_stop_the_others(local_sweep, tiny_plugin):
    _, _, out, matrices = local_sweep
    (out / "tiny" / "naive" / "seed1" / "results.json").unlink()  # killed before it finished
    partial = out / "tiny" / "replay" / "seed0" / "results.json"
    partial.write_text(json.dumps({**json.loads(partial.read_text()), "status": "partial"}))
    untouched = {job: (out / "tiny" / job[0] / f"seed{job[1]}" / "results.json").read_bytes()
                 for job in (("naive", 0), ("replay", 1))}

    code, stdout = sweep("-p", tiny_plugin, "-p", FIXTURE_PLUGINS / "failing_factory.py",
                         "-p", FIXTURE_PLUGINS / "dying_worker.py", "--track", "tiny",
                         "--strategies", "exploding,naive,replay,dying", "--workers", "1", "--out", out)

    assert code == 1
    for (strategy, seed), before in untouched.items():
        assert (out / "tiny" / strategy / f"seed{seed}" / "results.json").read_bytes() == before  # skipped
    for job in (("naive", 1), ("replay", 0)):  # run again, after the failures, to the same result
        assert result_of(out, *job)["status"] == "complete"
        assert result_of(out, *job)["accuracy_matrix"] == matrices[job]
    for seed in (0, 1):
        error = json.loads((out / "tiny" / "exploding" / f"seed{seed}" / "error.json").read_text())
        assert "the factory is broken on purpose" in error["error"]
        assert 'raise RuntimeError("the factory is broken on purpose")' in error["traceback"]
        assert not (out / "tiny" / "exploding" / f"seed{seed}" / "results.json").exists()
        died = json.loads((out / "tiny" / "dying" / f"seed{seed}" / "error.json").read_text())
        assert "worker process died (exit code 137)" in died["error"]
    assert "2 done, 4 failed, 2 skipped" in stdout
    assert "4 job(s) failed" in stdout and "4 of 8 jobs are not complete" in stdout


def test_ray_sweep_gives_the_local_sweeps_results(local_sweep, tiny_plugin, tmp_path):
    pytest.importorskip("ray")
    _, _, _, matrices = local_sweep
    code, stdout = sweep("-p", tiny_plugin, "--track", "tiny", "--strategies", "naive,replay", "--executor", "ray",
                         "--workers", "2", "--out", tmp_path)
    assert code == 0, stdout
    assert "a local Ray instance: each job 1 CPU, 0 GPU, at most 2 at a time" in stdout
    for job in GRID:
        assert result_of(tmp_path, *job)["accuracy_matrix"] == matrices[job]


def test_submit_sends_each_complete_strategy_to_the_board_once(local_sweep, tiny_plugin, tmp_path):
    _, _, out, _ = local_sweep  # every job complete: this sweep runs nothing
    board = tmp_path / "board"
    args = ["-p", tiny_plugin, "--track", "tiny", "--strategies", "naive,replay", "--out", out, "--submit", "--board", board]
    code, stdout = sweep(*args)
    assert code == 0 and "0 to run" in stdout
    for strategy in ("naive", "replay"):
        submission = json.loads((board / "submissions" / "tiny" / f"{strategy}.json").read_text())
        assert submission["strategy"]["spec"] == strategy
        assert [run["seed"] for run in submission["runs"]] == [0, 1]
    code, stdout = sweep(*args)
    assert code == 0 and "already on the board: naive" in stdout and "already on the board: replay" in stdout
