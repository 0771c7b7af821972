"""The commands ``submit``, ``leaderboard`` (and ``leaderboard validate``) and ``verify``.

Only the standard library is imported here, so that ``collapsebench --help`` stays instant; only
``verify`` trains, and so only it imports torch and Avalanche.
"""

from __future__ import annotations

import argparse
import os
import sys

#: --sort takes "rank" or a ranked metric: those the loaded evaluators declare, so checked when the plugins load.
SORT_DEFAULT = "rank"
FORMATS = ("table", "markdown", "json", "html", "csv")


def add_commands(subparsers, add_plugin_flag) -> dict:
    submit = subparsers.add_parser(
        "submit", help="turn the run directories of one strategy on one track into a leaderboard submission"
    )
    add_plugin_flag(submit)
    submit.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run directory per seed of the track")
    submit.add_argument("--name", help="the name shown on the board (default: the strategy)")
    submit.add_argument("--author", help="who ran it")
    submit.add_argument("--url", help="a link to the code or paper (http or https)")
    submit.add_argument("--replace", action="store_true", help="replace a submission with the same name or the same runs")
    _board_flag(submit)

    board = subparsers.add_parser(
        "leaderboard",
        help="show the leaderboard (or `leaderboard validate FILE`); --write regenerates its pages",
        description="Rank the submissions under leaderboard/submissions/ on accuracy and capacity retention.",
    )
    add_plugin_flag(board)
    board.add_argument("--track", help="only this track")
    board.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    board.add_argument("--sort", default=SORT_DEFAULT, metavar="METRIC",
                       help="order rows by this ranked metric's mean, e.g. average_accuracy (default rank)")
    board.add_argument("--write", action="store_true", help="also regenerate leaderboard/README.md and leaderboard/index.html")
    board.add_argument("--verified-only", action="store_true",
                       help="only submissions that `collapsebench verify` re-ran and recorded (ranked among themselves)")
    _board_flag(board)
    actions = board.add_subparsers(dest="leaderboard_action", metavar="ACTION")
    validate = actions.add_parser("validate", help="validate submission files; writes nothing, exits 1 if any is invalid")
    add_plugin_flag(validate)
    validate.add_argument("files", nargs="+", metavar="FILE")

    verify = subparsers.add_parser(
        "verify", help="re-run one seed of a submission and compare its accuracy matrix and summary"
    )
    add_plugin_flag(verify)
    verify.add_argument("submission", metavar="SUBMISSION", help="a submission file")
    verify.add_argument("--seed", type=int, help="which seed to re-run (default: the first)")
    verify.add_argument("--data-root", help="where the data set lives (default $COLLAPSEBENCH_DATA_ROOT or ./data)")
    verify.add_argument("--device", help="run on this device instead of the recorded one")
    verify.add_argument("--exact", action="store_true", help="demand bit-identical values, not the stated tolerance")
    verify.add_argument("--out", help="keep the re-run's directory here (default: a temporary one)")
    verify.add_argument("--trust", action="store_true",
                        help="import the collapsebench plugin modules and files the submission names without asking "
                             "(they run as code; installed entry points need no --trust)")
    verify.add_argument("--no-record", action="store_true",
                        help="do not add a passed verification to SUBMISSION's .verification record")
    return {"submit": cmd_submit, "leaderboard": cmd_leaderboard, "verify": cmd_verify}


def _board_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default="leaderboard", metavar="DIR", help="the board directory (default ./leaderboard)")


def cmd_submit(args) -> int:
    from collapsebench.errors import CollapsebenchError
    from collapsebench.leaderboard.bounded import MAX_AUTHOR, MAX_NAME, one_line_problem
    from collapsebench.leaderboard.submission import build_submission, write_submission

    for flag, value, limit in (("--name", args.name, MAX_NAME), ("--author", args.author, MAX_AUTHOR)):
        problem = value is not None and one_line_problem(value, limit)
        if problem:
            raise CollapsebenchError(f"{flag} {value!r}: {problem}; it is shown on the board as one line.")
    submission = build_submission(args.run_dirs, name=args.name, author=args.author, url=args.url, extra_plugins=args.plugin)
    path = write_submission(submission, args.board, replace=args.replace)
    sample = " (sample data)" if submission["data"]["sample"] else ""
    print(f"Submitted {submission['name']!r} ({len(submission['runs'])} seeds) to track "
          f"{submission['track']['name']}{sample}: {path}")
    print("`collapsebench leaderboard` shows the board; `collapsebench leaderboard --write` regenerates its pages.")
    return 0


def _check_sort(metric: str) -> None:
    from collapsebench.errors import unknown_name_error
    from collapsebench.leaderboard.ranking import METRICS

    if metric != SORT_DEFAULT and metric not in METRICS:
        raise unknown_name_error("metric", metric, [SORT_DEFAULT, *METRICS], hint="--sort takes one of them.")


