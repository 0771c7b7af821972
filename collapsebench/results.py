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


def write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(Path(path), (text + "\n").encode())


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
    return data


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
