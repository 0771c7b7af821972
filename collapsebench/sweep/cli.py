"""``collapsebench sweep``: a track's strategies x seeds, locally or on Ray, resumable.

Imports only the standard library at module level (``collapsebench --help`` must stay instant).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collapsebench.errors import CollapsebenchError

DEFAULT_OUT = "runs"


def add_commands(subparsers, add_plugin_flag) -> dict:
    sweep = subparsers.add_parser(
        "sweep",
        help="run a track for several strategies and seeds (process pool or Ray); re-running skips finished jobs",
        description="Run every (strategy, seed) of a benchmark track, one run directory per job under "
        "OUT/TRACK/STRATEGY/seedN. A job whose directory holds a complete result of the same resolved config "
        "is skipped, so an interrupted sweep continues where it stopped. A failing job is recorded in its "
        "error.json and the others go on; the exit code is 1 if any job failed.",
    )
    add_plugin_flag(sweep)
    sweep.add_argument("--track", required=True, help="the benchmark track (`collapsebench list tracks`)")
    sweep.add_argument("--strategies", required=True, metavar="A,B,...",
                       help="comma-separated strategies (each may join components with +), or 'all'")
    sweep.add_argument("--seeds", metavar="SEEDS", help="e.g. 0-4 or 0,2,5 (default: the track's seeds)")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: a process pool on this machine (default); ray: one Ray task per job")
    sweep.add_argument("--workers", type=int, metavar="N",
                       help="local: worker processes (default: the CPU count); ray: the most jobs in flight "
                       "(default: as many as the cluster fits), and on a local Ray instance N x --cpus-per-job CPUs")
    sweep.add_argument("--ray-address", metavar="ADDR",
                       help="an existing Ray cluster (e.g. ray://head:10001 or auto); default: start a local instance")
    sweep.add_argument("--cpus-per-job", type=float, default=1.0, metavar="C",
                       help="ray: CPUs each job declares, and its torch threads (default 1)")
    sweep.add_argument("--gpus-per-job", type=float, metavar="G",
                       help="ray: GPUs each job declares (default 1 with --device cuda, else 0; fractions share a GPU)")
    sweep.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"where run directories go (default {DEFAULT_OUT})")
    sweep.add_argument("--strategy-option", action="append", default=[], metavar="[NAME.]KEY=VALUE",
                       help="set an option of the strategies that have component NAME (or that declare KEY); repeatable")
    sweep.add_argument("--device", help="cpu (default), cuda, cuda:N or mps")
    sweep.add_argument("--data-root", help="where datasets live (default $COLLAPSEBENCH_DATA_ROOT or ./data)")
    sweep.add_argument("--download", action="store_const", const=True, help="allow downloading missing datasets")
    sweep.add_argument("--dry-run", action="store_true", help="list the jobs and which would run; run nothing")
    sweep.add_argument("--submit", action="store_true",
                       help="afterwards, submit each strategy whose every track seed is complete to the leaderboard")
    sweep.add_argument("--board", default="leaderboard", metavar="DIR", help="with --submit: the board directory")
    sweep.add_argument("--author", help="with --submit: who ran it")
    return {"sweep": cmd_sweep}


def cmd_sweep(args: argparse.Namespace) -> int:
    from collapsebench.config import parse_assignment
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry
    from collapsebench.sweep.driver import plan, run_sweep, summary_caption, summary_headers, summary_keys, summary_rows
    from collapsebench.sweep.grid import build_jobs, parse_seeds, parse_strategies, state_of
    from collapsebench.tracks import get_track

    executor = _executor(args)
    manager = build_manager(args.plugin)
    registry = Registry(manager)
    track = get_track(manager, args.track)
    strategies = parse_strategies(args.strategies, registry)
    seeds = parse_seeds(args.seeds) if args.seeds else list(track.seeds)
    plugins = [str(Path(spec).resolve()) if Path(spec).is_file() else spec for spec in args.plugin]
    free = {key: getattr(args, key) for key in ("device", "data_root", "download") if getattr(args, key) is not None}
    options = [parse_assignment(text) for text in args.strategy_option]

    def jobs_for(seed_list):
        return build_jobs(manager, registry, track, strategies, seed_list, args.out, plugins, free, options)

    jobs = jobs_for(seeds)
    to_run, done = plan(jobs)
    print(f"collapsebench sweep: track {track.name}, {len(strategies)} strateg{'y' if len(strategies) == 1 else 'ies'} "
          f"x {len(seeds)} seed{'' if len(seeds) == 1 else 's'} = {len(jobs)} jobs; {len(done)} already complete; "
          f"{len(to_run)} to run ({sum(job.resume for job in to_run)} from a checkpoint) on "
          f"{executor.describe(len(to_run))}")
    print(f"run directories: {Path(args.out) / track.name}/STRATEGY/seedN (each job's output: sweep.log)", flush=True)
    if args.dry_run:
        from tabulate import tabulate

        actions = {job.run_dir: "resume" if job.resume else "run" for job in to_run}
        rows = [[job.strategy, job.seed, state_of(job), actions.get(job.run_dir, "skip"), job.run_dir] for job in jobs]
        print(tabulate(rows, headers=["strategy", "seed", "found", "action", "run directory"]))
        return 0

    try:
        result = run_sweep(jobs, executor)
    except KeyboardInterrupt:
        print("\nSweep interrupted; running jobs kept partial results. The same command continues it.", file=sys.stderr)
        raise
    from tabulate import tabulate

    for note in getattr(executor, "notes", []):
        print(f"note: {note}")
    print()
    keys = summary_keys(track)
    print(summary_caption(jobs))
    print(tabulate(summary_rows(jobs, keys), headers=summary_headers(keys)))
    diverged = [job for job in jobs if state_of(job) == "diverged"]
    if diverged:
        print(f"\n{len(diverged)} job(s) diverged (a non-finite loss or weights; results.json says where): "
              + ", ".join(job.label for job in diverged))
    unfinished = [job for job in jobs if state_of(job) not in ("complete", "diverged")]
    if result.failed:
        print(f"\n{len(result.failed)} job(s) failed; each run directory's error.json holds the error and traceback:")
        for job in result.failed:
            print(f"  {job.label}: {result.outcomes[job.run_dir].error}  ({job.run_dir})")
    if unfinished:
        print(f"\n{len(unfinished)} of {len(jobs)} jobs are not complete; the same command runs only those.")
    submitted_ok = _submit(args, track, strategies, jobs_for(list(track.seeds)), plugins) if args.submit else True
    return 0 if not unfinished and not diverged and submitted_ok else 1


def _executor(args: argparse.Namespace):
    from collapsebench.sweep.executors import LocalExecutor, RayExecutor

    # `--workers 0` is falsy: left to the executors it silently became "the default".
    if args.workers is not None and args.workers < 1:
        raise CollapsebenchError(f"--workers must be at least 1, got {args.workers}.")
    if args.executor == "local":
        stray = [flag for flag, value in (("--ray-address", args.ray_address), ("--gpus-per-job", args.gpus_per_job))
                 if value is not None]
        if args.cpus_per_job != 1.0:
            stray.append("--cpus-per-job")
        if stray:
            raise CollapsebenchError(f"{', '.join(stray)} only apply to --executor ray.")
        return LocalExecutor(args.workers)
    gpus = args.gpus_per_job
    if gpus is None:
        gpus = 1.0 if (args.device or "").startswith("cuda") else 0.0
    return RayExecutor(args.ray_address, args.workers, args.cpus_per_job, gpus)


def _submit(args, track, strategies, track_jobs, plugins) -> bool:
    """Submit each strategy whose every track seed is complete; True if none went wrong."""
    try:
        from collapsebench.leaderboard import submissions_dir
        from collapsebench.leaderboard.submission import build_submission, run_fingerprint, write_submission
    except ImportError:
        print("collapsebench: error: --submit is not available: this installation has no leaderboard "
              "(collapsebench.leaderboard).", file=sys.stderr)
        return False
    from collapsebench.sweep.grid import state_of

    ok = True
    print()
    for strategy in strategies:
        jobs = [job for job in track_jobs if job.strategy == strategy]
        incomplete = [job.seed for job in jobs if state_of(job) != "complete"]
        if incomplete:
            ok = False
            print(f"not submitted: {strategy}: track seeds {incomplete} have no complete result "
                  f"(`collapsebench sweep --track {track.name} --strategies {strategy}` runs them)")
            continue
        try:
            submission = build_submission([job.run_dir for job in jobs], author=args.author, extra_plugins=plugins)
            if any(_same_runs(path, submission, run_fingerprint)
                   for path in submissions_dir(Path(args.board), track.name).glob("*.json")):
                print(f"already on the board: {strategy}")
                continue
            path = write_submission(submission, args.board)
        except CollapsebenchError as exc:
            ok = False
            print(f"not submitted: {strategy}: {exc}")
            continue
        print(f"submitted: {strategy} -> {path}")
    return ok


def _same_runs(path: Path, submission: dict, run_fingerprint) -> bool:
    import json

    try:
        return run_fingerprint(json.loads(path.read_text())) == run_fingerprint(submission)
    except (OSError, ValueError, KeyError, TypeError):
        return False
