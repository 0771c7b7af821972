"""The sweep's progress display: a line per job that ends, and the counts.

On a terminal the counts sit on one status line that is redrawn in place; in a log (not a
terminal) each event line ends with the counts instead, so the log reads top to bottom.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from collapsebench.sweep.grid import ERROR_FILE, Job
from collapsebench.sweep.work import DONE, FAILED, Outcome

STATES = ("done", "running", "failed", "skipped", "interrupted", "queued")


class SweepProgress:
    def __init__(self, total: int, stream=None, live: bool | None = None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.counts: Counter[str] = Counter(queued=total)
        self.total = total
        self.started = time.monotonic()
        self._last_draw = 0.0

    def counts_line(self) -> str:
        shown = [f"{self.counts[state]} {state}" for state in STATES if self.counts[state] or state in ("done", "failed")]
        return f"[{self.counts['done'] + self.counts['skipped']}/{self.total}] " + ", ".join(shown) + \
            f"  ({_clock(time.monotonic() - self.started)})"

    def skipped(self, job: Job) -> None:
        self._move("queued", "skipped")

    def __call__(self, event: str, job: Job | None, outcome: Outcome | None) -> None:
        """The executors' ``report``."""
        if event == "running":
            self._move("queued", "running")
            self._draw()
        elif event == "finished":
            self._finished(job, outcome)
        elif event == "tick" and self.live and time.monotonic() - self._last_draw >= 1.0:
            self._draw()

    def _finished(self, job: Job, outcome: Outcome) -> None:
        state = {DONE: "done", FAILED: "failed"}.get(outcome.status, "interrupted")
        self._move("running", state)
        if outcome.status == DONE:
            # under `current` a run has no average accuracy; its plasticity retention says more
            accuracy = outcome.summary.get("average_accuracy")
            retention = outcome.summary.get("plasticity_retention")
            about = (f"average accuracy {accuracy:.3f}" if isinstance(accuracy, float) else
                     f"plasticity retention {retention:.3f}" if isinstance(retention, float) else "")
            about += " (resumed from its checkpoint)" if job.resume else ""
        elif outcome.status == FAILED:
            about = f"{outcome.error}  (see {job.run_dir}/{ERROR_FILE})"
        else:
            about = "partial result kept; the next sweep runs it again"
        self.event(f"{state:<11} {job.label:<24} {_clock(outcome.seconds):>8}  {about}")

    def event(self, text: str) -> None:
        if self.live:
            self.stream.write("\r\033[K" + text + "\n")
            self._draw()
        else:
            self.stream.write(f"{text}   {self.counts_line()}\n")
            self.stream.flush()

    def _move(self, source: str, target: str) -> None:
        self.counts[source] -= 1
        self.counts[target] += 1

    def _draw(self) -> None:
        if self.live:
            self.stream.write("\r\033[K" + self.counts_line())
            self.stream.flush()
            self._last_draw = time.monotonic()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r\033[K" + self.counts_line() + "\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"
