"""collapsebench: benchmark continual-learning strategies on accuracy and on collapse.

The public API a collapsebench plugin uses: ``hookimpl`` to mark hook implementations, the
record types it returns, and ``Tap`` to declare a model's tapped layers.
"""

from collapsebench.hookspecs import hookimpl
from collapsebench.records import (
    Architecture,
    Evaluator,
    EvaluatorContext,
    Option,
    Strategy,
    StrategyContext,
    StrategyParts,
    Stream,
    StreamContext,
    StreamData,
)
from collapsebench.taps import Tap

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "Evaluator",
    "EvaluatorContext",
    "Option",
    "Strategy",
    "StrategyContext",
    "StrategyParts",
    "Stream",
    "StreamContext",
    "StreamData",
    "Tap",
    "hookimpl",
]
