"""Evaluation protocols: which test experiences a run measures after each training experience.

``full`` measures the whole T x T accuracy matrix, the only way to see forgetting. Loss of
plasticity needs hundreds or thousands of tasks, where a T x T matrix costs more than training;
there ``current`` (the task just trained, Dohare et al.) or ``every:N`` (the full row every N
experiences) measure what the question needs. Plain Python: the config checks a protocol before
anything heavy is imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collapsebench.errors import CollapsebenchError

NAMES = ("full", "seen", "current", "every:N")
DEFAULT = "full"


@dataclass(frozen=True)
class Protocol:
    kind: str  # full, seen, current or every
    every: int = 0

    @property
    def name(self) -> str:
        return f"every:{self.every}" if self.kind == "every" else self.kind

    def full_row_after(self, i: int, n_experiences: int) -> bool:
        if self.kind == "full":
            return True
        if self.kind == "every":
            return (i + 1) % self.every == 0 or i == n_experiences - 1
        return False

    def columns(self, i: int, n_experiences: int) -> list[int]:
        """The test experiences measured after training on experience ``i``, in order."""
        if self.full_row_after(i, n_experiences):
            return list(range(n_experiences))
        if self.kind == "seen":
            return list(range(i + 1))
        return [i]

    def measured_cells(self, n_experiences: int, rows: int | None = None) -> int:
        """How many cells the first ``rows`` rows (default all) of a T x T matrix hold."""
        rows = n_experiences if rows is None else rows
        return sum(len(self.columns(i, n_experiences)) for i in range(rows))


def parse(text: Any, where: str = "evaluation") -> Protocol:
    """A protocol from its name, or a CollapsebenchError that lists the valid ones."""
    if isinstance(text, Protocol):
        return text
    if not isinstance(text, str):
        raise CollapsebenchError(f"{where} must be one of {', '.join(NAMES)}, got {text!r}.")
    value = text.strip().lower()
    if value in ("full", "seen", "current"):
        return Protocol(value)
    match = re.fullmatch(r"every:\s*(\d+)", value)
    if match and int(match.group(1)) >= 1:
        return Protocol("every", int(match.group(1)))
    if value.startswith("every"):
        raise CollapsebenchError(f"{where} {text!r}: write every:N with N a whole number of at least 1 (every:10).")
    raise CollapsebenchError(f"{where} must be one of {', '.join(NAMES)}, got {text!r}.")


StreamDefault = str | Callable[[Mapping[str, Any]], str | None] | None


def resolve(configured: str | None, stream_default: StreamDefault, stream_options: Mapping[str, Any]) -> Protocol:
    """The run's protocol: the config's, else the stream's declared default, else ``full``."""
    if configured is not None:
        return parse(configured)
    declared = stream_default(stream_options) if callable(stream_default) else stream_default
    return parse(declared or DEFAULT, where="the stream's default evaluation")
