"""Reading the board: every submission file, validated, grouped into boards and ranked.

One board is one track on one data fingerprint, so results on a sample of a data set are never
ranked against results on all of it. Files that fail validation are left off the boards and
listed with their problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError
from collapsebench.leaderboard import submissions_dir, verification
from collapsebench.leaderboard.ranking import DEFAULT_RANK, Entry, rank_board
from collapsebench.leaderboard.submission import read_submission
from collapsebench.leaderboard.validate import check_submission


@dataclass
class Board:
    track: str
    track_description: str
    fingerprint: str
    data_description: str
    sample: bool
    installed_track: bool  # False: the protocol was checked against the submissions' own record only
    entries: list[Entry]
    rank: tuple[str, ...] = DEFAULT_RANK  # what the track declares its board ranks on

    @property
    def title(self) -> str:
        return f"{self.track} (sample data)" if self.sample else self.track

    @property
    def key(self) -> str:
        """A short name that tells boards of one track apart (an HTML anchor, a file stem)."""
        return f"{self.track}-{self.fingerprint}"


@dataclass
class Excluded:
    path: Path
    problems: list[str]


def installed_tracks(plugins=()) -> dict[str, Any]:
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry
    from collapsebench.tracks import load_tracks

    manager = build_manager(list(plugins))
    Registry(manager)  # the boards rank and check what these plugins' evaluators declare
    return load_tracks(manager)


def board_rank(track, submissions: list[dict[str, Any]]) -> tuple[str, ...]:
    """The installed track's ``rank`` declaration; else the one its submissions recorded; else the default."""
    if track is not None:
        return tuple(track.rank or DEFAULT_RANK)
    recorded = {tuple(s["track"].get("rank") or DEFAULT_RANK) for s in submissions}
    return recorded.pop() if len(recorded) == 1 else DEFAULT_RANK


def load_boards(board_dir: str | Path, track: str | None = None, tracks: dict[str, Any] | None = None,
                verified_only: bool = False) -> tuple[list[Board], list[Excluded]]:
    """Every valid submission under ``board_dir``, ranked per board; and the files left out.

    Each submission carries ``_verification`` (collapsebench.leaderboard.verification.status);
    ``verified_only`` keeps only those with one, ranked among themselves.
    """
    root = submissions_dir(Path(board_dir))
    if tracks is None:
        tracks = installed_tracks()
    if track is not None and not (root / track).is_dir() and track not in tracks:
        raise CollapsebenchError(f"No track {track!r}: not installed, and {root} has no submissions for it.")
    valid: dict[tuple[str, str], list[dict[str, Any]]] = {}
    excluded = []
    for path in sorted(root.glob("*/*.json")):
        if track is not None and path.parent.name != track:
            continue
        try:
            submission = read_submission(path)
        except CollapsebenchError as exc:
            excluded.append(Excluded(path, getattr(exc, "problems", [str(exc)])))
            continue
        track_record = submission.get("track") if isinstance(submission, dict) else None
        claimed = track_record.get("name") if isinstance(track_record, dict) else None
        problems = check_submission(submission, tracks.get(claimed) if isinstance(claimed, str) else None)
        if not problems and claimed != path.parent.name:
            problems = [f"track.name: {claimed!r}, but the file is in the folder of track {path.parent.name!r}"]
        if problems:
            excluded.append(Excluded(path, problems))
            continue
        submission["_file"] = str(path)
        submission["_verification"] = verification.status(path, submission)
        if verified_only and submission["_verification"] is None:
            continue
        valid.setdefault((claimed, submission["data"]["fingerprint"]), []).append(submission)
    boards = []
    for (track_name, fingerprint), submissions in sorted(valid.items()):
        first = submissions[0]
        rank = board_rank(tracks.get(track_name), submissions)
        boards.append(Board(
            track=track_name,
            track_description=first["track"]["description"],
            fingerprint=fingerprint,
            data_description=first["data"]["description"],
            sample=first["data"]["sample"],
            installed_track=track_name in tracks,
            entries=rank_board(submissions, rank),
            rank=rank,
        ))
    return boards, excluded
