"""One run planner: run, run --track, run --resume, sweep, study run and verify make the same
config from the same inputs (collapsebench.planner). No training: each side's planned config is
compared with the other's, and the CLI's sweep is shown a result planned by `run`."""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
from pathlib import Path

import pytest

from collapsebench.cli import build_parser, main, prepare_runs
from collapsebench.config import parse_assignment
from collapsebench.errors import CollapsebenchError
from collapsebench.leaderboard.submission import LOCAL_CONFIG_KEYS
from collapsebench.leaderboard.verify import rerun_config
from collapsebench.manager import build_manager
from collapsebench.planner import PlannedRun, Sources, plan, plan_runs
from collapsebench.registry import Registry
from collapsebench.sweep.grid import build_jobs
from collapsebench.tracks import get_track

TRACK = """
    [track]
    description = "planner tests"
    seeds = [3, 4]

    [run]
    stream = "split-digits"
    model = "mlp"
    model_options = { widths = [16] }
    epochs = 2
    probe_size = 50
    evaluators = ["weights"]
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("planner-track")
    (root / "tracks").mkdir()
    (root / "tracks" / "plan.toml").write_text(textwrap.dedent(TRACK))
    path = root / "plan_track.py"
    path.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from collapsebench import hookimpl

        @hookimpl
        def collapsebench_track_dirs():
            return [Path({str(root / "tracks")!r})]
    """))
    return str(path)


@pytest.fixture(scope="module")
def loaded(plugin):
    manager = build_manager([plugin])
    return manager, Registry(manager)


def run_configs(*argv: str):
    """The configs `collapsebench run ARGV` would train, planned without training."""
    return prepare_runs(build_parser().parse_args(["run", *map(str, argv)]))[2]


def planned(config, registry) -> PlannedRun:
    from collapsebench.config import resolve_component_options

    return PlannedRun(config, resolve_component_options(config, registry))


def without(config: dict, keys) -> dict:
    return {key: value for key, value in config.items() if key not in keys}


@pytest.mark.parametrize("strategy", ["replay", "replay+lwf"])
def test_a_sweep_cell_is_the_run_that_run_makes_from_the_same_flags(plugin, loaded, tmp_path, monkeypatch, strategy):
    monkeypatch.chdir(tmp_path)
    manager, registry = loaded
    data = str(tmp_path / "data")
    options = ["mem_size=40"] + (["lwf.alpha=2.5"] if "lwf" in strategy else [])
    (config,) = run_configs("-p", plugin, "--track", "plan", "--strategy", strategy, "--seed", 4, "--device", "cpu",
                            "--data-root", data, *[a for o in options for a in ("--strategy-option", o)])
    jobs = build_jobs(manager, registry, get_track(manager, "plan"), [strategy], [4], "runs", [plugin],
                      {"device": "cpu", "data_root": data}, [parse_assignment(o) for o in options])
    (job,) = jobs
    run = planned(config, registry)
    assert job.identity == run.identity  # what decides whether a result counts as the job's
    assert without(job.config, ("out",)) == without(config.to_dict(), ("out",))  # the local keys too
    assert Path(job.run_dir) == run.run_dir.resolve() == tmp_path / "runs" / "plan" / strategy / "seed4"
    resolved = run.resolved_options["strategy"]
    assert resolved["replay"]["mem_size"] == 40 and (strategy == "replay" or resolved["lwf"]["alpha"] == 2.5)
    assert (config.track, config.epochs, config.model_options) == ("plan", 2, {"widths": [16]})


