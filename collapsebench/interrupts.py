"""Ctrl-C and SIGTERM that stop a run at a safe point.

A KeyboardInterrupt raised wherever Python happens to be can land inside TensorBoard's event
writer, whose background thread then never joins: the run wrote its partial result and hung
in ``writer.close()``. Instead, the first SIGINT or SIGTERM only sets a flag; an Avalanche
training plugin raises at the next iteration boundary. A second one interrupts at once.

SIGTERM is what SLURM, Kubernetes and ``timeout`` send: it gets the same treatment, so that a
job stopped by its scheduler leaves a partial result beside its checkpoint. With ``hold``, the
handlers stay installed after the training block until :meth:`StopAtSafePoint.release`, so a
signal during the final write of results.json and model.pt waits for the write to finish.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import weakref

from avalanche.core import SupervisedPlugin

from collapsebench.dispatch import callbacks_changed
from collapsebench.errors import Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopAtSafePoint(SupervisedPlugin):
    """Raises KeyboardInterrupt (Terminated for SIGTERM) between iterations once a stop was requested.

    Until then its per-iteration checks are idle: it tells the lean dispatch so
    (``collapsebench_idle``), and :meth:`request` has the strategy it last saw rebuild its lists
    of callbacks, so that the check is called from the next event on. A run no one stops pays
    no call per minibatch for it.
    """

    #: The per-iteration callbacks below, idle while no stop is requested.
    PER_ITERATION_CHECKS = ("after_training_iteration", "after_eval_iteration")

    def __init__(self):
        super().__init__()
        self.requested = False
        self.signum: int | None = None
        self._restore = None
        self._strategy = None  # a weak reference to the strategy this plugin last saw

    def interrupt(self) -> KeyboardInterrupt:
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def request(self, signum: int) -> None:
        """Stop at the next safe point (what the signal handler calls)."""
        self.requested, self.signum = True, signum
        strategy = self._strategy() if self._strategy is not None else None
        if strategy is not None:
            callbacks_changed(strategy)

    def collapsebench_idle(self, event: str) -> bool:
        return not self.requested and event in self.PER_ITERATION_CHECKS

    def _check(self, *args, **kwargs):
        if self.requested:
            raise self.interrupt()

    def before_eval_exp(self, strategy, *args, **kwargs):
        self._strategy = weakref.ref(strategy)

    def before_training_exp(self, strategy, *args, **kwargs):
        self._strategy = weakref.ref(strategy)
        self._check()

    after_training_iteration = _check
    after_eval_iteration = _check

    def release(self) -> None:
        """Put back the handlers that ``deferred_interrupts(hold=True)`` left in place."""
        restore, self._restore = self._restore, None
        if restore is not None:
            restore()

    def __getstate__(self):
        # Checkpointed with the strategy: the restore closure and the weak reference are neither
        # picklable nor meaningful later.
        return {**self.__dict__, "_restore": None, "_strategy": None}


@contextlib.contextmanager
def deferred_interrupts(stopper: StopAtSafePoint, hold: bool = False):
    """While inside, SIGINT and SIGTERM ask ``stopper`` to stop; outside the main thread, nothing changes.

    With ``hold``, a normal exit keeps the handlers until ``stopper.release()``; an exception
    leaving the block always restores them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    release_all()  # a run that failed before releasing must not keep the next one's signals

    def handler(signum, frame):
        if stopper.requested:
            raise stopper.interrupt()  # a second signal: the user does not want to wait
        stopper.request(signum)

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}

    def restore():
        for signum, old in previous.items():
            signal.signal(signum, old)

    try:
        yield
    except BaseException:
        restore()
        raise
    if hold:
        stopper._restore = restore
        _held.append(stopper)
    else:
        restore()


_held: list[StopAtSafePoint] = []


def release_all() -> None:
    """Release every held stopper: for a command that failed between the training block and the end of its write."""
    while _held:
        _held.pop().release()