def cmd_leaderboard(args) -> int:
    if args.leaderboard_action == "validate":
        return _validate_files(args)
    from collapsebench.errors import CollapsebenchError
    from collapsebench.leaderboard.board import installed_tracks, load_boards
    from collapsebench.leaderboard.render import RENDERERS, write_pages

    tracks = installed_tracks(args.plugin)
    if args.write and args.verified_only:
        raise CollapsebenchError("--write regenerates the committed pages, which show every submission; drop "
                                 "--verified-only (unverified entries are marked there).")
    _check_sort(args.sort)
    boards, excluded = load_boards(args.board, args.track, tracks, verified_only=args.verified_only)
    if args.format == "csv":
        from collapsebench.export import board_csv as render  # one tidy row per submission and metric
    else:
        render = RENDERERS[args.format]
    print(render(boards, excluded, args.sort), end="")
    if args.write:
        every_board, every_excluded = (boards, excluded) if args.track is None else load_boards(args.board, None, tracks)
        for path in write_pages(args.board, every_board, every_excluded):
            print(f"wrote {path}", file=sys.stderr)
    for item in excluded:
        print(f"collapsebench: warning: left out {item.path}: " + "; ".join(item.problems[:3]), file=sys.stderr)
    return 0


def _validate_files(args) -> int:
    from collapsebench.errors import CollapsebenchError
    from collapsebench.leaderboard.board import installed_tracks
    from collapsebench.leaderboard.bounded import read_submission
    from collapsebench.leaderboard.validate import check_submission

    # Only installed and --plugin collapsebench plugins: validating a file must not run code it names.
    tracks = installed_tracks(args.plugin)
    folders = [file for file in args.files if os.path.isdir(file)]
    if folders:
        raise CollapsebenchError(f"leaderboard validate takes submission files; {folders[0]!r} is a directory "
                                 f"(validate its files with: collapsebench leaderboard validate {folders[0]}/*/*.json).")
    failed = 0
    for file in args.files:
        try:
            submission = read_submission(file)
        except CollapsebenchError as exc:
            problems = getattr(exc, "problems", [str(exc)])
        else:
            track = submission.get("track") if isinstance(submission, dict) else None
            name = track.get("name") if isinstance(track, dict) else None
            problems = check_submission(submission, tracks.get(name) if isinstance(name, str) else None,
                                        require_track=True)
        if problems:
            failed += 1
            print(f"{file}: INVALID ({len(problems)} problem(s))")
            print("\n".join(f"  - {p}" for p in problems))
        else:
            print(f"{file}: valid ({submission['strategy']['spec']} on {submission['track']['name']}, "
                  f"{len(submission['runs'])} seeds{', sample data' if submission['data']['sample'] else ''})")
    return 1 if failed else 0


def cmd_verify(args) -> int:
    from collapsebench.leaderboard.bounded import read_submission
    from collapsebench.leaderboard.verify import verify

    from collapsebench.leaderboard.verification import record

    from collapsebench.leaderboard.validate import SubmissionInvalid, check_submission

    submission = read_submission(args.submission)
    # What can be judged without the plugins is, before any of them is imported.
    problems = check_submission(submission)
    if problems:
        raise SubmissionInvalid(repr(str(args.submission)), problems)
    _confirm_imports(submission, args)
    verdict = verify(submission, seed=args.seed, plugins=args.plugin, data_root=args.data_root,
                     device=args.device, exact=args.exact, out=args.out)
    print(verdict.describe())
    if not verdict.passed:
        return 1
    if not args.no_record:
        print(f"Recorded in {record(args.submission, submission, verdict, device=args.device)}; boards show the submission as verified.")
    return 0


def _confirm_imports(submission, args) -> None:
    """Say what verify will import, and from where, before anything runs; plugins that are not
    installed entry points need --trust (or a yes at a terminal)."""
    import importlib.util

    from collapsebench.errors import CollapsebenchError
    from collapsebench.leaderboard.submission import plugin_specs
    from collapsebench.manager import _entry_points

    records = submission.get("plugins") if isinstance(submission, dict) else None
    replaced = {os.path.splitext(os.path.basename(spec))[0] for spec in args.plugin}  # as load_manager does
    named = plugin_specs([r for r in records if isinstance(r, dict) and r.get("name") not in replaced]
                         if isinstance(records, list) else [])
    installed = sorted(f"{name} ({ep.value})" for name, ep in _entry_points().items())
    print("verify will load the installed collapsebench plugins (entry points): " + (", ".join(installed) or "none"))
    if args.plugin:
        print("and, from --plugin: " + ", ".join(args.plugin))
    if not named:
        return
    print("The submission names collapsebench plugins that are not installed entry points; importing them runs their code:")
    for spec in named:
        if spec.endswith(".py"):
            print(f"  - file {os.path.abspath(spec)}")
        else:
            top = spec.split(".")[0]
            found = importlib.util.find_spec(top) if top.isidentifier() else None  # a top-level lookup runs nothing
            where = found.origin if found and found.origin else "not found on sys.path"
            print(f"  - module {spec} (package {top} from {where})")
    if args.trust:
        return
    if sys.stdin.isatty() and sys.stdout.isatty():
        if input("Import and run them? [y/N] ").strip().lower() in ("y", "yes"):
            return
        raise CollapsebenchError("Not verified: you declined to import the submission's collapsebench plugins.")
    raise CollapsebenchError("verify imports and runs the collapsebench plugins listed above; read them, then pass "
                             "--trust to go ahead (docs/leaderboard.md).")
