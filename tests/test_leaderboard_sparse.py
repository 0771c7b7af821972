"""Submissions of runs under sparse evaluation protocols: null cells accepted where the protocol
did not measure, summaries recomputed from what was measured, none taken from missing cells."""

from __future__ import annotations

import copy
import json
import textwrap

import pytest

from collapsebench.leaderboard import hashing
from collapsebench.leaderboard.ranking import rank_board
from collapsebench.leaderboard.submission import build_submission
from collapsebench.leaderboard.validate import check_submission
from collapsebench.metrics.accuracy import accuracy_summaries
from collapsebench.protocols import parse
from leaderboard_helpers import fake_results, track_record

SPARSE_TRACK = "split-digits-mlp-current"
RANK = ["plasticity_retention", "capacity_retention"]


@pytest.fixture(scope="module")
def sparse_plugin(tmp_path_factory):
    """A collapsebench plugin with a copy of split-digits-mlp evaluated under ``current``."""
    root = tmp_path_factory.mktemp("sparse_track")
    tracks = root / "tracks"
    tracks.mkdir()
    text = track_record().path.read_text()
    text = text.replace("[track]\n", f'[track]\nrank = {json.dumps(RANK)}\n', 1).replace(
        "[run]\n", '[run]\nevaluation = "current"\n', 1)
    (tracks / f"{SPARSE_TRACK}.toml").write_text(text)
    plugin = root / "sparse_track_plugin.py"
    plugin.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from collapsebench import hookimpl

        @hookimpl
        def collapsebench_track_dirs():
            return [Path({str(tracks)!r})]
    """))
    return str(plugin)


def sparse_results(seed: int, protocol: str = "current", strategy: str = "naive", skill: float = 0.5) -> dict:
    """``fake_results`` as the runner writes it under ``protocol``: unmeasured cells null."""
    result = fake_results(seed, strategy, skill=skill)
    matrix = result["accuracy_matrix"]
    size = len(matrix)
    chosen = parse(protocol)
    for i in range(size):
        kept = set(chosen.columns(i, size))
        matrix[i] = [value if j in kept else None for j, value in enumerate(matrix[i])]
    online = [round(0.9 - 0.1 * i + 0.01 * seed, 4) for i in range(size)]
    found = accuracy_summaries(matrix, online, chosen.name)
    summary = {k: v for k, v in result["summary"].items() if k not in ("average_accuracy", "forgetting", "bwt")}
    summary.update(found.values)
    result.update(
        accuracy_matrix=matrix, summary=summary, online_accuracy=online, summary_unavailable=found.unavailable,
        summary_sources=found.sources, evaluation={"protocol": chosen.name, "measured_cells": chosen.measured_cells(size)},
    )
    result["config"].update(track=SPARSE_TRACK, evaluation=protocol)
    return result


def write_sparse_runs(root, strategy="naive", protocol="current", skill=0.5):
    dirs = []
    for seed in (0, 1, 2):
        run_dir = root / strategy / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_text(json.dumps(sparse_results(seed, protocol, strategy, skill)))
        dirs.append(run_dir)
    return dirs


def rehashed(submission):
    submission["content_hash"] = hashing.content_hash(submission)
    return submission


@pytest.fixture(scope="module")
def sparse_submission(sparse_plugin, tmp_path_factory):
    return build_submission(write_sparse_runs(tmp_path_factory.mktemp("runs")), extra_plugins=[sparse_plugin])


def sparse_track(sparse_plugin):
    return track_record(SPARSE_TRACK, (sparse_plugin,))


def test_a_current_run_is_submitted_with_its_measured_cells_and_summaries_only(sparse_submission, sparse_plugin):
    assert check_submission(sparse_submission, sparse_track(sparse_plugin)) == []
    run = sparse_submission["runs"][0]
    # only the measured cells travel: one per row under current
    assert "accuracy_matrix" not in run and [len(row) for row in run["accuracy_rows"]] == [1] * 5
    stored = sparse_results(0)["accuracy_matrix"]
    assert run["accuracy_rows"] == [[stored[i][i]] for i in range(5)]
    assert run["evaluation"] == {"protocol": "current", "measured_cells": 5}
    assert {"average_accuracy", "forgetting", "bwt"}.isdisjoint(run["summary"])
    assert "forgetting" in run["summary_unavailable"] and run["online_accuracy"]
    assert sparse_submission["track"]["rank"] == RANK
    assert sparse_submission["track"]["protocol"]["evaluation"] == "current"
    (entry,) = rank_board([sparse_submission], tuple(RANK))
    assert entry.front == 1
    assert entry.estimates["plasticity_retention"].values == tuple(r["summary"]["plasticity_retention"]
                                                                   for r in sparse_submission["runs"])


def _refused(submission, track, mutate, expected):
    mutated = copy.deepcopy(submission)
    mutate(mutated)
    problems = check_submission(rehashed(mutated), track)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("key, value", [("forgetting", 0.1), ("bwt", -0.2), ("average_accuracy", 0.4)])
def test_summaries_from_unmeasured_cells_are_refused(sparse_submission, sparse_plugin, key, value):
    _refused(sparse_submission, sparse_track(sparse_plugin), lambda s: s["runs"][1]["summary"].__setitem__(key, value),
             f"runs[1].summary.{key}: reported, but cannot come from what was measured")


def test_plasticity_summaries_are_recomputed_from_the_stored_series(sparse_submission, sparse_plugin):
    track = sparse_track(sparse_plugin)
    _refused(sparse_submission, track, lambda s: s["runs"][0]["summary"].__setitem__("plasticity_retention", 0.9),
             "runs[0].summary.plasticity_retention: 0.9 but the accuracy matrix gives")
    _refused(sparse_submission, track, lambda s: s["runs"][0]["accuracy_rows"][2].__setitem__(0, 0.0),
             "runs[0].summary.new_task_accuracy")
    _refused(sparse_submission, track, lambda s: s["runs"][0]["summary"]["new_task_accuracy"].__setitem__(2, 0.0),
             "runs[0].summary.new_task_accuracy")
    _refused(sparse_submission, track, lambda s: s["runs"][2]["online_accuracy"].__setitem__(0, 0.1),
             "runs[2].summary.online_plasticity_retention")
    _refused(sparse_submission, track, lambda s: s["runs"][2].pop("online_accuracy"),
             "runs[2].summary.online_plasticity_retention: reported, but cannot come from what was measured "
             "(it needs online_accuracy")


def as_matrix(submission):
    """The same submission with each run's matrix stored in full, nulls included."""
    from collapsebench.leaderboard.cells import run_matrix

    for run in submission["runs"]:
        run["accuracy_matrix"] = run_matrix(run)
        del run["accuracy_rows"]


