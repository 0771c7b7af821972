"""Ctrl-C that stops a run at a safe point.

A KeyboardInterrupt raised wherever Python happens to be can land inside TensorBoard's event
writer, whose background thread then never joins: the run wrote its partial result and hung
in ``writer.close()``. Instead, the first Ctrl-C only sets a flag; an Avalanche training plugin
raises KeyboardInterrupt at the next iteration boundary. A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading

from avalanche.core import SupervisedPlugin


class StopAtSafePoint(SupervisedPlugin):
    """Raises KeyboardInterrupt between iterations once an interrupt was requested."""

    def __init__(self):
        super().__init__()
        self.requested = False

    def _check(self, *args, **kwargs):
        if self.requested:
            raise KeyboardInterrupt

    after_training_iteration = _check
    after_eval_iteration = _check
    before_training_exp = _check


@contextlib.contextmanager
def deferred_interrupts(stopper: StopAtSafePoint):
    """While inside, SIGINT asks ``stopper`` to stop; outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stopper.requested:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
        stopper.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
