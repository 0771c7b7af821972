"""``collapsebench export``: run directories as tidy tables for pandas, R or a spreadsheet.

Each table has one row per observation and, on every row, the run's own columns (its directory,
status and config, with each component's resolved options as ``option.<kind>.<name>.<key>``),
so tables of many runs concatenate and group without a join:

- ``summaries``: one row per summary value (a per-experience summary gives one row per experience);
- ``metrics``: one row per evaluator record (``name``, ``kind``, ``layer``, ``experience``, ...);
- ``accuracy``: one row per measured cell of the accuracy matrix.

Only the standard library is imported at module level (the command list stays instant); parquet
needs pyarrow, which is imported only when asked for.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("csv", "parquet")
TABLES = ("summaries", "metrics", "accuracy")
#: Config keys that are where a run was made, or repeated in resolved form: not columns.
SKIPPED_CONFIG = ("resolved_options", "stream_options", "model_options", "strategy_options", "evaluator_options",
                  "data_root", "out")


def add_commands(subparsers, add_plugin_flag) -> dict:
    export = subparsers.add_parser(
        "export", help="write runs' summaries, metric records and accuracies as tidy CSV or parquet tables",
        description="Write the summaries, the evaluator records and the accuracy matrix of one or more runs as tidy "
                    "tables (one row per value, with the run's config columns on every row): "
                    "summaries.<fmt>, metrics.<fmt> and accuracy.<fmt> in --out.")
    export.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (each holds results.json)")
    export.add_argument("--format", choices=FORMATS, default="csv", help="table format (default csv; parquet needs pyarrow)")
    export.add_argument("--out", default="export", metavar="DIR", help="where the tables go (default ./export)")
    return {"export": cmd_export}


def cmd_export(args) -> int:
    from collapsebench.results import read_results

    results = [(str(run_dir), read_results(run_dir)) for run_dir in args.run_dirs]
    write = _parquet_writer() if args.format == "parquet" else write_csv
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in tables(results).items():
        path = out / f"{name}.{args.format}"
        write(path, rows)
        print(f"wrote {path} ({len(rows)} row{'' if len(rows) == 1 else 's'})", file=sys.stderr)
    return 0


def tables(results: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Table name -> rows (dicts), for ``(run_dir, result)`` pairs."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    for run_dir, result in results:
        run = run_columns(run_dir, result)
        for name, value in _summary_items(result.get("summary", {})):
            if isinstance(value, list):
                out["summaries"] += [{**run, "summary": name, "experience": i, "value": v} for i, v in enumerate(value)]
            else:
                out["summaries"].append({**run, "summary": name, "experience": None, "value": _cell(value)})
        for record in result.get("metrics", []):
            out["metrics"].append({**run, **{k: _cell(v) for k, v in record.items()}})
        for trained, row in enumerate(result.get("accuracy_matrix", [])):
            out["accuracy"] += [{**run, "trained_experience": trained, "test_experience": tested, "accuracy": value}
                                for tested, value in enumerate(row) if value is not None]
    return out


def _summary_items(summary: dict[str, Any], prefix: str = ""):
    """(name, value) pairs; a summary made of parts (a correlation's pearson, spearman, n) gives
    one name per part: ``forgetting_erank_correlation.pearson``."""
    for name, value in summary.items():
        if isinstance(value, dict):
            yield from _summary_items(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def run_columns(run_dir: str, result: dict[str, Any]) -> dict[str, Any]:
    """The columns that identify a run: directory, status, config scalars, resolved options."""
    config = result.get("config", {})
    columns: dict[str, Any] = {"run_dir": run_dir, "status": result.get("status")}
    for key, value in config.items():
        if key not in SKIPPED_CONFIG:
            columns[key] = _cell(value)
    for kind, components in (config.get("resolved_options") or {}).items():
        for component, options in (components or {}).items():
            for key, value in (options or {}).items():
                columns[f"option.{kind}.{component}.{key}"] = _cell(value)
    return columns


def _cell(value: Any) -> Any:
    """A value a flat table can hold: lists of names joined by commas, anything else nested as JSON."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in order of first appearance (runs may differ in their options)."""
    return list(dict.fromkeys(key for row in rows for key in row))


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns_of(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    from collapsebench.results import atomic_write_bytes

    atomic_write_bytes(path, csv_text(rows).encode())


def _parquet_writer():
    from collapsebench.errors import CollapsebenchError

    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CollapsebenchError(
            "--format parquet needs pyarrow, which is not installed: uv sync --extra export "
            "(or pip install pyarrow), or use --format csv."
        ) from None

    def column(values: list[Any]):
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) <= 1 or kinds == {int, float}:
            return pyarrow.array(values)
        # Values of several types in one column (a summary that is a number in one run and a flag
        # or text in another): a parquet column has one type, and pyarrow would turn True into
        # 1.0 or refuse, so the column is text, as in CSV.
        return pyarrow.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                             type=pyarrow.string())

    def write(path: Path, rows: Sequence[dict[str, Any]]) -> None:
        from collapsebench.results import atomic_write_bytes

        names = columns_of(rows)
        table = pyarrow.table({k: column([row.get(k) for row in rows]) for k in names}) if rows else pyarrow.table({})
        buffer = pyarrow.BufferOutputStream()
        pyarrow.parquet.write_table(table, buffer)
        atomic_write_bytes(path, buffer.getvalue().to_pybytes())

    return write


# --- leaderboard --format csv ----------------------------------------------------------------


def board_csv(boards, excluded, sort: str = "rank") -> str:
    """Every board as one tidy table: one row per submission and ranked or reported metric."""
    from collapsebench.leaderboard import verification
    from collapsebench.leaderboard.render import board_json

    rows = []
    for board in board_json(boards, excluded, sort)["boards"]:
        for entry in board["entries"]:
            base = {"track": board["track"], "fingerprint": board["fingerprint"], "rank": entry["rank"],
                    "tied_with": entry["tied_with"], "front": entry["front"], "name": entry["name"],
                    "strategy": entry["strategy"], "author": entry["author"], "file": entry["file"],
                    "verification": verification.describe(entry["verification"])}
            for metric, estimate in entry["metrics"].items():
                rows.append({**base, "metric": metric, "ranked": metric in board["rank"],
                             "mean": estimate["mean"], "ci95": estimate["ci95"], "low": estimate["low"],
                             "high": estimate["high"], "n_seeds": estimate["n"],
                             "statistic": "mean and 95% t-interval over seeds"})
    return csv_text(rows) if rows else ""
