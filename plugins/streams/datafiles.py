"""Finding data set files under the data root, and fingerprinting them.

Nothing here downloads: a stream that can fetch its data asks torchvision to, and only when the
user passed ``--download``. Missing files become a :class:`CollapsebenchError` that names the
files, the folder searched and how to get them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from collapsebench import CollapsebenchError

#: Files larger than this have their digest cached on disk (ImageNet32 is about 4 GB).
DISK_CACHE_MIN_BYTES = 32 * 2**20
_memory_cache: dict[tuple[str, int, int], str] = {}


def require_files(folder: Path, names: Iterable[str], dataset: str, how_to_get: str) -> list[Path]:
    """The paths of ``names`` in ``folder``, or an error listing the missing ones."""
    paths = [folder / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise missing_data_error(folder, missing, dataset, how_to_get)
    return paths


def missing_data_error(folder: Path, missing: list[str], dataset: str, how_to_get: str) -> CollapsebenchError:
    where = f"{folder} (no such folder)" if not folder.is_dir() else str(folder)
    return CollapsebenchError(
        f"{dataset} is not in the data root: missing {', '.join(missing)} in {where}. {how_to_get}"
    )


def file_digest(path: Path) -> str:
    """sha256 of the file's contents, cached by path, size and modification time."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _memory_cache:
        return _memory_cache[key]
    use_disk = stat.st_size >= DISK_CACHE_MIN_BYTES
    disk = _read_disk_cache() if use_disk else {}
    disk_key = "|".join(map(str, key))
    digest = disk.get(disk_key)
    if digest is None:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(2**22), b""):
                hasher.update(block)
        digest = hasher.hexdigest()
        if use_disk:
            disk[disk_key] = digest
            _write_disk_cache(disk)
    _memory_cache[key] = digest
    return digest


def fingerprint(stream: str, files: Iterable[Path], settings: Mapping[str, Any]) -> str:
    """``<stream>-<12 hex digits>`` identifying the data files' contents and the data options.

    Two runs share a fingerprint only if they read byte-identical files and cut them the same
    way, so results on the 10,000-digit sample never mix with results on full MNIST.
    """
    description = {
        "stream": stream,
        "files": sorted((p.name, p.stat().st_size, file_digest(p)) for p in files),
        "settings": {k: settings[k] for k in sorted(settings)},
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return f"{stream}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _cache_path() -> Path:
    base = os.environ.get("COLLAPSEBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "collapsebench"
    )
    return Path(base) / "file-digests.json"


def _read_disk_cache() -> dict[str, str]:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_disk_cache(entries: dict[str, str]) -> None:
    # A cache that cannot be written only costs time later; never fail a run over it.
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries, sort_keys=True))
        temporary.replace(path)
    except OSError:
        pass


def check_labels(path: Path, labels, n_classes: int, dataset: str, require_all: bool = True) -> None:
    """Labels read from ``path`` must be integers in 0..n_classes-1 and, with ``require_all``, hold every class.

    An out-of-range label was silently dropped by the class split, and a file of one class made a
    stream of empty experiences.
    """
    import numpy as np

    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise CollapsebenchError(f"{path}: {dataset} labels must be one number per sample, got an array of shape {labels.shape}.")
    if labels.size == 0:
        raise CollapsebenchError(f"{path} holds no {dataset} labels.")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= n_classes:
        bad = labels[(labels < 0) | (labels >= n_classes)]
        raise CollapsebenchError(
            f"{path}: {dataset} labels must lie in 0..{n_classes - 1}, but {bad.size} do not (for example {int(bad[0])}); "
            "the file is corrupt or from another data set."
        )
    present = np.unique(labels)
    if require_all and len(present) < n_classes:
        missing = sorted(set(range(n_classes)) - {int(c) for c in present})
        raise CollapsebenchError(
            f"{path}: {dataset} needs all {n_classes} classes, but this file has {len(present)} "
            f"(missing {', '.join(map(str, missing))})."
        )
