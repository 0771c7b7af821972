"""Running a grid: skip the jobs already done, hand the rest to an executor, summarize."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from collapsebench.results import RESULTS_FILE
from collapsebench.sweep.grid import Job, can_resume, state_of
from collapsebench.sweep.progress import SweepProgress
from collapsebench.sweep.work import DONE, FAILED, Outcome


@dataclass
class SweepResult:
    jobs: list[Job]
    skipped: list[Job] = field(default_factory=list)
    #: run_dir -> what the executor reported for each job it ran
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def with_status(self, status: str) -> list[Job]:
        return [job for job in self.jobs if job.run_dir in self.outcomes and self.outcomes[job.run_dir].status == status]

    @property
    def failed(self) -> list[Job]:
        return self.with_status(FAILED)

    @property
    def ran(self) -> list[Job]:
        return self.with_status(DONE)


def plan(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """(jobs to run, jobs whose run directory already holds their complete result). A job to run
    that was interrupted after a checkpoint comes back with ``resume`` set."""
    to_run, done = [], []
    for job in jobs:
        if state_of(job) in ("complete", "diverged"):  # a diverged job would diverge again
            done.append(job)
        else:
            to_run.append(dataclasses.replace(job, resume=can_resume(job)))
    return to_run, done


def run_sweep(jobs: list[Job], executor, progress: SweepProgress | None = None) -> SweepResult:
    to_run, done = plan(jobs)
    progress = progress or SweepProgress(len(jobs))
    result = SweepResult(jobs, skipped=done)
    for job in done:
        progress.skipped(job)

    def report(event: str, job: Job | None, outcome: Outcome | None) -> None:
        if event == "finished":
            result.outcomes[job.run_dir] = outcome
        progress(event, job, outcome)

    with _terminate_as_interrupt():
        try:
            executor.run(to_run, report)
        finally:
            progress.close()
    return result


@contextlib.contextmanager
def _terminate_as_interrupt():
    """``kill PID`` stops a sweep the way Ctrl-C does: running jobs write partial results."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: What the table shows for a track that declares no ``rank`` (a forgetting track).
DEFAULT_SUMMARY_KEYS = ("average_accuracy", "forgetting")


def summary_keys(track) -> tuple[str, ...]:
    """The summaries a sweep's table shows: those the track's board ranks on, else accuracy and forgetting."""
    return tuple(track.rank) if getattr(track, "rank", None) else DEFAULT_SUMMARY_KEYS


def summary_headers(keys=DEFAULT_SUMMARY_KEYS) -> list[str]:
    return ["strategy", "complete seeds", *(key.replace("_", " ") for key in keys)]


def summary_rows(jobs: list[Job], keys=DEFAULT_SUMMARY_KEYS) -> list[list[str]]:
    """Per strategy: complete seeds of the grid, and the mean and spread of its summaries.

    A summary the runs' evaluation protocol did not measure (forgetting under ``current``)
    reads "not measured", not a number; a per-task series counts as its mean over tasks.
    """
    rows = []
    by_strategy: dict[str, list[Job]] = {}
    for job in jobs:
        by_strategy.setdefault(job.strategy, []).append(job)
    for strategy, its_jobs in by_strategy.items():
        results = [_results(job) for job in its_jobs if state_of(job) == "complete"]
        diverged = sum(state_of(job) == "diverged" for job in its_jobs)
        cells = [strategy, f"{len(results)}/{len(its_jobs)}" + (f" ({diverged} diverged)" if diverged else "")]
        for key in keys:
            values = [v for r in results if isinstance(v := _scalar((r.get("summary") or {}).get(key)), (int, float))]
            unmeasured = results and all(key in (r.get("summary_unavailable") or {}) for r in results)
            cells.append("not measured" if unmeasured and not values else _mean_interval(key, values))
        rows.append(cells)
    return rows


SUMMARY_HEADERS = summary_headers()


def _scalar(value):
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return sum(value) / len(value)
    return value


def _results(job: Job) -> dict:
    try:
        result = json.loads((Path(job.run_dir) / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def _mean_interval(key: str, values: list[float]) -> str:
    from collapsebench.stats import format_interval, metric_interval

    return format_interval(metric_interval(key, values)) if values else "-"


def summary_caption(jobs: list[Job]) -> str:
    """What the table's cells are, with the complete-seed counts they are over."""
    from collapsebench.stats import label

    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.strategy] = counts.get(job.strategy, 0) + (state_of(job) == "complete")
    return "Summaries: " + label([c for c in counts.values() if c] or None)