def test_the_full_form_with_nulls_is_accepted_too(sparse_submission, sparse_plugin):
    full = copy.deepcopy(sparse_submission)
    as_matrix(full)
    assert full["runs"][0]["accuracy_matrix"][1][0] is None
    assert check_submission(rehashed(full), sparse_track(sparse_plugin)) == []


def test_the_matrix_must_hold_exactly_the_protocols_cells(sparse_submission, sparse_plugin):
    track = sparse_track(sparse_plugin)
    _refused(sparse_submission, track, lambda s: (as_matrix(s), s["runs"][0]["accuracy_matrix"][3].__setitem__(0, 0.5)),
             "runs[0].accuracy_matrix: not the cells protocol 'current' measures: [3][0] is measured")
    _refused(sparse_submission, track, lambda s: (as_matrix(s), s["runs"][0]["accuracy_matrix"][3].__setitem__(3, None)),
             "[3][3] is null")
    _refused(sparse_submission, track, lambda s: s["runs"][0]["accuracy_rows"][3].append(0.5),
             "runs[0].accuracy_rows: row 3 holds 2 values; protocol 'current' measures 1 after experience 3")
    _refused(sparse_submission, track, lambda s: s["runs"][0]["accuracy_rows"].pop(),
             "runs[0].accuracy_rows: 4 rows for 5 experiences")
    _refused(sparse_submission, track, lambda s: s["runs"][0].__setitem__("accuracy_matrix", [[0.5] * 5] * 5),
             "runs[0]: needs exactly one of accuracy_matrix")
    _refused(sparse_submission, track, lambda s: s["runs"][0].pop("evaluation"),
             "runs[0].accuracy_rows: needs evaluation.protocol")
    _refused(sparse_submission, track, lambda s: s["runs"][0]["evaluation"].__setitem__("measured_cells", 25),
             "runs[0].evaluation.measured_cells: 25 but protocol 'current' measures 5")
    _refused(sparse_submission, track, lambda s: (as_matrix(s), s["runs"][0]["evaluation"].__setitem__("protocol", "seen")),
             "runs[0].evaluation.protocol: 'seen' but the run's config sets 'current'")
    _refused(sparse_submission, track, lambda s: (as_matrix(s), s["runs"][0]["evaluation"].__setitem__("protocol", "sometimes")),
             "runs[0].evaluation.protocol: evaluation must be one of")
    _refused(sparse_submission, track, lambda s: s["runs"][0]["evaluation"].__setitem__("protocol", "sometimes"),
             "runs[0].accuracy_rows: evaluation must be one of")


