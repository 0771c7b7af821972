"""Submission files from anyone, read within bounds: size, nesting, integer size, array length.

Python's json module recurses once per nesting level (10,000 levels of ``[`` end in
RecursionError), converts integers of any size, and the schema check walks every value of a
5-million-value series before it notices the length. These checks run first, each in time linear
in the file, so a hostile file is an invalid submission within a second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError

#: A real submission is tens of kilobytes per run; a thousand-experience run stays far below.
MAX_BYTES = 32 * 1024 * 1024
#: A submission nests about eight levels deep.
MAX_DEPTH = 64
#: Seeds, counts and bytes fit in 19 digits (2**63 has 19).
MAX_INT_DIGITS = 19
#: No series, matrix row or list in a submission is longer (experiences, seeds, records).
MAX_ITEMS = 100_000
#: Names and authors: one line each, and what lands on the board.
MAX_NAME = 80
MAX_AUTHOR = 200

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def depth_of(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw``, without parsing it (brackets inside
    strings do not count)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', raw)):
        if match[0] in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _too_long(value: Any) -> str | None:
    """Where the first array longer than MAX_ITEMS is, walking without recursion."""
    stack = [(value, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            if len(node) > MAX_ITEMS:
                return f"{where or '(the file)'}: {len(node)} items (at most {MAX_ITEMS})"
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node) if isinstance(item, (list, dict)))
        elif isinstance(node, dict):
            if len(node) > MAX_ITEMS:
                return f"{where or '(the file)'}: {len(node)} keys (at most {MAX_ITEMS})"
            stack.extend((item, f"{where}.{key}" if where else str(key)) for key, item in node.items()
                         if isinstance(item, (list, dict)))
    return None


def parse(raw: bytes) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, problem)`` when ``raw`` is not JSON within the bounds."""
    if len(raw) > MAX_BYTES:
        return None, f"(the file): {len(raw):,} bytes, above the limit of {MAX_BYTES:,}"
    deepest = depth_of(raw)
    if deepest > MAX_DEPTH:
        return None, f"(the file): nested {deepest} levels deep (at most {MAX_DEPTH})"
    try:
        # NaN and Infinity parse, so that validation can name them
        value = json.loads(raw.decode("utf-8"), parse_int=_bounded_int)
    except UnicodeDecodeError as exc:
        return None, f"(the file): not UTF-8 text: {exc}"
    except (ValueError, RecursionError) as exc:
        return None, f"(the file): not valid JSON: {exc}"
    long = _too_long(value)
    if long:
        return None, long
    return value, None


def read_submission(path: str | Path) -> Any:
    """A submission file's JSON (any JSON within the bounds: validation judges it), or a clear error."""
    from collapsebench.leaderboard.validate import SubmissionInvalid

    path = Path(path)
    if path.is_dir():
        raise CollapsebenchError(f"{str(path)!r} is a directory; give submission files, such as {path}/*.json.")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)  # a bigger file is refused unread
    except FileNotFoundError:
        raise CollapsebenchError(f"Submission file {str(path)!r} does not exist.") from None
    except OSError as exc:
        raise CollapsebenchError(f"Submission file {str(path)!r} could not be read ({exc.strerror or exc}).") from None
    value, problem = parse(raw)
    if problem:
        raise SubmissionInvalid(f"{str(path)!r}", [problem])
    return value


def text_problems(submission: dict[str, Any]) -> list[str]:
    """The submission's name and author as the board shows them: one line of printable text each."""
    problems = []
    for key, limit in (("name", MAX_NAME), ("author", MAX_AUTHOR)):
        value = submission.get(key)
        if isinstance(value, str):
            problem = one_line_problem(value, limit)
            if problem:
                problems.append(f"{key}: {problem}")
    return problems


def one_line_problem(value: str, limit: int = MAX_NAME) -> str | None:
    """Why ``value`` cannot be shown on the board: one line of printable text, of bounded length."""
    if len(value) > limit:
        return f"{len(value)} characters (at most {limit})"
    if not value.strip():
        return "empty"
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        return f"holds the control character {bad!r} (one line of printable text)"
    return None


# Intraword underscores (er_l2) are literal in GitHub Markdown already; others could emphasize.
_MARKDOWN = re.compile(r"([\\`*\[\]<>#!|~&])|(?<![^\W_])_|_(?![^\W_])")


def markdown_text(value: Any) -> str:
    """``value`` as literal text in Markdown (a table cell): no heading, link, HTML or cell break."""
    text = " ".join(str(value).split())
    return _MARKDOWN.sub(lambda match: "\\" + match[0], text)
