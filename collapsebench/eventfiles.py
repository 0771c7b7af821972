"""Where a run's TensorBoard event files go, and how a resumed run keeps no value twice for one step.

**Where.** TensorBoard names a run after the folder holding its event files, relative to
``--logdir``: event files in the folder ``--logdir`` points at are the run ".". A run's event
files therefore go into a folder of the run directory named after the run
(:func:`run_name`, for example ``split-digits-mlp-naive-seed0``): ``tensorboard --logdir RUN_DIR``
shows that name, and ``--logdir`` on any folder above shows the path down to it. Run
directories written before this layout hold their event files directly; they are read, resumed
and appended to where they are (:func:`log_dir`).

**Resume.**
A run interrupted in the middle of an experience has already logged that experience's first
epochs (losses, evaluator values at iteration cadence) when it resumes from the checkpoint taken
after the previous experience; the resumed run logs them again, into a new event file. Before it
does, every event after the checkpoint's step is dropped from the older files, so each step's
values come from the run that produced the final result.

Event files are TFRecord files: records of ``[length u64][crc u32][data][crc u32]``. Kept records
are copied byte for byte, so their checksums stay valid.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PATTERN = "events.out.tfevents.*"
#: Where event files may lie, relative to the run directory: in it (runs written before the
#: per-run folder) or one folder down. These are what ``--overwrite`` removes.
OUTPUTS = (PATTERN, f"*/{PATTERN}")


def event_files(run_dir: str | Path) -> list[Path]:
    """Every TensorBoard event file of a run directory, in either place."""
    return sorted(path for pattern in OUTPUTS for path in Path(run_dir).glob(pattern) if path.is_file())


def run_name(config: Mapping[str, Any], fallback: str = "run") -> str:
    """The run's name in TensorBoard: ``<track>-<strategy>-seed<seed>``, or
    ``<stream>-<model>-<strategy>-seed<seed>`` off a track (the default run directory's name)."""
    if config.get("strategy") is None or config.get("seed") is None:
        return _safe(fallback)
    where = config.get("track") or f"{config.get('stream')}-{config.get('model')}"
    return _safe(f"{where}-{config['strategy']}-seed{config['seed']}")


def _safe(name: str) -> str:
    # One path component; ':' and ',' would also break a --logdir_spec.
    return re.sub(r"[^\w.+=-]", "_", name).strip(".") or "run"


def log_dir(run_dir: str | Path, name: str) -> Path:
    """The folder this run's event files go to: where the run already has them (a resumed run, a
    run from before the per-run folder), else ``<run_dir>/<name>``."""
    run_dir = Path(run_dir)
    holders = sorted({path.parent for path in event_files(run_dir)})
    if run_dir in holders:
        return run_dir
    if not holders or run_dir / name in holders:
        return run_dir / name
    return holders[0]


def log_dirs(run_dir: str | Path) -> list[Path]:
    """The folders of ``run_dir`` that hold event files (TensorBoard's runs in it)."""
    return sorted({path.parent for path in event_files(run_dir)})


def _records(data: bytes):
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        end = offset + 12 + length + 4
        if end > len(data):
            return  # a record cut short when the process died: dropped
        yield data[offset:end], data[offset + 12:offset + 12 + length]
        offset = end


def drop_events_after(run_dir: Path, step: int, keep: Path | None = None) -> int:
    """Remove events with a step above ``step`` from ``run_dir``'s event files (but ``keep``); return how many."""
    from tensorboard.compat.proto import event_pb2

    dropped = 0
    for path in event_files(run_dir):
        if keep is not None and path.resolve() == Path(keep).resolve():
            continue
        kept, removed = [], 0
        for raw, payload in _records(path.read_bytes()):
            event = event_pb2.Event.FromString(payload)
            if event.HasField("summary") and event.step > step:
                removed += 1
            else:
                kept.append(raw)
        if removed:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(b"".join(kept))
            os.replace(tmp, path)
            dropped += removed
    return dropped
