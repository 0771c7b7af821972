"""``collapsebench report`` and ``collapsebench tensorboard``.

Imports only the standard library at module level (the CLI's --help must stay instant);
matplotlib, torch and TensorBoard load inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from collapsebench.errors import CollapsebenchError

DEFAULT_PAGE = "report.html"


def add_commands(subparsers, add_plugin_flag) -> dict:
    report = subparsers.add_parser(
        "report",
        help="draw the collapse figures of one or more run directories into a self-contained HTML page",
        description="Write one HTML file (figures embedded, no network needed) and each figure as a PNG beside it. "
        "Several runs are overlaid by strategy; seeds of one strategy are pooled.",
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (or their results.json)")
    report.add_argument("-o", "--output", metavar="FILE",
                        help=f"the HTML file (default: RUN_DIR/{DEFAULT_PAGE} for one run, ./{DEFAULT_PAGE} for several)")
    report.add_argument("--title", help="page title (default: names the strategies)")
    report.add_argument("--tensorboard", action="store_true",
                        help="also log the figures at every experience (and a custom-scalars layout) to each run's TensorBoard")

    board = subparsers.add_parser(
        "tensorboard",
        help="open TensorBoard on run directories (a thin wrapper over tensorboard --logdir/--logdir_spec)",
        description="Runs TensorBoard on the given runs, each under its directory's name. Runs without a "
        "custom-scalars layout (every layer of a metric in one chart) get one added first.",
    )
    board.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    board.add_argument("--port", type=int, help="TensorBoard's port (default: TensorBoard's own, 6006)")
    board.add_argument("--host", help="address to serve on (default: TensorBoard's own, localhost)")
    board.add_argument("--no-layout", action="store_true", help="do not add a layout to runs that lack one")
    board.add_argument("--dry-run", action="store_true", help="print the tensorboard command instead of running it")
    return {"report": cmd_report, "tensorboard": cmd_tensorboard}


def _check_dirs(paths: list[str]) -> list[Path]:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise CollapsebenchError(f"No such run directory: {', '.join(map(repr, missing))}.")
    # One run named twice (DIR DIR, or DIR and DIR/results.json) is one run, not two seeds.
    unique: dict[Path, Path] = {}
    for p in map(Path, paths):
        key = (p / "results.json" if p.is_dir() else p).resolve()
        unique.setdefault(key, p)
    return list(unique.values())


def _check_output(output: Path) -> Path:
    """The page to write: checked before any figure is drawn, since the PNGs go beside it."""
    if output.is_dir():
        raise CollapsebenchError(f"-o {str(output)!r} is a folder; give the path of the .html page to write "
                                 f"(for example {str(output / DEFAULT_PAGE)!r}).")
    parent = output.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CollapsebenchError(f"-o {str(output)!r} cannot be written: {str(parent)!r} is a file, not a folder.")
    return output


def cmd_report(args: argparse.Namespace) -> int:
    paths = _check_dirs(args.run_dirs)
    from collapsebench.report.html import write_report
    from collapsebench.report.runs import load_runs

    runs = load_runs(paths)
    if args.output:
        output = _check_output(Path(args.output))
    elif len(paths) == 1 and paths[0].is_dir():
        output = paths[0] / DEFAULT_PAGE
    else:
        output = Path(DEFAULT_PAGE)
    files = write_report(runs, output, title=args.title)
    print(f"Report: {files.page} ({len(files.images)} figures; PNGs beside it as {files.page.stem}-<figure>.png)")
    for name, why in files.missing.items():
        print(f"  not drawn: {name}: {why}")
    if args.tensorboard:
        from collapsebench.report.tensorboard import log_run_directory

        for run in runs:
            run_dir = run.path if run.path.is_dir() else run.path.parent
            written = log_run_directory(run_dir)
            print(f"TensorBoard: {run_dir}: figures at {len(written['images'])} experiences"
                  + (", custom-scalars layout added" if written["layout"] else ""))
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    import subprocess

    paths = _check_dirs(args.run_dirs)
    from collapsebench.report.tensorboard import tensorboard_command

    extra = []
    if args.port is not None:
        extra += ["--port", str(args.port)]
    if args.host:
        extra += ["--host", args.host]
    if args.dry_run:
        print(" ".join(tensorboard_command(paths, extra)))
        return 0
    if not args.no_layout:
        from collapsebench.report.tensorboard import has_layout, log_run_directory

        for path in paths:
            if (path / "results.json").exists() and not has_layout(path):
                log_run_directory(path, images=False)
                print(f"collapsebench: added a custom-scalars layout to {path}")
    command = tensorboard_command(paths, extra)  # after the layouts: they may have made a run's event folder
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0
