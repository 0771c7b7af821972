"""The errors the CLI turns into a readable message and an exit code.

Exit codes (docs/reliability.md): 0 done; 1 a sweep with failed or unfinished jobs; 2 a problem
the user can fix (bad input, a file that cannot be read or written, a broken plugin at load time);
3 a collapsebench plugin's code failed during training (its traceback is kept); 4 training
diverged; 130 interrupted by SIGINT (Ctrl-C); 143 stopped by SIGTERM.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable

EXIT_USER_ERROR = 2
EXIT_PLUGIN_FAILED = 3
EXIT_DIVERGED = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class CollapsebenchError(Exception):
    """A problem the user can fix: bad input, an unknown name, a broken plugin.

    The message is written for a person and printed as is; the CLI exits with 2.
    ``details`` (for example a plugin's traceback) is printed after it.
    """

    exit_code = 2

    def __init__(self, message: str, details: str | None = None):
        super().__init__(message)
        self.details = details


def plural(phrase: str) -> str:
    """The plural of a noun phrase, its head noun inflected: "strategy" -> "strategies",
    "option of 'x'" -> "options of 'x'", "plugin to disable" -> "plugins to disable"."""
    head, rest = phrase, ""
    for joint in (" of ", " to ", " for ", " in "):
        if joint in phrase:
            head, _, tail = phrase.partition(joint)
            rest = joint + tail
            break
    if head.endswith("is"):  # axis, analysis
        head = head[:-2] + "es"
    elif head.endswith("y") and head[-2:-1] not in ("a", "e", "o", "u", ""):
        head = head[:-1] + "ies"
    elif head.endswith(("s", "x", "ch", "sh")):
        head += "es"
    else:
        head += "s"
    return head + rest


def unknown_name_error(kind: str, name: str, choices: Iterable[str], hint: str = "") -> CollapsebenchError:
    """An error for a name nobody provides, listing the choices and the closest match."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    message = f"Unknown {kind} {name!r}."
    if close:
        message += f" Did you mean {close[0]!r}?"
    message += f" Available {plural(kind)}: {', '.join(choices) if choices else '(none)'}."
    if hint:
        message += " " + hint
    return CollapsebenchError(message)


class PluginFailed(CollapsebenchError):
    """A collapsebench plugin's code raised while the run trained: the plugin author's bug."""

    exit_code = EXIT_PLUGIN_FAILED


class Diverged(CollapsebenchError):
    """Training produced a non-finite loss or parameters; the finished experiences were kept."""

    exit_code = EXIT_DIVERGED


class Terminated(KeyboardInterrupt):
    """SIGTERM (SLURM, Kubernetes, ``timeout``): handled as Ctrl-C is, with its own exit code."""

    exit_code = EXIT_SIGTERM


def describe_os_error(exc: OSError) -> str:
    """A one-line account of a file that could not be read or written, with what to do."""
    where = f" {str(exc.filename)!r}" if exc.filename is not None else ""
    if exc.filename2 is not None:
        where += f" -> {str(exc.filename2)!r}"
    reason = exc.strerror or str(exc)
    advice = {
        errno.ENOSPC: " The disk is full: free space or choose another --out.",
        errno.EDQUOT: " The disk quota is exhausted: free space or choose another --out.",
        errno.EACCES: " Check the permissions, or choose another --out.",
        errno.EPERM: " Check the permissions, or choose another --out.",
        errno.EROFS: " The file system is read-only: choose another --out.",
    }.get(exc.errno, "")
    return f"Could not read or write{where}: {reason}.{advice}"
