"""Result files: written atomically, read back with a clear error when they are not results."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; results are for sharing
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON: they become null, so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any], compact_rows: bool = False) -> None:
    """``data`` as indented JSON. With ``compact_rows``, a list of numbers, and each row or record
    of a list of them, takes one line: a long run's matrix and records stay a few MB, not tens."""
    data = json_safe(data)
    if compact_rows:
        text = _rows_json(data, 0)
    else:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(Path(path), (text + "\n").encode())


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _one_line(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _rows_json(value: Any, level: int) -> str:
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_rows_json(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and not all(_is_scalar(v) for v in value):
        if all(isinstance(v, (list, dict)) for v in value):
            items = [f"{inner}{_one_line(v)}" for v in value]
        else:
            items = [f"{inner}{_rows_json(v, level + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return _one_line(value)


def read_results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS_FILE if Path(run_dir).is_dir() else Path(run_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CollapsebenchError(f"{str(path)!r} does not exist: is {str(run_dir)!r} a collapsebench run directory?") from None
    except json.JSONDecodeError as exc:
        raise CollapsebenchError(f"{str(path)!r} is not valid JSON: {exc}.") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise CollapsebenchError(f"{str(path)!r} is not a collapsebench results file (no schema_version).")
    return with_evaluation(data)


def read_status(path: str | Path) -> str | None:
    """The ``status`` a results.json records; None when it cannot be read as one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("status") if isinstance(data, dict) else None


def with_evaluation(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its ``evaluation`` record; results written before protocols existed
    measured the full matrix, and say so now."""
    if "evaluation" not in result and isinstance(result.get("accuracy_matrix"), list):
        cells = sum(v is not None for row in result["accuracy_matrix"] if isinstance(row, list) for v in row)
        result["evaluation"] = {"protocol": "full", "measured_cells": cells}
    return result


def environment() -> dict[str, str]:
    """Versions that decide whether a result can be reproduced."""
    import importlib.metadata

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "collapsebench": version("collapsebench"),
        "torch": version("torch"),
        "torchvision": version("torchvision"),
        "avalanche": version("avalanche-lib"),
        "pluggy": version("pluggy"),
    }
