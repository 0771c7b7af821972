"""The run's journal: what each finished experience measured, one JSON line per experience.

A checkpoint used to carry the whole accuracy matrix and every evaluator record so far, so each
checkpoint cost more than the one before: quadratic in the number of experiences over a run. The
journal is appended to once per experience and the checkpoint stores only the journal's length
in bytes, so a checkpoint's cost stays flat. A resume reads the journal back up to that length;
a line written after the last checkpoint (the run stopped between the two) is cut off, because
that experience is trained again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError
from collapsebench.results import json_safe

JOURNAL_FILE = "journal.jsonl"


def _chain(digest: str, line: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(digest) + line).hexdigest()


class Journal:
    """``digest`` chains a sha256 over the lines so far, one line at a time: the (signed) checkpoint
    records it, so an edited journal is refused on resume at a cost per line, not per journal."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / JOURNAL_FILE
        self.digest = hashlib.sha256(b"").hexdigest()

    def append(self, entries: list[dict[str, Any]]) -> int:
        """Add experiences' entries, one line each; return the journal's length in bytes afterwards."""
        lines = [(json.dumps(json_safe(e), allow_nan=False, separators=(",", ":")) + "\n").encode() for e in entries]
        for line in lines:
            self.digest = _chain(self.digest, line)
        with self.path.open("ab") as handle:
            handle.write(b"".join(lines))
            handle.flush()
            return handle.tell()

    def read(self, length: int, entries: int, digest: str | None = None) -> list[dict[str, Any]]:
        """The first ``entries`` entries, which end at byte ``length``; later bytes are dropped.

        With ``digest`` (what :attr:`digest` was at that length), lines that do not chain to it are refused.
        """
        try:
            with self.path.open("rb") as handle:
                data = handle.read(length)
        except FileNotFoundError:
            data = b""
        lines = data.splitlines()
        if len(data) != length or len(lines) != entries:
            raise CollapsebenchError(
                f"The run journal {str(self.path)!r} does not match the checkpoint ({len(lines)} of {entries} "
                "experiences): delete checkpoint.pkl to start the run over."
            )
        chained = hashlib.sha256(b"").hexdigest()
        for line in data.splitlines(keepends=True):
            chained = _chain(chained, line)
        if digest is not None and chained != digest:
            raise CollapsebenchError(f"The run journal {str(self.path)!r} was changed after its checkpoint was "
                                     "written: delete checkpoint.pkl to start the run over.")
        self.digest = chained
        try:
            read = [json.loads(line) for line in lines]
        except json.JSONDecodeError as exc:
            raise CollapsebenchError(f"The run journal {str(self.path)!r} is damaged ({exc}): delete checkpoint.pkl "
                                     "to start the run over.") from None
        with self.path.open("r+b") as handle:
            handle.truncate(length)
        return read

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
