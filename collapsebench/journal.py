"""The run's journal: what each finished experience measured, one JSON line per experience.

A checkpoint used to carry the whole accuracy matrix and every evaluator record so far, so each
checkpoint cost more than the one before: quadratic in the number of experiences over a run. The
journal is appended to once per experience and the checkpoint stores only the journal's length
in bytes, so a checkpoint's cost stays flat. A resume reads the journal back up to that length;
a line written after the last checkpoint (the run stopped between the two) is cut off, because
that experience is trained again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError
from collapsebench.results import json_safe

JOURNAL_FILE = "journal.jsonl"


class Journal:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / JOURNAL_FILE

    def start(self) -> None:
        self.path.write_bytes(b"")

    def append(self, entries: list[dict[str, Any]]) -> int:
        """Add experiences' entries, one line each; return the journal's length in bytes afterwards."""
        lines = "".join(json.dumps(json_safe(e), allow_nan=False, separators=(",", ":")) + "\n" for e in entries)
        with self.path.open("ab") as handle:
            handle.write(lines.encode())
            handle.flush()
            return handle.tell()

    def read(self, length: int, entries: int) -> list[dict[str, Any]]:
        """The first ``entries`` entries, which end at byte ``length``; later bytes are dropped."""
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