def test_the_track_fixes_the_protocol(sparse_submission, sparse_plugin):
    def every_two(s):
        s["track"]["protocol"]["evaluation"] = "every:2"
        for run in s["runs"]:
            run["config"]["evaluation"] = "every:2"
    _refused(sparse_submission, sparse_track(sparse_plugin), every_two,
             "track.protocol.evaluation: 'every:2' but the track file")


def test_a_full_matrix_with_nulls_and_no_protocol_is_refused(tmp_path):
    """A submission made before protocols existed measured everything; a null there is an error."""
    from leaderboard_helpers import write_runs

    submission = build_submission(write_runs(tmp_path))
    for run in submission["runs"]:
        run.pop("evaluation", None)
    assert check_submission(rehashed(submission), track_record()) == []  # the old form still loads
    _refused(submission, track_record(), lambda s: s["runs"][0]["accuracy_matrix"][0].__setitem__(1, None),
             "runs[0].accuracy_matrix: not the cells protocol 'full' measures: [0][1] is null")


def test_a_seen_run_keeps_bwt_but_not_forgetting(sparse_plugin, tmp_path):
    results = sparse_results(0, "seen")
    assert "bwt" in results["summary"] and "average_accuracy" in results["summary"]
    assert "forgetting" not in results["summary"]
    # one run's entry checked on its own: the sparse track fixes current, not seen
    from collapsebench.leaderboard.submission import _read_run, _run_entry
    from collapsebench.leaderboard.validate import _matrix_and_summary

    run = _run_entry(*_read_run(write_sparse_runs(tmp_path, protocol="seen")[0]))
    assert [len(row) for row in run["accuracy_rows"]] == [1, 2, 3, 4, 5]
    assert _matrix_and_summary(run, "r") == []
    run["summary"]["bwt"] += 0.1
    assert any(p.startswith("r.summary.bwt:") for p in _matrix_and_summary(run, "r"))
    run["summary"]["forgetting"] = 0.0
    assert any(p.startswith("r.summary.forgetting: reported, but") for p in _matrix_and_summary(run, "r"))


def test_new_task_accuracy_ranks_as_its_mean_over_tasks(sparse_submission):
    (entry,) = rank_board([sparse_submission], ("new_task_accuracy",))
    expected = tuple(sum(r["summary"]["new_task_accuracy"]) / 5 for r in sparse_submission["runs"])
    assert entry.estimates["new_task_accuracy"].values == pytest.approx(expected)


def test_a_long_current_submission_stays_small(sparse_plugin):
    """2,000 tasks under current: the rows form holds 2,000 values, not four million nulls."""
    from collapsebench.leaderboard.cells import dense, measured_rows

    size = 2000
    protocol = parse("current")
    matrix = [[0.5 if i == j else None for j in range(size)] for i in range(size)]
    rows = measured_rows(matrix, protocol)
    assert len(json.dumps(rows)) < 20 * size and dense(rows, protocol, size) == matrix
