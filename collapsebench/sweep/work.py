"""One job inside a worker (a pool process or a Ray task): run it, or record why it failed.

The run's own output goes to ``<run_dir>/sweep.log``, not to the terminal, where the driver's
progress display lives. A failure leaves ``<run_dir>/error.json`` (written atomically) with the
error and its traceback; a success removes an old one.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.results import RESULTS_FILE, write_json
from collapsebench.sweep.grid import ERROR_FILE, LOG_FILE, Job

DONE, FAILED, INTERRUPTED = "done", "failed", "interrupted"


@dataclass
class Outcome:
    """What a worker sends back about one job."""

    status: str  # done, failed or interrupted
    seconds: float = 0.0
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    #: For a Ray task on a machine that cannot see the run directory: the files it wrote,
    #: relative path -> bytes, for the driver to write.
    files: dict[str, bytes] | None = None


_managers: dict[tuple[str, ...], tuple[Any, Any]] = {}


def _registry(plugins: tuple[str, ...]):
    """One plugin manager per plugin list and process: a worker runs many jobs."""
    if plugins not in _managers:
        from collapsebench.manager import build_manager
        from collapsebench.registry import Registry

        manager = build_manager(list(plugins))
        _managers[plugins] = (manager, Registry(manager))
    return _managers[plugins]


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


def run_job(job: Job, where: str | Path | None = None, threads: int | None = None) -> Outcome:
    """Run ``job`` into ``where`` (default: its run directory) with ``threads`` torch threads;
    never raises for the job's own errors."""
    from collapsebench.config import FIELDS, build_config

    run_dir = Path(where or job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    started = time.perf_counter()
    with open(run_dir / LOG_FILE, "w", buffering=1) as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            if job.resume and where is None:
                # A planted checkpoint fails this job with the message, before Avalanche is imported.
                from collapsebench.checkpoint import check_trusted

                check_trusted(run_dir)
            from collapsebench.runner import execute

            started = time.perf_counter()  # a worker's first job pays for the import; its clock does not
            manager, registry = _registry(tuple(job.plugins))
            settings = {"out": str(run_dir)}
            if threads and "threads" in FIELDS:
                settings["threads"] = int(threads)  # the runner sets torch's thread count from it
            config = build_config({**job.config, **settings})
            resume = {"resume": True} if job.resume and where is None else {}
            result = execute(config, manager, registry, echo=print, **resume)
        except KeyboardInterrupt:
            # execute() has written a partial results.json; the next sweep runs the job again.
            return Outcome(INTERRUPTED, time.perf_counter() - started)
        except BaseException as exc:  # noqa: BLE001 - a job's failure of any kind must not stop the sweep
            seconds = time.perf_counter() - started
            error = f"{type(exc).__name__}: {exc}"
            trace = traceback.format_exc()
            details = getattr(exc, "details", None)  # a CollapsebenchError keeps the plugin's own traceback here
            if details:
                trace = f"{details.rstrip()}\n\nreported as:\n{trace}"
            record_failure(run_dir, job, error, trace, seconds)
            print(f"FAILED: {error}")
            return Outcome(FAILED, seconds, error=error)
    return Outcome(DONE, time.perf_counter() - started, summary=dict(result.get("summary") or {}))


def record_failure(run_dir: str | Path, job: Job, error: str, trace: str, seconds: float = 0.0) -> Path:
    path = Path(run_dir) / ERROR_FILE
    write_json(path, {
        "status": "failed",
        "job": {"track": job.track, "strategy": job.strategy, "seed": job.seed, "run_dir": job.run_dir},
        "error": error,
        "traceback": trace,
        "seconds": round(seconds, 3),
        "host": platform.node(),
        "pid": os.getpid(),
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return path


def run_job_elsewhere(job: Job, threads: int | None = None) -> Outcome:
    """Run ``job`` in a temporary directory and carry its files back in the outcome: for a Ray
    task on a machine that does not share the driver's file system (it starts over: the
    driver's checkpoint is out of its reach)."""
    scratch = Path(tempfile.mkdtemp(prefix="collapsebench-sweep-"))
    try:
        outcome = run_job(job, scratch, threads)
        outcome.files = collect_files(scratch, job)
        return outcome
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def collect_files(directory: Path, job: Job) -> dict[str, bytes]:
    import json

    files = {str(path.relative_to(directory)): path.read_bytes()
             for path in sorted(directory.rglob("*")) if path.is_file()}
    if RESULTS_FILE in files:  # the result should name where it will live, not the scratch directory
        result = json.loads(files[RESULTS_FILE])
        result.setdefault("config", {})["out"] = job.run_dir
        files[RESULTS_FILE] = (json.dumps(result, indent=2) + "\n").encode()
    return files


def write_files(run_dir: str | Path, files: dict[str, bytes]) -> None:
    """Write files carried back from another machine; results.json last, so that a sweep
    interrupted meanwhile never finds a result without its model and logs."""
    from collapsebench.results import atomic_write_bytes

    run_dir = Path(run_dir)
    if ERROR_FILE not in files:
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
    for name in sorted(files, key=lambda n: n == RESULTS_FILE):
        atomic_write_bytes(run_dir / name, files[name])