def test_a_track_without_a_seed_runs_every_seed_where_the_sweep_puts_them(plugin, loaded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manager, registry = loaded
    configs = run_configs("-p", plugin, "--track", "plan", "--strategy", "naive")
    jobs = build_jobs(manager, registry, get_track(manager, "plan"), ["naive"], [3, 4], "runs", [plugin])
    assert [c.seed for c in configs] == [job.seed for job in jobs] == [3, 4]
    assert [c.run_dir().resolve() for c in configs] == [Path(job.run_dir) for job in jobs]
    assert [planned(c, registry).identity for c in configs] == [job.identity for job in jobs]
    # With --out, each seed gets its own directory below it.
    assert [c.run_dir() for c in run_configs("-p", plugin, "--track", "plan", "--out", "mine")] == [
        Path("mine/seed3"), Path("mine/seed4")]


def test_a_file_s_out_also_splits_a_track_s_seeds(plugin, tmp_path, monkeypatch):
    """Before the planner only --out did; a TOML file's `out` sent every seed into one directory,
    each overwriting the one before."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text('track = "plan"\nout = "from-file"\n')
    assert [c.run_dir() for c in run_configs("-p", plugin, "--config", tmp_path / "run.toml")] == [
        Path("from-file/seed3"), Path("from-file/seed4")]


def test_the_sweep_takes_a_result_planned_by_run_as_its_own(plugin, loaded, tmp_path, monkeypatch):
    """`collapsebench sweep --dry-run` skips the cell whose directory holds a result of the config
    `collapsebench run` planned from the same flags, and only that one."""
    monkeypatch.chdir(tmp_path)
    _, registry = loaded
    (config,) = run_configs("-p", plugin, "--track", "plan", "--strategy", "replay", "--seed", 3,
                            "--strategy-option", "mem_size=40")
    run = planned(config, registry)
    run.run_dir.mkdir(parents=True)
    record = {**run.record, "plugins": [{"name": "plan_track"}]}
    (run.run_dir / "results.json").write_text(json.dumps({"schema_version": 1, "status": "complete", "config": record}))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["sweep", "-p", plugin, "--track", "plan", "--strategies", "replay", "--strategy-option",
                     "mem_size=40", "--dry-run"])
    assert code == 0
    rows = {line.split()[1]: line.split()[2:4] for line in out.getvalue().splitlines() if line.startswith("replay ")}
    assert rows == {"3": ["complete", "skip"], "4": ["missing", "run"]}
    # Another option value is another config: the same directory no longer counts.
    with contextlib.redirect_stdout(out := io.StringIO()):
        main(["sweep", "-p", plugin, "--track", "plan", "--strategies", "replay", "--strategy-option",
              "mem_size=41", "--seeds", "3", "--dry-run"])
    assert "stale" in out.getvalue()


def test_a_verify_rerun_is_the_submitted_run(plugin, loaded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, registry = loaded
    (config,) = run_configs("-p", plugin, "--track", "plan", "--strategy", "replay", "--seed", 4,
                            "--strategy-option", "mem_size=40", "--threads", 2)
    run = planned(config, registry)
    # What a submission keeps of the run's results.json config (leaderboard.submission._run_entry).
    results_config = {**run.record, "plugins": [{"name": "plan_track"}]}
    entry = {"config": without(results_config, LOCAL_CONFIG_KEYS), "resolved_options": run.resolved_options}
    rerun = rerun_config(entry, [plugin], tmp_path / "verify", None, None, registry)
    assert rerun.identity == run.identity and rerun.resolved_options == run.resolved_options
    assert without(rerun.config.to_dict(), ("out",)) == without(config.to_dict(), ("out",))
    assert rerun.run_dir == tmp_path / "verify"
    # The verifier's own data root and device replace the submitter's; nothing else does.
    moved = rerun_config(entry, [plugin], tmp_path / "v2", "/elsewhere", "cpu", registry)
    assert moved.config.data_root == "/elsewhere" and moved.identity == run.identity


def test_a_resumed_run_is_planned_as_it_was_recorded(plugin, loaded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (config,) = run_configs("-p", plugin, "--track", "plan", "--strategy", "lwf", "--seed", 3,
                            "--strategy-option", "alpha=0.5", "--out", "interrupted")
    Path("interrupted").mkdir()
    Path("interrupted/config.json").write_text(json.dumps(config.to_dict()))  # what build_run records
    (resumed,) = prepare_runs(build_parser().parse_args(["run", "--resume", "interrupted"]))[2]
    assert resumed == config


def test_a_study_cell_is_the_run_that_run_makes_from_its_layers(tmp_path, monkeypatch):
    """A study's grid.run is a file layer; its cell the flags and options `run` is given."""
    from collapsebench.config import FIELDS
    from collapsebench.studies.jobs import build_jobs as study_jobs
    from collapsebench.studies.spec import get_study

    monkeypatch.chdir(tmp_path)
    manager = build_manager([])
    registry = Registry(manager)
    study = get_study(manager, "ramasesh-deeper-layers-forget")
    grid = study.grid(quick=True)
    jobs = study_jobs(study, True, registry, "study", [], {"data_root": str(tmp_path)})
    job = next(j for j in jobs if j.strategy == "replay" and j.seed == grid.seeds[-1])
    stream, model = grid.streams[0], grid.models[0]
    toml = "\n".join(f"{k} = {json.dumps(v)}" for k, v in grid.run.items() if k in FIELDS
                     and not isinstance(v, dict))
    (tmp_path / "grid.toml").write_text(toml + "\n")
    model_options = [a for kind, table in (("stream", grid.stream_options.get(stream, {})),
                                           ("model", grid.model_options.get(model, {})))
                     for k, v in table.items() for a in (f"--{kind}-option", f"{k}={json.dumps(v)}")]
    (config,) = run_configs("--config", tmp_path / "grid.toml", "--stream", stream, "--model", model,
                            "--strategy", "replay", "--seed", grid.seeds[-1], "--data-root", tmp_path,
                            "--out", job.run_dir, *model_options)
    assert config.to_dict() == job.config
    assert planned(config, registry).identity == job.identity
    assert Path(job.run_dir) == tmp_path / "study" / stream / model / "replay" / f"seed{grid.seeds[-1]}"


def test_every_source_is_checked_the_same_way(plugin, loaded):
    """A misspelt option or a protocol change fails in the planner, whichever command asked."""
    manager, registry = loaded
    track = get_track(manager, "plan")
    with pytest.raises(CollapsebenchError, match="Did you mean 'mem_size'"):
        plan(Sources(track=track, flags={"strategy": "replay"}, options=[("strategy", "memsize", 3)]), registry)
    with pytest.raises(CollapsebenchError, match="Track 'plan' fixes epochs"):
        plan(Sources(track=track, cell={"epochs": 9}), registry)
    with pytest.raises(CollapsebenchError, match="fixes the stream, model and evaluator options"):
        plan(Sources(track=track, options=[("model", "widths", [8])]), registry)
    with pytest.raises(CollapsebenchError, match="fixes epochs"):
        run_configs("-p", plugin, "--track", "plan", "--epochs", 9)
    assert [p.config.seed for p in plan_runs(Sources(track=track), registry)] == [3, 4]

