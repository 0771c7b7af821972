"""collapsebench: benchmark continual-learning strategies on accuracy and on collapse.

The public API a collapsebench plugin uses (docs/plugin_hooks.md): ``hookimpl`` to mark hook
implementations, the record types it returns, ``Tap`` to declare a model's tapped layers, the
evaluator base class and helpers below, and the math in :mod:`collapsebench.metrics`.
Everything else under ``collapsebench.`` is the host's own and may change.

Names that need torch or Avalanche load on first use, so that ``import collapsebench`` (and
``--help``, ``list``, ``plugins``) stays instant.
"""

import importlib

from collapsebench.errors import CollapsebenchError, unknown_name_error
from collapsebench.hookspecs import hookimpl
from collapsebench.records import (
    Architecture,
    Evaluator,
    EvaluatorContext,
    FigureSpec,
    Logger,
    LoggerContext,
    Metric,
    MissingData,
    Option,
    Strategy,
    StrategyContext,
    StrategyParts,
    Stream,
    StreamContext,
    StreamData,
    Summary,
)
from collapsebench.taps import Tap, activation_matrix, capture_activations, taps_of

__version__ = "0.1.0"

#: public name -> module that defines it, imported when the name is first used
_LAZY = {
    # running from Python (torch and Avalanche load inside the first run)
    "run": "collapsebench.api",
    "load_run": "collapsebench.api",
    "RunResult": "collapsebench.api",
    # evaluators (Avalanche)
    "CollapseMetric": "collapsebench.evaluation",
    "Measurement": "collapsebench.evaluation",
    "Recorder": "collapsebench.evaluation",
    # the probe set's cache key for "this model at this moment" (torch)
    "moment_key": "collapsebench.probe",
    # learners with the run's budget and data path (torch, Avalanche)
    "make_template": "collapsebench.runner",
    "seed_everything": "collapsebench.runner",
    # minibatches from tensors (torch)
    "TensorBatches": "collapsebench.fastdata",
    "TensorBatchesPlugin": "collapsebench.fastdata",
    "uncounted_gathering": "collapsebench.fastdata",
    "dataset_rows": "collapsebench.fastdata",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'collapsebench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Architecture",
    "CollapseMetric",
    "CollapsebenchError",
    "Evaluator",
    "EvaluatorContext",
    "FigureSpec",
    "Logger",
    "LoggerContext",
    "Measurement",
    "Metric",
    "MissingData",
    "Option",
    "Recorder",
    "RunResult",
    "Strategy",
    "StrategyContext",
    "StrategyParts",
    "Stream",
    "StreamContext",
    "StreamData",
    "Summary",
    "Tap",
    "TensorBatches",
    "activation_matrix",
    "capture_activations",
    "hookimpl",
    "load_run",
    "make_template",
    "moment_key",
    "run",
    "seed_everything",
    "taps_of",
    "uncounted_gathering",
    "dataset_rows",
    "unknown_name_error",
    "TensorBatchesPlugin",
]
