"""Built-in evaluators, provided through the same hook a third-party collapsebench plugin uses."""

from __future__ import annotations

from collapsebench import Evaluator, Option, hookimpl

CADENCE = Option(
    "every_n_iterations", 0, "also measure every N training iterations (0: only after each experience)"
)


def _erank(context, every_n_iterations, histograms):
    from .layers import ErankMetric

    return [ErankMetric(context, every_n_iterations=every_n_iterations, histograms=histograms)]


@hookimpl
def collapsebench_evaluators():
    return [
        Evaluator(
            "erank",
            "Effective rank of each tapped layer's weights and of its activations on the probe set",
            _erank,
            options=(CADENCE, Option("histograms", True, "log singular-value histograms to TensorBoard")),
        ),
    ]
