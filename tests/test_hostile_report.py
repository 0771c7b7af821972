"""Hostile input to `collapsebench report` (issue 17): damaged matrices, -o on a folder, a run named twice."""

from __future__ import annotations

import json

import pytest

from report_synthetic import synthetic_result, write_run


def damage(run_dir, edit):
    path = run_dir / "results.json"
    result = json.loads(path.read_text())
    edit(result)
    path.write_text(json.dumps(result))


@pytest.mark.parametrize("edit, fragment", [
    (lambda r: r["accuracy_matrix"][1].__setitem__(0, "0.9"), "accuracy_matrix[1][0] must be a number (or null where unmeasured), got '0.9'"),
    (lambda r: r["accuracy_matrix"].__setitem__(2, None), "row 2 of accuracy_matrix must be a list, got None"),
    (lambda r: r.__setitem__("accuracy_matrix", "oops"), "accuracy_matrix must be a list of rows, got str"),
    (lambda r: r["accuracy_matrix"][0].__setitem__(0, True), "accuracy_matrix[0][0] must be a number"),
])
def test_a_damaged_matrix_is_a_message(cli, tmp_path, edit, fragment):
    run = write_run(tmp_path / "run")
    damage(run, edit)
    code, out, err = cli("report", run, "-o", tmp_path / "page.html")
    assert code == 2, err
    assert fragment in err and "results.json" in err and "Traceback" not in err
    assert list(tmp_path.glob("*.png")) == []


def test_null_cells_are_legitimate(tmp_path):
    """null marks a cell the evaluation protocol did not measure: not an error."""
    from collapsebench.report.runs import check_matrix, load_runs

    run = write_run(tmp_path / "run")
    damage(run, lambda r: r["accuracy_matrix"][0].__setitem__(3, None))
    check_matrix(load_runs([run])[0])


def test_output_on_a_folder_fails_before_any_png(cli, tmp_path):
    run = write_run(tmp_path / "run")
    folder = tmp_path / "out"
    folder.mkdir()
    code, out, err = cli("report", run, "-o", folder)
    assert code == 2 and "is a folder; give the path of the .html page" in err
    assert list(tmp_path.rglob("*.png")) == []


def test_output_below_a_file(cli, tmp_path):
    run = write_run(tmp_path / "run")
    (tmp_path / "file").write_text("")
    code, out, err = cli("report", run, "-o", tmp_path / "file" / "page.html")
    assert code == 2 and "is a file, not a folder" in err


def test_one_run_named_twice_counts_once(tmp_path):
    from collapsebench.report.cli import _check_dirs

    run = write_run(tmp_path / "run")
    other = write_run(tmp_path / "other", seed=1)
    assert _check_dirs([str(run), str(run), str(run / "results.json"), str(other)]) == [run, other]
