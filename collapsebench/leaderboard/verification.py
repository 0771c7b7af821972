"""Verification records: who re-ran which seeds of a submission, when, and on what.

A record lies beside the submission, in ``<name>.verification`` (JSON; not ``*.json``, so the board
never reads it as a submission). Each entry names the submission's ``content_hash`` at the time:
a submission edited afterwards has another hash, and its old records no longer count. The
record sits outside the submission so that verifying never changes the content hash. It is an
account, not a proof: anyone can write the file, so a board's maintainers read it as they read
the submission itself (docs/leaderboard.md).
"""

from __future__ import annotations

import getpass
import json
import platform
import time
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError
from collapsebench.results import atomic_write_bytes, environment

SUFFIX = ".verification"


def sidecar(submission_path: str | Path) -> Path:
    path = Path(submission_path)
    return path.with_name(path.stem + SUFFIX)


def read_records(submission_path: str | Path) -> list[dict[str, Any]]:
    """The records beside a submission; a missing or unreadable file is no record."""
    from collapsebench.leaderboard.bounded import parse

    try:
        value, problem = parse(sidecar(submission_path).read_bytes())
    except OSError:
        return []
    if problem or not isinstance(value, dict) or not isinstance(value.get("records"), list):
        return []
    return [r for r in value["records"] if isinstance(r, dict)]


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record(submission_path: str | Path, submission: dict[str, Any], verdict, by: str | None = None,
           device: str | None = None) -> Path:
    """Add a passed ``verdict`` to the submission's record, atomically; return the record's path."""
    entry = {
        "content_hash": submission["content_hash"],
        "seed": verdict.seed,
        "result": "identical" if verdict.identical else "within tolerance",
        "exact_required": verdict.exact_required,
        "verified_by": by or _who(),
        "host": platform.node(),
        "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device,  # None: the device the submission recorded
        "environment": environment(),  # the re-run's: this process ran it
    }
    path = sidecar(submission_path)
    records = read_records(submission_path) + [entry]
    try:
        atomic_write_bytes(path, (json.dumps({"records": records}, indent=1, allow_nan=False) + "\n").encode())
        path.chmod(0o644)  # as a submission: for everyone to read
    except OSError as exc:
        raise CollapsebenchError(f"Verified, but the record could not be written to {str(path)!r} "
                                 f"({exc.strerror or exc}); make its folder writable and verify again.") from None
    return path


def status(submission_path: str | Path, submission: dict[str, Any]) -> dict[str, Any] | None:
    """What verified this very content (seeds, by whom, last when), or None: unverified."""
    current = [r for r in read_records(submission_path) if r.get("content_hash") == submission.get("content_hash")
               and isinstance(r.get("seed"), int)]
    if not current:
        return None
    return {
        "seeds": sorted({r["seed"] for r in current}),
        "by": sorted({str(r.get("verified_by")) for r in current}),
        "last": max(str(r.get("verified_at")) for r in current),
    }


def describe(state: dict[str, Any] | None) -> str:
    """One cell of a board."""
    if state is None:
        return "unverified"
    seeds = ",".join(str(s) for s in state["seeds"])
    return f"seed{'s' if len(state['seeds']) > 1 else ''} {seeds}, {state['last'][:10]}"
