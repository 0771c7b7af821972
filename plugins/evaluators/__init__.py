"""Built-in evaluators, provided through the same hook a third-party collapsebench plugin uses.

Factories import their modules (and so torch) only when a run builds them: listing stays fast.
docs/evaluators.md describes each record and summary value.
"""

from __future__ import annotations

from collapsebench import CollapsebenchError, Evaluator, Option, hookimpl

from . import declarations as produces

CADENCE = Option(
    "every_n_iterations", 0, "also measure every N training iterations (0: only after each experience)"
)
HISTOGRAMS = Option("histograms", True, "log each layer's singular values to TensorBoard as a histogram")


def _weights(context, every_n_iterations, histograms):
    from .weights import WeightMetric

    return [WeightMetric(context, every_n_iterations=every_n_iterations, histograms=histograms)]


def _activations(context, every_n_iterations, histograms):
    from .activations import ActivationMetric

    return [ActivationMetric(context, every_n_iterations=every_n_iterations, histograms=histograms)]


def _erank(context, every_n_iterations, histograms):
    overlapping = [name for name in ("weights", "activations") if name in context.config.evaluators]
    if overlapping:
        raise CollapsebenchError(
            f"The evaluator 'erank' is a subset of {' and '.join(repr(n) for n in overlapping)}, "
            "which already record erank: drop 'erank' from the evaluators."
        )
    from .activations import ActivationMetric
    from .weights import WeightMetric

    return [
        WeightMetric(context, every_n_iterations=every_n_iterations, histograms=histograms, names=("erank",)),
        ActivationMetric(context, every_n_iterations=every_n_iterations, histograms=histograms,
                         names=("erank",), summaries=False),
    ]


def _hessian(context, **options):
    from .hessian import HessianMetric

    positive = [name for name in ("k", "trace_samples", "density_steps", "density_vectors", "batch_size")
                if options[name] < 1]
    if positive:
        raise CollapsebenchError(f"Hessian options {', '.join(positive)} must be at least 1.")
    if not options["tol"] > 0:
        raise CollapsebenchError(f"Hessian option tol must be positive, got {options['tol']}.")
    return [HessianMetric(context, **options)]


def _cka(context, every_n_iterations):
    from .similarity import CkaMetric

    return [CkaMetric(context, every_n_iterations=every_n_iterations)]


def _plasticity(context):
    from .plasticity import PlasticityMetric

    return [PlasticityMetric(context)]


@hookimpl
def collapsebench_evaluators():
    return [
        Evaluator(
            "weights",
            "Rank and magnitude of each tapped layer's weights: erank, peak-normalized erank, stable_rank, srank, "
            "approx_rank, weight_magnitude",
            _weights,
            options=(CADENCE, HISTOGRAMS),
            metrics=produces.WEIGHTS,
        ),
        Evaluator(
            "activations",
            "Collapse of each tapped layer's activations on the probe set: erank, peak-normalized erank, srank, "
            "feature_rank, dead and dormant units, feature_norm; capacity retention and the forgetting-erank "
            "correlation",
            _activations,
            options=(CADENCE, HISTOGRAMS),
            metrics=produces.ACTIVATIONS, summaries=produces.ACTIVATION_SUMMARIES,
        ),
        Evaluator(
            "erank",
            "Only the effective rank of each tapped layer's weights and activations (a light subset of "
            "weights and activations)",
            _erank,
            options=(CADENCE, HISTOGRAMS),
            metrics=produces.ERANK,
        ),
        Evaluator(
            "hessian",
            "Hessian spectrum of the training loss at the end of each experience and the start of the next: "
            "top eigenvalues, trace, density, hessian_erank, near-zero mass",
            _hessian,
            options=(
                Option("k", 5, "how many eigenvalues of largest magnitude"),
                Option("per_layer", False, "also each tapped layer's diagonal block of the Hessian"),
                Option("trace_samples", 50, "Rademacher vectors for Hutchinson's trace estimate"),
                Option("density_steps", 50, "Lanczos steps per start vector for the spectral density"),
                Option("density_vectors", 2, "random start vectors for the spectral density"),
                Option("batch_size", 256, "probe inputs in the fixed batch the loss is taken on"),
                Option("inputs", "experience", "probe inputs of the experience measured, or of all experiences",
                       choices=("experience", "all")),
                Option("tol", 1e-3, "relative residual tolerance of the top eigenvalues"),
                Option("figures", True, "log the whole model's smoothed density to TensorBoard as an image"),
                CADENCE,
            ),
            metrics=produces.HESSIAN, figures=produces.HESSIAN_FIGURES,
        ),
        Evaluator(
            "cka",
            "Layer-wise linear CKA between each experience's representation right after it was learned and later",
            _cka,
            options=(CADENCE,),
            metrics=produces.CKA,
        ),
        Evaluator(
            "plasticity",
            "R[j][j] over the accuracy of a fresh model trained on experience j alone (costs a second training)",
            _plasticity,
            metrics=produces.PLASTICITY, summaries=produces.PLASTICITY_SUMMARIES,
        ),
    ]
