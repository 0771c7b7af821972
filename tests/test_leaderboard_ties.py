"""Entries the seeds cannot tell apart share a rank group; cells carry the board's one interval."""

from __future__ import annotations

from collapsebench.leaderboard.ranking import estimate, rank_board, shown_rank
from collapsebench.leaderboard.render import cell


def _submission(name, accuracy, retention):
    return {"name": name, "runs": [{"summary": {"average_accuracy": a, "capacity_retention": r}}
                                   for a, r in zip(accuracy, retention)]}


def test_overlapping_entries_share_a_rank_group():
    board = rank_board([
        _submission("best", [0.90, 0.91, 0.92], [0.95, 0.96, 0.97]),
        _submission("twin_b", [0.50, 0.52, 0.54], [0.70, 0.75, 0.80]),
        _submission("twin_a", [0.50, 0.52, 0.54], [0.70, 0.75, 0.80]),
        _submission("close", [0.49, 0.51, 0.53], [0.69, 0.74, 0.79]),
        _submission("worst", [0.10, 0.11, 0.12], [0.30, 0.31, 0.32]),
    ])
    shown = {e.name: shown_rank(e) for e in board}
    assert shown["best"] == "1" and shown["worst"] == "5"
    assert shown["twin_a"] == shown["twin_b"] == shown["close"] == "2="
    assert [e.rank for e in board] == [1, 2, 3, 4, 5]  # positions are kept for sorting


def test_one_overlap_is_not_enough():
    # overlapping on accuracy, far apart on capacity retention: not tied
    board = rank_board([_submission("keeps", [0.5, 0.52, 0.54], [0.95, 0.96, 0.97]),
                        _submission("loses", [0.5, 0.52, 0.54], [0.30, 0.31, 0.32])])
    assert [shown_rank(e) for e in board] == ["1", "2"]


def test_bounded_cells_stay_inside_their_bounds():
    entry = rank_board([_submission("x", [0.9, 1.0, 1.0], [0.85, 1.0, 1.0])])[0]
    assert entry.estimates["capacity_retention"].high == 1.0
    assert cell(entry, "capacity_retention").endswith("1.000]")
    assert estimate([0.1, 0.2, 0.3]).ci95 == estimate([0.1, 0.2, 0.3], "average_accuracy").ci95


def test_verify_counts_null_and_nan_as_the_same_undefined_value():
    from collapsebench.leaderboard.verify import compare

    recorded = {"summary": {"forgetting_erank_correlation": {"pearson": None, "spearman": None, "n": 4}}}
    rerun = {"summary": {"forgetting_erank_correlation": {"pearson": float("nan"), "spearman": float("nan"), "n": 4}}}
    assert compare(recorded, rerun, "run") == []
    assert compare({"x": float("nan")}, {"x": float("nan")}, "run") == []
    # a defined value against an undefined one is still a difference
    assert [d.field for d in compare({"x": 0.5, "y": None}, {"x": float("nan"), "y": 0.1}, "run")] == ["run.x", "run.y"]
