"""TensorBoard event files of a resumed run: no value twice for one step.

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
import struct
from pathlib import Path

PATTERN = "events.out.tfevents.*"


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
    for path in sorted(Path(run_dir).glob(PATTERN)):
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
