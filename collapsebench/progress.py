"""The progress display: one line per training epoch and a row of accuracies per experience.

An Avalanche logger, so Avalanche calls it at the right moments; it prints less than
Avalanche's InteractiveLogger, which lists every metric of every evaluation.
"""

from __future__ import annotations

import sys
import time

from avalanche.logging import BaseLogger


class ProgressLogger(BaseLogger):
    def __init__(self, n_experiences: int, echo=print):
        super().__init__()
        self.n_experiences = n_experiences
        self.echo = echo
        self._started = 0.0
        self._live = sys.stdout.isatty()

    def before_training_exp(self, strategy, metric_values, **kwargs):
        self._started = time.perf_counter()
        experience = strategy.experience
        classes = getattr(experience, "classes_in_this_experience", None)
        about = f" classes {sorted(int(c) for c in classes)}" if classes is not None else ""
        self.echo(f"experience {experience.current_experience + 1}/{self.n_experiences}{about}")

    def after_training_epoch(self, strategy, metric_values, **kwargs):
        losses = [v.value for v in metric_values if v.name.startswith("Loss_Epoch/train_phase")]
        loss = f" loss {losses[-1]:.4f}" if losses else ""
        line = (
            f"  epoch {strategy.clock.train_exp_epochs + 1}/{strategy.train_epochs}{loss}"
            f" ({time.perf_counter() - self._started:.1f} s)"
        )
        if self._live:
            print("\r" + line, end="", flush=True)
        else:
            self.echo(line)

    def after_training_exp(self, strategy, metric_values, **kwargs):
        if self._live:
            print(flush=True)

    def accuracy_row(self, row: dict[int, float] | list[float]) -> None:
        """The accuracies just measured: every experience's, or (other protocols) the few tested."""
        cells = dict(enumerate(row)) if isinstance(row, list) else row
        if list(cells) == list(range(self.n_experiences)):
            self.echo("  test accuracy per experience: " + " ".join(f"{a:.3f}" for a in cells.values()))
        else:
            self.echo("  test accuracy on experience " + ", ".join(f"{j}: {a:.3f}" for j, a in cells.items()))
