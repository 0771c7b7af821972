"""Executors hand a sweep's jobs to workers and tell the driver what happens to each.

``run(jobs, report)`` calls ``report("running", job, None)`` when a job starts and
``report("finished", job, outcome)`` when it ends, and ``report("tick", None, None)`` while it
waits, so that the progress display can keep its clock. A job's failure never stops the others.

- ``LocalExecutor``: a pool of worker processes on this machine (the ``spawn`` start method: no
  forked copies of torch's thread pools), each with ``cpus // workers`` torch threads.
- ``RayExecutor``: each job a Ray task that declares its CPUs and GPUs, on a local Ray instance
  or an existing cluster. Ray is optional and imported only here, only when asked for.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

from collapsebench.errors import CollapsebenchError
from collapsebench.sweep.grid import Job
from collapsebench.sweep.work import FAILED, INTERRUPTED, Outcome, record_failure

Report = Callable[[str, Job | None, Outcome | None], None]
#: Seconds an interrupted job gets to write its partial result before its worker is terminated.
GRACE_SECONDS = 30.0


def available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _failed(job: Job, error: str, trace: str = "") -> Outcome:
    """A failure the worker could not record itself (it died, or Ray lost it)."""
    Path(job.run_dir).mkdir(parents=True, exist_ok=True)
    record_failure(job.run_dir, job, error, trace)
    return Outcome(FAILED, error=error)


# --- local process pool ----------------------------------------------------------------


def _worker_main(tasks, events, worker_id: int, threads: int) -> None:
    """A pool process: run the jobs the driver sends until it sends None or goes away."""
    if hasattr(os, "setsid"):
        # Out of the terminal's process group: Ctrl-C reaches the driver alone, which then
        # interrupts each running job exactly once so that it can write its partial result.
        os.setsid()
    threading.Thread(target=_interrupt_when_orphaned, daemon=True).start()
    if hasattr(signal, "SIGUSR1"):
        import faulthandler

        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` shows where a worker hangs
    from collapsebench.sweep.work import run_job, set_threads

    try:
        set_threads(threads)
        while True:
            try:
                job = tasks.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            try:
                outcome = run_job(job, threads=threads)
            except BaseException as exc:  # noqa: BLE001 - e.g. the run directory cannot be created
                outcome = Outcome(FAILED, error=f"{type(exc).__name__}: {exc}")
            events.put((worker_id, outcome))
            if outcome.status == INTERRUPTED:
                return
    except KeyboardInterrupt:
        return


def _interrupt_when_orphaned() -> None:
    """If the driver dies (killed), interrupt the running job rather than run on unsupervised."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    while parent is not None and parent.is_alive():
        time.sleep(2.0)
    os.kill(os.getpid(), signal.SIGINT)


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None, cpus: int | None = None, grace_seconds: float = GRACE_SECONDS):
        self.cpus = cpus or available_cpus()
        self.workers = workers or self.cpus
        if self.workers < 1:
            raise CollapsebenchError(f"--workers must be at least 1, got {self.workers}.")
        self.grace_seconds = grace_seconds

    def describe(self, n_jobs: int) -> str:
        workers = min(self.workers, n_jobs) or 1
        return f"local process pool: {workers} workers x {self.threads(workers)} torch threads"

    def threads(self, workers: int) -> int:
        return max(1, self.cpus // workers)

    def run(self, jobs: list[Job], report: Report) -> None:
        if not jobs:
            return
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        n_workers = min(self.workers, len(jobs))
        pool = _Pool(context, self.threads(n_workers))
        pending, busy = deque(jobs), {}
        try:
            for _ in range(n_workers):
                pool.start()
            while pending or busy:
                for worker_id in pool.idle(busy):
                    if not pending:
                        break
                    busy[worker_id] = job = pending.popleft()
                    pool.send(worker_id, job)
                    report("running", job, None)
                try:
                    worker_id, outcome = pool.events.get(timeout=0.5)
                except queue.Empty:
                    self._bury_dead(pool, busy, pending, report)
                    report("tick", None, None)
                    continue
                report("finished", busy.pop(worker_id), outcome)
        except KeyboardInterrupt:
            self._interrupt(pool, busy, report)
            raise
        finally:
            pool.close()

    def _bury_dead(self, pool: "_Pool", busy: dict, pending: deque, report: Report) -> None:
        for worker_id, process in pool.dead():
            _drain(pool, busy, report)  # its last words may still be in the queue
            if worker_id in busy:
                job = busy.pop(worker_id)
                report("finished", job, _failed(
                    job, f"the worker process died (exit code {process.exitcode}): killed, or out of memory?"))
            if pending:
                pool.start()

    def _interrupt(self, pool: "_Pool", busy: dict, report: Report) -> None:
        pool.interrupt(busy)
        deadline = time.monotonic() + self.grace_seconds
        try:
            while busy and time.monotonic() < deadline:
                _drain(pool, busy, report, timeout=0.5)
                for worker_id, _process in pool.dead():
                    if worker_id in busy:
                        report("finished", busy.pop(worker_id), Outcome(INTERRUPTED))
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting; close() terminates the rest
        for job in busy.values():
            report("finished", job, Outcome(INTERRUPTED))
        busy.clear()


def _drain(pool: "_Pool", busy: dict, report: Report, timeout: float = 0.0) -> None:
    try:
        while True:
            worker_id, outcome = pool.events.get(timeout=timeout) if timeout else pool.events.get_nowait()
            if worker_id in busy:
                report("finished", busy.pop(worker_id), outcome)
            timeout = 0.0
    except queue.Empty:
        pass


class _Pool:
    """Worker processes, each with its own task pipe, so the driver knows which job each holds."""

    def __init__(self, context, threads: int):
        self.context = context
        self.threads = threads
        self.events = context.Queue()
        self.workers: dict[int, tuple] = {}  # id -> (process, task connection)
        self._ids = itertools.count()

    def start(self) -> None:
        worker_id = next(self._ids)
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_main, args=(reader, self.events, worker_id, self.threads),
            name=f"collapsebench-sweep-{worker_id}",
        )
        process.start()
        reader.close()
        self.workers[worker_id] = (process, writer)

    def idle(self, busy: dict) -> list[int]:
        return [i for i, (process, _) in self.workers.items() if i not in busy and process.is_alive()]

    def send(self, worker_id: int, job: Job | None) -> None:
        self.workers[worker_id][1].send(job)

    def dead(self) -> list[tuple[int, object]]:
        gone = [(i, process) for i, (process, _) in self.workers.items() if not process.is_alive()]
        for worker_id, _ in gone:
            self.workers.pop(worker_id)[1].close()
        return gone

    def interrupt(self, busy: dict) -> None:
        for worker_id, (process, writer) in self.workers.items():
            if worker_id in busy and process.is_alive():
                if hasattr(signal, "SIGINT") and os.name == "posix":
                    os.kill(process.pid, signal.SIGINT)
                else:
                    process.terminate()
            else:
                self._stop(writer)

    def close(self) -> None:
        for process, writer in self.workers.values():
            self._stop(writer)
        deadline = time.monotonic() + 10.0
        for process, _ in self.workers.values():
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(timeout=5.0)
        for _, writer in self.workers.values():
            writer.close()
        self.workers.clear()
        self.events.close()
        self.events.join_thread()

    @staticmethod
    def _stop(writer) -> None:
        try:
            writer.send(None)
        except (OSError, ValueError):
            pass  # the worker is gone already


