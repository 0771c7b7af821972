"""How evaluators plug into Avalanche: a metric base class and the run's record of measurements.

An evaluator's factory returns :class:`CollapseMetric` instances. They are Avalanche metrics
(``PluginMetric``), so Avalanche's ``EvaluationPlugin`` calls them and hands their values to
its loggers (TensorBoard among them); each measurement is also kept as a plain record for
``results.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import MetricValue
from avalanche.evaluation.metrics.loss import EpochLoss as AvalancheEpochLoss
from avalanche.evaluation.metrics.mean import Mean
from avalanche.logging import BaseLogger
from avalanche.training.plugins import EvaluationPlugin

PHASES = ("end", "start", "iteration")


@dataclass
class Measurement:
    """One value an evaluator measured.

    ``value`` (a float) goes to results.json and to TensorBoard as a scalar tagged
    ``<name>/<kind>/<layer>``. ``data`` (JSON-able, e.g. a density's nodes and weights) goes
    to results.json only; ``histogram`` (a tensor) and ``figure`` to TensorBoard only.
    """

    name: str
    kind: str
    layer: str
    value: float | None = None
    data: Any = None
    histogram: torch.Tensor | None = None
    figure: Any = None

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.kind}/{self.layer}"


class Recorder:
    """Every measurement of a run, in order, and the seconds the evaluators took."""

    def __init__(self):
        self.records: list[dict[str, Any]] = []
        self.seconds = 0.0

    def add(self, measurement: Measurement, experience: int, iteration: int, phase: str) -> None:
        record = {
            "name": measurement.name,
            "kind": measurement.kind,
            "layer": measurement.layer,
            "experience": experience,
            "value": None if measurement.value is None else float(measurement.value),
            "phase": phase,
            "iteration": iteration,
        }
        if record["value"] is not None and not math.isfinite(record["value"]):
            # JSON has no NaN: the file would say null anyway; say why.
            record["reason"] = f"not finite ({record['value']})"
            record["value"] = None
        if measurement.data is not None:
            record["data"] = measurement.data
        self.records.append(record)

    def add_unmeasured(self, metric: str, experience: int, iteration: int, phase: str, reason: str) -> None:
        """A measurement that could not be made (non-finite weights or activations): null, with the reason."""
        self.records.append({"name": metric, "kind": "unmeasured", "layer": "*", "experience": experience,
                             "value": None, "phase": phase, "iteration": iteration, "reason": reason})

    def series(self, name: str, kind: str, layer: str, phase: str = "end") -> list[float]:
        """Past values of one measurement, oldest first (for peak normalization)."""
        return [
            r["value"]
            for r in self.records
            if (r["name"], r["kind"], r["layer"], r["phase"]) == (name, kind, layer, phase)
        ]


class CollapseMetric(PluginMetric):
    """Base class of evaluator metrics.

    Subclasses implement :meth:`measure`. By default it runs after each training experience;
    ``every_n_iterations`` adds a measurement every N training iterations, and
    ``at_experience_start`` one before the first update of every experience after the first.
    """

    def __init__(self, recorder: Recorder, every_n_iterations: int = 0, at_experience_start: bool = False):
        super().__init__()
        if every_n_iterations < 0:
            raise ValueError("every_n_iterations must not be negative")
        self.recorder = recorder
        self.every_n_iterations = every_n_iterations
        self.at_experience_start = at_experience_start

    def measure(self, strategy, phase: str) -> Iterable[Measurement]:
        raise NotImplementedError

    def summarize(self, accuracy_matrix: list[list[float]]) -> dict[str, Any]:
        """Run-level values for ``results.json``'s ``summary``, computed once the run is over."""
        return {}

    def _emit(self, strategy, phase: str, step: int | None = None) -> list[MetricValue]:
        started = time.perf_counter()
        experience = strategy.experience.current_experience
        step = strategy.clock.train_iterations if step is None else step
        try:
            measurements = list(self.measure(strategy, phase))
        except Exception as exc:  # noqa: BLE001 - only failures on non-finite inputs are absorbed
            reason = _non_finite_reason(strategy, exc)
            if reason is None:
                raise
            self.recorder.add_unmeasured(type(self).__name__, experience, step, phase, reason)
            measurements = []
        self.recorder.seconds += time.perf_counter() - started
        values = []
        for m in measurements:
            self.recorder.add(m, experience, step, phase)
            suffix = "" if phase == "end" else f"_{phase}"
            tag = f"{m.name}/{m.kind}{suffix}/{m.layer}"
            if m.value is not None:
                values.append(MetricValue(self, tag, float(m.value), step))
            if m.histogram is not None:
                values.append(MetricValue(self, f"{tag}/histogram", m.histogram.detach().cpu(), step))
            if m.figure is not None:
                values.append(MetricValue(self, f"{tag}/figure", m.figure, step))
        return values

    def after_training_exp(self, strategy):
        return self._emit(strategy, "end")

    def before_training_exp(self, strategy):
        if self.at_experience_start and strategy.experience.current_experience > 0:
            return self._emit(strategy, "start")
        return None

    def after_training_iteration(self, strategy):
        # Avalanche's clock is the template's last plugin: here it has not yet counted the
        # iteration that just ended.
        n = self.every_n_iterations
        if n and (strategy.clock.train_exp_iterations + 1) % n == 0:
            return self._emit(strategy, "iteration", step=strategy.clock.train_iterations + 1)
        return None

    def result(self):
        return None

    def reset(self):
        pass


def _non_finite_reason(strategy, exc: Exception) -> str | None:
    """Why a measurement failed, if it failed on non-finite input (else None: a real bug).

    Linear algebra on NaN or infinite weights or activations fails to converge; an evaluator must
    then record null with the reason rather than end the run.
    """
    model = getattr(strategy, "model", None)
    parameters = list(model.parameters()) if model is not None else []
    if any(not bool(torch.isfinite(p.detach()).all()) for p in parameters):
        return f"the model's parameters are not finite ({type(exc).__name__}: {exc})"
    if isinstance(exc, torch.linalg.LinAlgError):
        return f"non-finite or degenerate input to linear algebra ({exc})"
    return None


def _ignore(strategy, **kwargs):
    return None


def _generic_acts(callback: str):
    """When Avalanche's ``GenericPluginMetric`` does anything in a per-iteration ``callback``.

    Read from its source (avalanche/evaluation/metric_definitions.py): after an iteration it
    updates in its own mode (and may emit); before one it resets only when it resets per
    iteration. tests/test_avalanche_equivalence.py checks these rules against the class itself.
    """
    mode = "train" if "training" in callback else "eval"
    if callback.startswith("after_"):
        return lambda metric: metric._mode == mode
    return lambda metric: metric._reset_at == "iteration" and metric._mode == mode


#: The per-iteration callbacks where a GenericPluginMetric's activity is decided by its settings.
GENERIC_RULES = {callback: _generic_acts(callback) for callback in (
    "before_training_iteration", "after_training_iteration", "before_eval_iteration", "after_eval_iteration")}


def _acts(metric, callback: str) -> bool:
    """Whether ``metric``'s ``callback`` can do anything (False only when that is certain)."""
    from avalanche.evaluation.metric_definitions import GenericPluginMetric

    from collapsebench.dispatch import does_nothing

    bound = getattr(metric, callback, None)
    if bound is None or does_nothing(bound):
        return False
    function = getattr(bound, "__func__", None)
    if callback in GENERIC_RULES and function is getattr(GenericPluginMetric, callback, None):
        return GENERIC_RULES[callback](metric)
    return True


#: Per-iteration callbacks where GenericPluginMetric updates, and the mode it updates in.
_UPDATING_CALLBACKS = {"after_training_iteration": "train", "after_eval_iteration": "eval"}


def _only_updates(metrics: list, callback: str, loggers) -> list | None:
    """``metrics`` when each would only ``update`` in ``callback`` and no logger listens there."""
    from avalanche.evaluation.metric_definitions import GenericPluginMetric

    from collapsebench.dispatch import does_nothing

    mode = _UPDATING_CALLBACKS.get(callback)
    if mode is None or not metrics:
        return None
    generic = getattr(GenericPluginMetric, callback)
    if not does_nothing(getattr(PluginMetric, callback)):
        return None  # GenericPluginMetric's callback calls PluginMetric's first: it must be empty
    for metric in metrics:
        if getattr(type(metric), callback) is not generic or metric._mode != mode or metric._emit_at == "iteration":
            return None
    for logger in loggers:
        for name in (callback, "log_metrics"):
            if getattr(type(logger), name, None) is not getattr(BaseLogger, name, None):
                return None
    return list(metrics)


class EpochLoss(AvalancheEpochLoss):
    """Avalanche's ``EpochLoss`` (the run's epoch loss), with its arithmetic done once per epoch.

    Avalanche updates the running mean at every minibatch with ``float(torch.mean(loss))``,
    which reads a value back from the device at every step. Here each minibatch's loss is kept
    (detached) and fed to Avalanche's own ``LossMetric`` in the same order when the result is
    asked for, or every ``FLUSH_EVERY`` minibatches: the same float operations in the same
    order, so the same value to the last bit (tests/test_avalanche_equivalence.py).
    """

    FLUSH_EVERY = 256

    #: Its ``update`` reads the loss and the targets only: LeanEvaluationPlugin need not show it
    #: the experience's logging view.
    collapsebench_reads_experience = False

    def __init__(self):
        self._pending: list[tuple[torch.Tensor, int]] = []
        super().__init__()

    def update(self, strategy):
        pending, targets = self._pending, strategy.mb_y
        # shape, not len(): a tensor's len() is a Python method of torch's, this is an attribute.
        pending.append((strategy.loss.detach(), targets.shape[0] if isinstance(targets, torch.Tensor) and targets.ndim
                        else len(targets)))
        if len(pending) >= self.FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        mean = getattr(self._loss, "_mean_loss", None)
        values = _one_element_values([loss for loss, _ in pending]) if isinstance(mean, Mean) else None
        if values is None:  # losses of several elements or shapes: Avalanche's update, one by one
            for loss, patterns in pending:
                self._loss.update(loss, patterns=patterns)
            return
        # Avalanche's LossMetric.update is Mean.update(float(torch.mean(loss)), weight=patterns); the
        # mean of one element is that element, so its float is the value read here: the same
        # Mean.update calls with the same floats, in the same order, read back in one transfer.
        for value, (_, patterns) in zip(values, pending):
            mean.update(value, weight=patterns)

    def result(self):
        self._flush()
        return super().result()

    def reset(self):
        self._pending = []
        super().reset()


def _one_element_values(losses: list[torch.Tensor]) -> list[float] | None:
    """The floats of one-element loss tensors of one shape and dtype, read in one pass (else None)."""
    first = losses[0]
    if first.numel() != 1 or any(loss.shape != first.shape or loss.dtype != first.dtype for loss in losses):
        return None
    return torch.stack(losses).reshape(-1).tolist()


class LeanEvaluationPlugin(EvaluationPlugin):
    """Avalanche's ``EvaluationPlugin``, minus the per-callback work that does nothing.

    Avalanche's plugin forwards every ``before_*``/``after_*`` callback to all metrics and
    loggers, wrapping the experience for logging each time: a dozen times per training
    iteration, mostly to objects that ignore the call. It finds each callback by catching an
    AttributeError in a Python ``__getattribute__`` that every attribute read goes through.
    That was a fifth of the training time of an MLP on MNIST. Here:

    - attributes are read at C speed; a callback the class does not define comes from
      ``__getattr__`` as Avalanche's fallback would, once per name;
    - a callback is forwarded only to the metrics that can act in it: a metric whose callback
      is an empty function is left out, and so is one of Avalanche's ``GenericPluginMetric``
      metrics in a per-iteration callback its mode and reset setting ignore (an epoch-loss
      metric is called after each training iteration, the experience accuracy is not);
    - a callback with no such metric and no logger that overrides it is not forwarded at all;
    - after a training or evaluation iteration, when every acting metric is a
      ``GenericPluginMetric`` that only updates there (it emits per epoch or experience, as the
      run's epoch loss and accuracies do) and no logger listens, the metrics' ``update`` is
      called directly, with ``strategy.experience`` replaced by its logging view as Avalanche
      does; the view is made once per experience rather than copied at every iteration, and
      not put in place at all for metrics that say they never read it (the run's epoch loss).
      That is exactly what Avalanche's path does there (its callback calls ``update`` and
      returns nothing to publish), without the call chain that cost more than the update.

    Every metric value reaches the loggers as it would through Avalanche's plugin
    (tests/test_avalanche_equivalence.py).
    """

    __getattribute__ = object.__getattribute__  # undo EvaluationPlugin's Python-level lookup

    #: The callbacks whose updating metrics never read the experience; the instance gets a set of
    #: its own when it finds one (a plugin checkpointed before this existed reads this default).
    _without_view: frozenset | set = frozenset()

    def __init__(self, *metrics, loggers):
        # collect_all would keep every value ever reported in memory: a long stream's would grow
        # without bound, and results.json already records what matters.
        super().__init__(*metrics, loggers=loggers, collect_all=False)
        self._acting: dict[str, list] = {}
        self._callbacks: dict[str, Any] = {}
        self._updating: dict[str, list | None] = {}
        self._logging_view = (None, None)  # (an experience, its logging view)

    def _acting_metrics(self, callback: str) -> list:
        acting = self._acting.get(callback)
        if acting is None:
            acting = self._acting[callback] = [m for m in self.metrics if _acts(m, callback)]
        return acting

    def _logger_listens(self, callback: str) -> bool:
        return any(getattr(type(logger), callback, None) not in (None, getattr(BaseLogger, callback, None))
                   for logger in self.loggers)

    def __getattr__(self, item):
        # Only reached when the plain lookup failed: Avalanche's callbacks by name.
        if not item.startswith(("before_", "after_")) or "_callbacks" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {item!r}")
        callback = self._callbacks.get(item)
        if callback is None:
            if self._acting_metrics(item) or self._logger_listens(item):
                def callback(strategy, **kwargs):
                    return self._update_metrics_and_loggers(strategy, item)
            else:
                callback = _ignore
            self._callbacks[item] = callback
        return callback

    def _only_updating(self, callback: str) -> list | None:
        """The acting metrics, when after ``callback`` all Avalanche's path would do is call their
        ``update`` (see the class docstring); else None."""
        if callback not in self._updating:
            updating = self._updating[callback] = _only_updates(self._acting_metrics(callback), callback, self.loggers)
            if updating and not any(getattr(m, "collapsebench_reads_experience", True) for m in updating):
                if "_without_view" not in self.__dict__:
                    self._without_view = set()
                self._without_view.add(callback)
        return self._updating[callback]

    def _view_for_logging(self, experience):
        if self._logging_view[0] is not experience:
            self._logging_view = (experience, experience.logging())
        return self._logging_view[1]

    def _update_metrics_and_loggers(self, strategy, callback: str):
        updating = self._only_updating(callback) if self._active else None
        if updating:
            if callback in self._without_view:
                for metric in updating:
                    metric.update(strategy)
                return None
            experience = strategy.experience
            if experience is not None:
                strategy.experience = self._view_for_logging(experience)
            try:
                for metric in updating:
                    metric.update(strategy)
            finally:
                strategy.experience = experience
            return None
        # Avalanche's own forwarding, shown only the metrics that can act in this callback.
        everything = self.metrics
        self.metrics = self._acting_metrics(callback)
        try:
            return super()._update_metrics_and_loggers(strategy, callback)
        finally:
            self.metrics = everything
