"""The leaderboard: submissions built from run directories, validated, ranked and rendered.

Only ``verify`` trains (and so imports torch and Avalanche); everything else here reads JSON and
stays fast. A submission is one strategy on one track, every seed of the track, in one JSON file
under ``leaderboard/submissions/<track>/``.
"""

from __future__ import annotations

from pathlib import Path

#: Where the board lives, relative to the working directory (a checkout's root).
DEFAULT_BOARD_DIR = Path("leaderboard")
SUBMISSIONS = "submissions"
FORMAT = "collapsebench-submission"
FORMAT_VERSION = 1


def submissions_dir(board_dir: Path, track: str | None = None) -> Path:
    root = Path(board_dir) / SUBMISSIONS
    return root / track if track else root
