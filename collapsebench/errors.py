"""The one error type the CLI turns into a readable message and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CollapsebenchError(Exception):
    """A problem the user can fix: bad input, an unknown name, a broken plugin.

    The message is written for a person and printed as is; the CLI exits with 2.
    ``details`` (for example a plugin's traceback) is printed after it.
    """

    exit_code = 2

    def __init__(self, message: str, details: str | None = None):
        super().__init__(message)
        self.details = details


def unknown_name_error(kind: str, name: str, choices: Iterable[str], hint: str = "") -> CollapsebenchError:
    """An error for a name nobody provides, listing the choices and the closest match."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    message = f"Unknown {kind} {name!r}."
    if close:
        message += f" Did you mean {close[0]!r}?"
    message += f" Available {kind}s: {', '.join(choices) if choices else '(none)'}."
    if hint:
        message += " " + hint
    return CollapsebenchError(message)
