"""The ``collapsebench`` command.

Only ``run`` (and the commands that train) import torch and Avalanche; ``--help``, ``list`` and
``plugins`` answer in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from collapsebench.config import RUN_FLAGS, add_run_flags  # the run flags, from RunConfig's fields
from collapsebench.errors import EXIT_SIGINT, EXIT_USER_ERROR, CollapsebenchError, Terminated, describe_os_error

KIND_CHOICES = ("architectures", "strategies", "streams", "evaluators", "loggers", "tracks")
#: Modules that add subcommands: each has ``add_commands(subparsers, add_plugin_flag) -> {name: handler}``.
#: They must import only the standard library at module level, so that --help stays instant.
COMMAND_MODULES: list[str] = ["collapsebench.report.cli", "collapsebench.leaderboard.cli", "collapsebench.sweep.cli",
                             "collapsebench.export", "collapsebench.studies.cli"]


def _add_plugin_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        "-p",
        action="append",
        default=[],
        metavar="PLUGIN",
        help="load a collapsebench plugin: an installed entry-point name, a module, or a .py file; "
             "-p no:NAME keeps the plugin NAME from loading (repeatable)",
    )
    # Stored as "no:NAME" among the --plugin specs, so every command and a resumed run honour it.
    parser.add_argument(
        "--disable-plugin",
        action="append",
        dest="plugin",
        type=lambda name: f"no:{name}",
        metavar="NAME",
        help="do not load the collapsebench plugin NAME, as -p no:NAME (repeatable)",
    )


COMMANDS: dict = {}

RUN_EXAMPLES = """examples:
  collapsebench run                                   the default: naive on split-digits, seed 0
  collapsebench run --strategy replay --seed 1        another strategy and seed
  collapsebench run --track split-digits-mlp --strategy ewc   every seed of a benchmark track
  collapsebench run --config my-run.toml --seed 3     a TOML file of the same keys; flags win
  collapsebench run --resume runs/NAME                continue an interrupted run
