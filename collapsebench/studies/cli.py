"""``collapsebench study list | run | report``.

Imports only the standard library at module level (``collapsebench --help`` must stay instant).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from collapsebench.errors import CollapsebenchError

DEFAULT_OUT = "studies"


def add_commands(subparsers, add_plugin_flag) -> dict:
    study = subparsers.add_parser(
        "study", help="reproduce a paper's finding: run a declared study, then check its claims",
        description="A study is a declared experiment (a TOML file a collapsebench plugin provides): a grid of "
        "runs, figures, and claims that can fail. `study run` runs the grid through the sweep's executors "
        "(re-running skips complete runs); `study report` draws the figures and prints PASS or FAIL per claim.")
    commands = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    listing = commands.add_parser("list", help="the studies the loaded collapsebench plugins provide")
    add_plugin_flag(listing)
    run = commands.add_parser("run", help="run a study's grid (resumable)")
    add_plugin_flag(run)
    run.add_argument("name", help="the study (`collapsebench study list`)")
    run.add_argument("--quick", action="store_true", help="the reduced version (a few minutes on 2 cores)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local: a process pool (default); ray: one Ray task per run")
    run.add_argument("--workers", type=int, metavar="N", help="parallel runs (default: the CPU count)")
    run.add_argument("--out", metavar="DIR", help=f"study directory (default {DEFAULT_OUT}/NAME[-quick])")
    run.add_argument("--data-root", help="where datasets live (default $COLLAPSEBENCH_DATA_ROOT or ./data)")
    run.add_argument("--device", help="cpu (default), cuda, cuda:N or mps")
    run.add_argument("--only", action="append", default=[], metavar="AXIS=VALUES",
                     help="run part of the grid: AXIS is streams, models, strategies or seeds, VALUES a "
                     "comma-separated list of the grid's own values (repeatable; the page and claims.json say "
                     "which part ran)")
    run.add_argument("--dry-run", action="store_true", help="list the runs; run nothing")
    run.add_argument("--no-report", action="store_true", help="do not write the report afterwards")
    report = commands.add_parser("report", help="check a study's claims and write its page")
    add_plugin_flag(report)
    report.add_argument("directory", metavar="DIR", help="the --out directory of `study run`")
    report.add_argument("--output", metavar="FILE", help="the page (default DIR/report.html)")
    return {"study": lambda args: cmd_study(args, study)}


def cmd_study(args, parser) -> int:
    if args.study_command is None:
        parser.print_help()
        return 0
    return {"list": cmd_list, "run": cmd_run, "report": cmd_report}[args.study_command](args)


def cmd_list(args) -> int:
    from tabulate import tabulate

    from collapsebench.manager import build_manager
    from collapsebench.studies.spec import load_studies

    rows = []
    for name, study in load_studies(build_manager(args.plugin)).items():
        minutes = study.meta.get("expected_minutes"), study.meta.get("expected_minutes_quick")
        rows.append([name, study.meta.get("paper", ""), f"{study.full.n_runs} / {study.quick.n_runs}",
                     f"{minutes[0] or '?'} / {minutes[1] or '?'}", study.description])
    if not rows:
        print("No study is provided by the loaded collapsebench plugins.")
        return 0
    print(tabulate(rows, headers=["study", "paper", "runs full / quick", "minutes full / quick (1 CPU)", "description"],
                   maxcolwidths=[None, 22, None, None, 60]))
    return 0


def _out(args) -> Path:
    return Path(args.out) if args.out else Path(DEFAULT_OUT) / (args.name + ("-quick" if args.quick else ""))


def cmd_run(args) -> int:
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry
    from collapsebench.results import write_json
    from collapsebench.studies.jobs import STUDY_FILE, build_jobs, missing_data
    from collapsebench.studies.page import describe_only
    from collapsebench.studies.spec import get_study, parse_only
    from collapsebench.sweep.cli import _executor
    from collapsebench.sweep.driver import plan, run_sweep
    from collapsebench.sweep.grid import state_of

    manager = build_manager(args.plugin)
    registry = Registry(manager)
    study = get_study(manager, args.name)
    only = parse_only(args.only)
    study.grid(args.quick, only)  # a bad --only fails before anything is planned
    out = _out(args)
    plugins = [str(Path(spec).resolve()) if Path(spec).is_file() else spec for spec in args.plugin]
    free = {key: getattr(args, key) for key in ("device", "data_root") if getattr(args, key) is not None}
    jobs = build_jobs(study, args.quick, registry, out, plugins, free, only)
    lacking = missing_data(jobs, registry)
    if lacking and not args.dry_run:
        version = "quick version" if args.quick else "full version"
        raise CollapsebenchError(
            f"The {version} of study {study.name} needs data the data root ({jobs[0].config['data_root']}) lacks; "
            "nothing was run and nothing is downloaded (`collapsebench run --download` fetches what torchvision "
            "can, once):\n  " + "\n  ".join(lacking))
    executor = _executor(argparse.Namespace(workers=args.workers, executor=args.executor, ray_address=None,
                                            gpus_per_job=None, cpus_per_job=1.0, device=args.device))
    to_run, done = plan(jobs)
    minutes = study.meta.get("expected_minutes_quick" if args.quick else "expected_minutes")
    part = ""
    if only:
        part = (f" (part of the grid: {describe_only(only)}; the whole grid has "
                f"{study.grid(args.quick).n_runs} runs)")
    print(f"collapsebench study {study.name}{' (quick)' if args.quick else ''}: {len(jobs)} runs{part}, {len(done)} "
          f"already complete, {len(to_run)} to run on {executor.describe(len(to_run))}"
          + (f"; expected about {minutes} CPU-minutes for the whole grid" if minutes else ""))
    print(f"study directory: {out}", flush=True)
    if args.dry_run:
        for job in jobs:
            print(f"  {state_of(job):9} {job.run_dir}")
        for problem in lacking:
            print(f"missing data: {problem}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / STUDY_FILE, {"study": study.name, "quick": bool(args.quick), "file": str(study.path),
                                  "definition": study.path.read_text(), "run_dirs": [job.run_dir for job in jobs],
                                  "only": only})
    try:
        result = run_sweep(jobs, executor)
    except KeyboardInterrupt:
        print("\nStudy interrupted; the same command continues it.", file=sys.stderr)
        raise
    unfinished = [job for job in jobs if state_of(job) != "complete"]
    for job in result.failed:
        print(f"  failed: {job.run_dir}: {result.outcomes[job.run_dir].error}")
    if unfinished:
        print(f"{len(unfinished)} of {len(jobs)} runs are not complete; the same command runs only those.")
    if not args.no_report and len(unfinished) < len(jobs):
        _print_report(out, study)
    return 1 if unfinished else 0


def _print_report(directory: Path, study) -> list:
    from collapsebench.studies.page import write_study_report

    from collapsebench.studies.page import describe_only, read_manifest

    page, verdicts, complete, planned = write_study_report(directory, study)
    only = read_manifest(directory).get("only")
    print(f"\n{study.name}: {complete} of {planned} runs complete"
          + (f" (part of the grid: {describe_only(only)})" if only else ""))
    for v in verdicts:
        d = v.to_dict()
        interval = "" if d["low"] is None else f" [{d['low']:.3f}, {d['high']:.3f}]"
        estimate = "n/a" if d["estimate"] is None else f"{d['estimate']:.3f}"
        print(f"  {d['verdict']}  {d['claim']}: {d['statistic']} = {estimate}{interval} ({d['reason']})")
    print(f"page: {page}; claims: {directory / 'claims.json'}")
    return verdicts


def cmd_report(args) -> int:
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry
    from collapsebench.studies.page import read_manifest
    from collapsebench.studies.spec import read_study

    Registry(build_manager(args.plugin))  # the loaded evaluators' declared figures (report:NAME)
    directory = Path(args.directory)
    if not directory.is_dir():
        raise CollapsebenchError(f"{directory} is not a directory.")
    manifest = read_manifest(directory)
    try:
        study = read_study(Path(manifest["file"]), manifest["definition"])
    except KeyError as exc:
        raise CollapsebenchError(f"{directory / 'study.json'} lacks {exc}: not written by `study run`.") from None
    if args.output:
        from collapsebench.studies.page import write_study_report

        page, verdicts, *_ = write_study_report(directory, study, args.output)
        print(f"page: {page}")
    else:
        verdicts = _print_report(directory, study)
    return 0 if all(v.passed for v in verdicts) else 1
