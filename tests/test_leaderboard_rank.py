"""A track declares what its board ranks on; the ranking, the board and the pages follow it."""

from __future__ import annotations

import dataclasses

import pytest

from collapsebench.errors import CollapsebenchError
from collapsebench.leaderboard.board import load_boards
from collapsebench.leaderboard.ranking import DEFAULT_RANK, rank_board, ranking_rule
from collapsebench.leaderboard.render import render_markdown
from collapsebench.leaderboard.submission import build_submission, write_submission
from collapsebench.tracks import read_track
from leaderboard_helpers import TRACK, track_record, write_runs


def _submission(name, **summary):
    return {"name": name, "runs": [{"summary": summary}]}


def test_rank_board_ranks_on_the_declared_metrics():
    submissions = [
        _submission("accurate", average_accuracy=0.9, capacity_retention=0.9, plasticity_retention=0.3),
        _submission("plastic", average_accuracy=0.2, capacity_retention=0.8, plasticity_retention=1.0),
        _submission("unmeasured", average_accuracy=0.99, capacity_retention=0.99),
    ]
    default = rank_board(submissions)
    assert [e.name for e in default] == ["unmeasured", "accurate", "plastic"]
    plasticity = rank_board(submissions, ("plasticity_retention", "capacity_retention"))
    # both measured ones are on front 1 (each beats the other on one metric); equal scores go by name
    assert [(e.name, e.front) for e in plasticity] == [("accurate", 1), ("plastic", 1), ("unmeasured", None)]
    alone = rank_board(submissions, ("plasticity_retention",))
    assert [(e.name, e.front) for e in alone] == [("plastic", 1), ("accurate", 2), ("unmeasured", None)]


def test_lower_is_better_metrics_rank_the_right_way():
    submissions = [_submission("forgets", forgetting=0.6, dead_units=0.1),
                   _submission("keeps", forgetting=0.1, dead_units=0.05)]
    assert [(e.name, e.front) for e in rank_board(submissions, ("forgetting", "dead_units"))] == [
        ("keeps", 1), ("forgets", 2)]


def test_a_track_file_declares_rank_and_bad_declarations_are_explained(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[track]\nseeds = [0]\nrank = ["plasticity_retention", "capacity_retention"]\n'
                    '[run]\nstream = "split-digits"\nmodel = "mlp"\n')
    assert read_track(path).rank == ("plasticity_retention", "capacity_retention")
    path.write_text('[track]\nseeds = [0]\n[run]\nstream = "split-digits"\nmodel = "mlp"\n')
    assert read_track(path).rank is None
    for bad, message in (('["accuracy"]', "'accuracy' is not a ranked metric"), ("[]", "non-empty list"),
                         ('["forgetting", "forgetting"]', "names a metric twice")):
        path.write_text(f'[track]\nseeds = [0]\nrank = {bad}\n[run]\nstream = "split-digits"\nmodel = "mlp"\n')
        with pytest.raises(CollapsebenchError, match=message):
            read_track(path)


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    runs = tmp_path_factory.mktemp("runs")
    # skill sets accuracy (and so forgetting); collapse sets capacity retention
    for strategy, skill, collapse in (("naive", 0.2, 0.9), ("replay", 0.8, 0.5)):
        write_submission(build_submission(write_runs(runs, strategy, skill=skill, collapse=collapse)), root)
    return root


def test_the_board_takes_its_ranking_from_the_installed_track(board_dir):
    track = track_record(TRACK)
    (default_board,), excluded = load_boards(board_dir, tracks={TRACK: track})
    assert not excluded and default_board.rank == DEFAULT_RANK
    # replay: higher accuracy, lower retention; naive the reverse: one front, names break the tie
    assert [(e.name, e.front) for e in default_board.entries] == [("naive", 1), ("replay", 1)]
    declared = dataclasses.replace(track, rank=("forgetting",))
    (board,), excluded = load_boards(board_dir, tracks={TRACK: declared})
    assert not excluded and board.rank == ("forgetting",)
    assert [(e.name, e.front) for e in board.entries] == [("replay", 1), ("naive", 2)]  # replay forgets less
    page = render_markdown([board], [])
    assert "**Ranking on this board.** " + ranking_rule(("forgetting",)) in page
    assert "Ranking on this board" not in render_markdown([default_board], [])