# --- Ray -------------------------------------------------------------------------------


def import_ray():
    # Under `uv run`, Ray's uv integration would package the working directory (runs and data
    # sets included) for every worker; the workers here use this environment as it is.
    # Export RAY_ENABLE_UV_RUN_RUNTIME_ENV=1 to have it anyway.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
    except ImportError:
        raise CollapsebenchError(
            "--executor ray needs Ray, which is an optional extra: pip install 'collapsebench[ray]' "
            "(in a checkout: uv sync --extra ray)."
        ) from None
    return ray


class _StartedJobs:
    """A Ray actor that hears from each task when it starts, so the display can count the running."""

    def __init__(self):
        self._new: list[str] = []

    def started(self, run_dir: str) -> None:
        self._new.append(run_dir)

    def take(self) -> list[str]:
        new, self._new = self._new, []
        return new


def _ray_job(job: Job, threads: int, token_path: str, token: str, tracker) -> Outcome:
    """The body of one Ray task. It runs the job in place when it sees the driver's file system
    (the token file the driver wrote), else in scratch space, carrying the files back."""
    from collapsebench.sweep.work import run_job, run_job_elsewhere, set_threads

    tracker.started.remote(job.run_dir)
    set_threads(threads)
    try:
        shared = Path(token_path).read_text() == token
    except OSError:
        shared = False
    return run_job(job, threads=threads) if shared else run_job_elsewhere(job, threads)


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_job: float = 1.0,
        gpus_per_job: float = 0.0,
        grace_seconds: float = GRACE_SECONDS,
    ):
        if cpus_per_job <= 0 or gpus_per_job < 0:
            raise CollapsebenchError("--cpus-per-job must be positive and --gpus-per-job not negative.")
        if workers is not None and workers < 1:
            raise CollapsebenchError(f"--workers must be at least 1, got {workers}.")
        self.address = address
        self.workers = workers
        self.cpus_per_job = cpus_per_job
        self.gpus_per_job = gpus_per_job
        self.grace_seconds = grace_seconds
        self.notes: list[str] = []

    def describe(self, n_jobs: int) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
        cap = f", at most {self.workers} at a time" if self.workers else ""
        return f"{where}: each job {self.cpus_per_job:g} CPU, {self.gpus_per_job:g} GPU{cap}"

    def run(self, jobs: list[Job], report: Report) -> None:
        if not jobs:
            return
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            settings = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
            if self.address:
                ray.init(address=self.address, **settings)
            else:
                cpus = self.workers * self.cpus_per_job if self.workers else None
                ray.init(num_cpus=cpus, **settings)
        token_path = Path(jobs[0].run_dir).parents[2] / f".collapsebench-sweep-{uuid.uuid4().hex}"
        token_path.parent.mkdir(parents=True, exist_ok=True)
        token_path.write_text(token := uuid.uuid4().hex)
        tracker = None
        try:
            self._check_resources(ray)
            tracker = ray.remote(num_cpus=0)(_StartedJobs).remote()
            task = ray.remote(_ray_job).options(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job)
            threads = max(1, int(self.cpus_per_job))
            self._loop(ray, jobs, report, lambda job: task.remote(job, threads, str(token_path), token, tracker), tracker)
        finally:
            token_path.unlink(missing_ok=True)
            if tracker is not None:
                ray.kill(tracker)
            if started_here:
                ray.shutdown()

    def _check_resources(self, ray) -> None:
        total = ray.cluster_resources()
        short = [f"{need:g} {kind}" for kind, need in (("CPU", self.cpus_per_job), ("GPU", self.gpus_per_job))
                 if need > total.get(kind, 0)]
        if not short:
            return
        have = f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs"
        if not self.address:
            raise CollapsebenchError(f"Each job asks for {' and '.join(short)}, but this Ray instance has {have}.")
        self.notes.append(f"each job asks for {' and '.join(short)} but the cluster has {have} now: "
                          "jobs wait until an autoscaler adds nodes")

    def _loop(self, ray, jobs: list[Job], report: Report, submit, tracker) -> None:
        by_dir = {job.run_dir: job for job in jobs}
        pending, in_flight, running = deque(jobs), {}, set()
        cap = self.workers or len(jobs)
        try:
            while pending or in_flight:
                while pending and len(in_flight) < cap:
                    job = pending.popleft()
                    in_flight[submit(job)] = job
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                for run_dir in ray.get(tracker.take.remote()):
                    running.add(run_dir)
                    report("running", by_dir[run_dir], None)
                for ref in ready:
                    job = in_flight.pop(ref)
                    if job.run_dir not in running:
                        report("running", job, None)  # it finished before its start was heard
                    report("finished", job, self._outcome(ray, ref, job))
                if not ready:
                    report("tick", None, None)
        except KeyboardInterrupt:
            for ref in in_flight:
                ray.cancel(ref)  # raises KeyboardInterrupt inside a running task: it writes a partial result
            try:
                ray.wait(list(in_flight), num_returns=len(in_flight), timeout=self.grace_seconds)
            except KeyboardInterrupt:
                pass
            for ref, job in in_flight.items():
                if job.run_dir in running:
                    report("finished", job, Outcome(INTERRUPTED))
            raise

    @staticmethod
    def _outcome(ray, ref, job: Job) -> Outcome:
        from collapsebench.sweep.work import write_files

        try:
            outcome = ray.get(ref)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray lost the task (a node died, the worker crashed)
            return _failed(job, f"Ray could not run the job: {type(exc).__name__}", str(exc))
        if outcome.files is not None:
            write_files(job.run_dir, outcome.files)
            outcome.files = None
        return outcome
