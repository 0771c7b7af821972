"""collapsebench export (tidy CSV or parquet tables of runs) and leaderboard --format csv."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest

from report_synthetic import synthetic_result


def _run(directory, **kwargs):
    result = synthetic_result(**kwargs)
    result["config"]["resolved_options"] = {"strategy": {kwargs.get("strategy", "naive"): {"mem_size": 200}}}
    result["config"]["evaluators"] = ["weights", "activations"]
    result["summary"]["new_task_accuracy"] = [0.9, 0.8, 0.7]
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps(result))
    return directory, result


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_writes_tidy_csv_tables_with_config_columns(cli, tmp_path):
    (a, result_a), (b, _) = _run(tmp_path / "naive", strategy="naive"), _run(tmp_path / "replay", strategy="replay", seed=1)
    code, _, err = cli("export", a, b, "--out", tmp_path / "tables")
    assert code == 0, err
    summaries = _read(tmp_path / "tables" / "summaries.csv")
    row = next(r for r in summaries if r["run_dir"] == str(a) and r["summary"] == "average_accuracy")
    assert float(row["value"]) == pytest.approx(result_a["summary"]["average_accuracy"])
    assert row["strategy"] == "naive" and row["seed"] == "0" and row["evaluators"] == "weights,activations"
    assert row["option.strategy.naive.mem_size"] == "200" and row["experience"] == ""
    per_experience = [r for r in summaries if r["run_dir"] == str(b) and r["summary"] == "new_task_accuracy"]
    assert [(r["experience"], r["value"]) for r in per_experience] == [("0", "0.9"), ("1", "0.8"), ("2", "0.7")]
    parts = {r["summary"] for r in summaries if r["summary"].startswith("forgetting_erank_correlation")}
    assert parts == {"forgetting_erank_correlation.pearson", "forgetting_erank_correlation.spearman",
                     "forgetting_erank_correlation.n"}
    # A column of one run only (its strategy's options) is empty for the other, not misaligned.
    replay_row = next(r for r in summaries if r["strategy"] == "replay")
    assert replay_row["option.strategy.naive.mem_size"] == "" and replay_row["option.strategy.replay.mem_size"] == "200"

    metrics = _read(tmp_path / "tables" / "metrics.csv")
    assert len(metrics) == 2 * len(result_a["metrics"])
    first = result_a["metrics"][0]
    got = next(r for r in metrics if r["run_dir"] == str(a))
    assert (got["name"], got["kind"], got["layer"], got["experience"]) == (
        first["name"], first["kind"], first["layer"], str(first["experience"]))
    assert float(got["value"]) == pytest.approx(first["value"]) and got["strategy"] == "naive"

    accuracy = _read(tmp_path / "tables" / "accuracy.csv")
    cells = {(int(r["trained_experience"]), int(r["test_experience"])): float(r["accuracy"])
             for r in accuracy if r["run_dir"] == str(a)}
    assert cells[(3, 1)] == pytest.approx(result_a["accuracy_matrix"][3][1]) and len(cells) == 16


def test_export_of_a_folder_without_results_is_a_user_error(cli, tmp_path):
    code, _, err = cli("export", tmp_path, "--out", tmp_path / "tables")
    assert code == 2 and "results.json" in err and "Traceback" not in err


def test_parquet_without_pyarrow_says_what_to_install(cli, tmp_path, monkeypatch):
    """pyarrow is a dev dependency, so its absence is simulated: the import fails as if not installed."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    run, _ = _run(tmp_path / "naive")
    code, _, err = cli("export", run, "--format", "parquet", "--out", tmp_path / "tables")
    assert code == 2 and "uv sync --extra export" in err and "--format csv" in err and "Traceback" not in err
    assert not (tmp_path / "tables").exists()


@pytest.fixture
def pq():
    """pyarrow.parquet: a dev dependency (and the optional extra 'export')."""
    return pytest.importorskip("pyarrow.parquet")


def test_parquet_round_trip_of_two_runs(cli, tmp_path, pq):
    from collapsebench.export import tables

    (a, result_a), (b, result_b) = _run(tmp_path / "naive", strategy="naive"), _run(tmp_path / "replay", strategy="replay", seed=1)
    code, _, err = cli("export", a, b, "--format", "parquet", "--out", tmp_path / "tables")
    assert code == 0, err
    expected = tables([(str(a), result_a), (str(b), result_b)])
    for name, rows in expected.items():
        table = pq.read_table(tmp_path / "tables" / f"{name}.parquet")
        assert table.num_rows == len(rows) > 0
        assert table.to_pylist() == [{column: row.get(column) for column in table.column_names} for row in rows]
    summaries = pq.read_table(tmp_path / "tables" / "summaries.parquet")
    types = dict(zip(summaries.column_names, summaries.schema.types))
    assert str(types["value"]) == "double" and str(types["seed"]) == "int64" and str(types["strategy"]) == "string"
    # Same columns as the CSV tables, in the same order.
    cli("export", a, b, "--out", tmp_path / "csv")
    assert summaries.column_names == list(_read(tmp_path / "csv" / "summaries.csv")[0])


def test_a_parquet_column_of_mixed_types_is_text(cli, tmp_path, pq):
    run, result = _run(tmp_path / "naive")
    result["summary"]["converged"] = True  # a flag among numbers: one parquet column cannot hold both
    (run / "results.json").write_text(json.dumps(result))
    code, _, err = cli("export", run, "--format", "parquet", "--out", tmp_path / "tables")
    assert code == 0, err
    rows = pq.read_table(tmp_path / "tables" / "summaries.parquet").to_pylist()
    values = {row["summary"]: row["value"] for row in rows if row["experience"] is None}
    assert values["converged"] == "true"
    assert float(values["average_accuracy"]) == pytest.approx(result["summary"]["average_accuracy"])


def test_leaderboard_csv_has_one_row_per_entry_and_metric(cli):
    code, out, err = cli("leaderboard", "--format", "csv")
    assert code == 0, err
    code_json, out_json, _ = cli("leaderboard", "--format", "json")
    boards = json.loads(out_json)["boards"]
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == sum(len(entry["metrics"]) for board in boards for entry in board["entries"])
    assert len(boards) > 1  # forgetting and plasticity boards, which rank different metrics
    for board in boards:
        entry, metric = board["entries"][0], board["rank"][0]  # each board's own first ranked metric
        row = next(r for r in rows if r["name"] == entry["name"] and r["metric"] == metric and r["track"] == board["track"])
        estimate = entry["metrics"][metric]
        assert float(row["mean"]) == pytest.approx(estimate["mean"]) and float(row["low"]) == pytest.approx(estimate["low"])
        assert row["ranked"] == "True" and row["rank"] == str(entry["rank"])
        assert "95% t-interval" in row["statistic"]