"""


def _show_run_defaults(run: argparse.ArgumentParser) -> None:
    """Append RunConfig's default to each flag's help, so the help cannot drift from the config."""
    from collapsebench.config import RunConfig

    defaults = RunConfig()
    for action in run._actions:
        if not action.help or "default" in action.help or not hasattr(defaults, action.dest):
            continue
        value = getattr(defaults, action.dest)
        if value is None or isinstance(value, bool):
            continue
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        if shown != "":
            action.help += f" (default {shown})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collapsebench",
        description="Benchmark continual-learning strategies on accuracy and on collapse "
        "(effective rank, dead units, Hessian spectrum, CKA).",
    )
    from collapsebench import __version__

    parser.add_argument("--version", action="version", version=f"collapsebench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run", help="train and evaluate one configuration; write a run directory",
        description="Train a strategy on a stream of experiences and measure accuracy and collapse after each\n"
                    "one. Settings come from, lowest first: the defaults shown below, a track's fixed protocol\n"
                    "(--track), a --config TOML file, then flags.",
        epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_plugin_flag(run)
    run.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the flags (flags win)")
    run.add_argument("--track", help="run a benchmark track: its protocol is fixed, all its seeds unless --seed")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    run.add_argument("--trust-checkpoint", action="store_true",
                     help="with --resume: load a checkpoint this installation did not sign (a checkpoint is a "
                          "pickle and can run code: only for one whose origin you trust)")
    add_run_flags(run)  # one per RunConfig field in config.RUN_FLAGS: type and default from the field
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run an existing run directory holds (its results, model, checkpoint and "
                     "TensorBoard events); without it such a directory is refused")
    for kind in ("stream", "model", "strategy", "evaluator"):
        run.add_argument(
            f"--{kind}-option",
            action="append",
            default=[],
            metavar="[NAME.]KEY=VALUE",
            help=f"set an option of the {kind} (repeatable; `collapsebench list` shows them)",
        )
    _show_run_defaults(run)

    plugins = commands.add_parser("plugins", help="list the loaded collapsebench plugins and what each provides")
    _add_plugin_flag(plugins)
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    listing = commands.add_parser("list", help="list architectures, strategies, streams or evaluators")
    _add_plugin_flag(listing)
    listing.add_argument("kind", nargs="?", choices=KIND_CHOICES, help="what to list (default: everything)")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. 'split-*'")
    listing.add_argument("--details", action="store_true", help="show options (and parameter counts for models)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    for module_name in COMMAND_MODULES:
        COMMANDS.update(importlib.import_module(module_name).add_commands(commands, _add_plugin_flag))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    # The one place where a command's errors become messages and exit codes (collapsebench.errors).
    try:
        from collapsebench.api import quiet_dependency_warnings

        with quiet_dependency_warnings():  # Avalanche's deprecation warnings are not the user's business
            return COMMANDS[args.command](args)
    except CollapsebenchError as exc:
        print(f"collapsebench: error: {exc}", file=sys.stderr)
        if exc.details:
            print(exc.details.rstrip(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("collapsebench: " + ("stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted"), file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_SIGINT)
    except OSError as exc:  # a file or folder the command had to read or write
        print(f"collapsebench: error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if "collapsebench.interrupts" in sys.modules:  # a run that failed mid-write still gives back Ctrl-C
            sys.modules["collapsebench.interrupts"].release_all()


def _registry(args):
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    manager = build_manager(args.plugin)
    return manager, Registry(manager)


def cmd_plugins(args) -> int:
    from collapsebench.tracks import tracks_by_plugin

    manager, registry = _registry(args)
    tracks = tracks_by_plugin(manager)
    rows = []
    for name, info in manager.info.items():
        provides = registry.provided_by(name)
        if tracks.get(name):
            provides["track"] = tracks[name]
        rows.append(
            {
                "name": name,
                "version": info.version,
                "distribution": info.distribution,
                "source": info.source,
                "location": info.location,
                "provides": provides,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from tabulate import tabulate

    table = [
        [r["name"], r["distribution"] or "-", r["version"] or "-",
         "; ".join(f"{kind}: {', '.join(names)}" for kind, names in r["provides"].items()) or "(hooks only)"]
        for r in rows
    ]
    print(tabulate(table, headers=["plugin", "distribution", "version", "provides"]))
    return 0


def cmd_list(args) -> int:
    from collapsebench.listing import describe

    manager, registry = _registry(args)
    kinds = [args.kind] if args.kind else list(KIND_CHOICES)
    print(describe(manager, registry, kinds, args.pattern, details=args.details, as_json=args.json))
    return 0


def prepare_runs(args, file_layer=None):
    """The manager, registry and one checked config per run that ``run`` arguments ask for.

    The arguments become the planner's sources (collapsebench.planner), the same code that plans
    a sweep's cells and a verify re-run. ``file_layer``, already checked, stands in for
    ``--config`` (``collapsebench.run``'s mapping).
    """
    from collapsebench.config import load_toml, parse_assignment
    from collapsebench.manager import build_manager
    from collapsebench.planner import Sources, check_new_run_dir, plan_runs
    from collapsebench.registry import Registry
    from collapsebench.tracks import get_track

    if args.resume:
        return _resumed_run(args)
    if file_layer is None:
        file_layer = load_toml(args.config) if args.config else {}
    flags = {key: value for key, value in vars(args).items() if value is not None and key in RUN_FLAGS}
    flags["plugins"] = list(dict.fromkeys([*file_layer.get("plugins", []), *args.plugin]))
    manager = build_manager(flags["plugins"])
    registry = Registry(manager)
    track_name = args.track or file_layer.get("track")
    options = [(kind, *parse_assignment(text)) for kind in ("stream", "model", "strategy", "evaluator")
               for text in getattr(args, f"{kind}_option")]
    sources = Sources(track=get_track(manager, track_name) if track_name else None, file=file_layer, flags=flags,
                      options=options)
    planned = plan_runs(sources, registry)
    for run in planned:
        check_new_run_dir(run.run_dir, args.overwrite, registry)
    return manager, registry, [run.config for run in planned]


def _resumed_run(args):
    """The config an interrupted run recorded in its directory, for ``run --resume``."""
    from pathlib import Path

    from collapsebench.checkpoint import CONFIG_FILE, check_trusted
    from collapsebench.config import check_run_dir, load_recorded_config
    from collapsebench.manager import build_manager
    from collapsebench.planner import merged_config, plan, resume_sources
    from collapsebench.registry import Registry

    others = [f"--{k.replace('_', '-')}" for k in RUN_FLAGS if getattr(args, k, None) is not None]
    others += ["--config"] * bool(args.config) + ["--track"] * bool(args.track) + ["--overwrite"] * args.overwrite
    others += [f"--{kind}-option" for kind in ("stream", "model", "strategy", "evaluator")
               if getattr(args, f"{kind}_option")]
    if others:
        raise CollapsebenchError(f"--resume continues a run exactly as it was configured; drop {', '.join(others)}.")
    run_dir = Path(args.resume)
    recorded = load_recorded_config(run_dir, CONFIG_FILE)
    check_run_dir(run_dir)
    check_trusted(run_dir, getattr(args, "trust_checkpoint", False))  # before any plugin is imported
    sources = resume_sources(run_dir, recorded)
    manager = build_manager([*merged_config(sources).plugins, *args.plugin])
    registry = Registry(manager)
    return manager, registry, [plan(sources, registry).config]


def cmd_run(args) -> int:
    manager, registry, configs = prepare_runs(args)
    from collapsebench.preflight import check_data
    from collapsebench.results import RESULTS_FILE
    from collapsebench.summary import render_summary

    finished = []
    for config in configs:
        where = f"track {config.track}" if config.track else f"{config.stream} / {config.model}"
        if args.resume and _is_complete(config.run_dir() / RESULTS_FILE):
            print(f"collapsebench: {config.run_dir()} is already complete; nothing to resume.")
            continue
        check_data(config, registry)
        from collapsebench.runner import execute  # torch and Avalanche: only once something trains

        print(f"collapsebench: {where} / {config.strategy}, seed {config.seed} -> {config.run_dir()}", flush=True)
        try:
            result = execute(config, manager, registry, resume=bool(args.resume),
                             trust_checkpoint=getattr(args, "trust_checkpoint", False))
        except KeyboardInterrupt:
            print(f"collapsebench: continue with: collapsebench run --resume {config.run_dir()}", file=sys.stderr)
            raise
        print(render_summary(result))
        print(f"\nRun directory: {config.run_dir()}  (tensorboard --logdir {config.run_dir()})")
        finished.append(result)
    if len(finished) > 1:
        from collapsebench.summary import render_seed_summary

        print("\n" + render_seed_summary(finished))
    return 0


def _is_complete(path) -> bool:
    from collapsebench.results import read_status

    return read_status(path) == "complete"


COMMANDS.update({"run": cmd_run, "plugins": cmd_plugins, "list": cmd_list})


if __name__ == "__main__":
    sys.exit(main())
