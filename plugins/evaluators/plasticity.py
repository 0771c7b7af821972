"""Plasticity (SPEC): R[j][j] over the accuracy a freshly initialized model reaches on experience j alone.

After training on experience j, a model of the same architecture, freshly initialized, is
trained on experience j only, with the run's budget (epochs, minibatch, optimizer, learning
rate, momentum, weight decay) by a plain Avalanche ``SupervisedTemplate`` (no strategy
plugins: the baseline is plain SGD from scratch; minibatches from gathered tensors where the
stream allows, as in the run itself), then tested on test experience j. Its
accuracy is recorded as ``fresh_accuracy``; the ratio needs R[j][j], which the runner only
measures after this callback, so it is computed in :meth:`PlasticityMetric.summarize`.

It costs one extra training per experience. The run's own randomness is untouched: the global
torch, numpy and random states are saved before and restored after, and the fresh model and its
data order are seeded from (run seed, j), so the baseline does not depend on what else was measured.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from collapsebench import CollapseMetric, Measurement
from collapsebench.metrics.accuracy import plasticity, retention


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Everything inside may draw random numbers; the global generators are as before afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def fresh_seed(run_seed: int, experience: int) -> int:
    return int(np.random.SeedSequence([run_seed, experience]).generate_state(1)[0])


class PlasticityMetric(CollapseMetric):
    def __init__(self, context):
        super().__init__(context.recorder)
        self.context = context

    def measure(self, strategy, phase):
        if phase != "end":
            return
        j = strategy.experience.current_experience
        with preserved_rng():
            accuracy = self._train_fresh(strategy, j)
        yield Measurement("fresh_accuracy", "model", "all", accuracy)

    def _train_fresh(self, strategy, j: int) -> float:
        from avalanche.evaluation.metrics import accuracy_metrics
        from avalanche.training.plugins import EvaluationPlugin

        from collapsebench import seed_everything

        config = self.context.config
        seed_everything(fresh_seed(config.seed, j))
        model = self.context.architecture_factory()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No loggers specified")
            evaluation = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
        # The run's own budget and data path: a fresh naive learner, whatever the run's strategy.
        learner = self.context.make_learner(model, evaluation)
        # Gathering tensors here is evaluator time, which the runner already takes out of
        # training time; it must not also count as the run's data preparation.
        with self.context.timing.uncounted():
            learner.train(strategy.experience)
            results = learner.eval([self.context.stream.benchmark.test_stream[j]])
        suffix = f"/Exp{j:03d}"
        accuracies = [v for k, v in results.items() if k.startswith("Top1_Acc_Exp/eval_phase/") and k.endswith(suffix)]
        if len(accuracies) != 1:
            raise RuntimeError(f"expected one accuracy for test experience {j}, Avalanche reported {sorted(results)}")
        return float(accuracies[0])

    def summarize(self, accuracy_matrix):
        """``plasticity`` (per experience, SPEC), its mean over experiences, and the fresh accuracies.

        Read from the ``fresh_accuracy`` records, so a resumed run keeps those measured before.
        """
        size = len(accuracy_matrix)
        fresh_by_experience = {r["experience"]: r["value"] for r in self.recorder.records
                               if (r["name"], r["kind"]) == ("fresh_accuracy", "model")}
        if any(j not in fresh_by_experience for j in range(size)):
            return {}
        fresh = [fresh_by_experience[j] for j in range(size)]
        ratios = plasticity(accuracy_matrix, fresh)
        finite = [r for r in ratios if math.isfinite(r)]
        summary = {
            "plasticity": ratios,
            "plasticity_mean": sum(finite) / len(finite) if finite else math.nan,
            "fresh_accuracy": fresh,
        }
        self.summary_unavailable = {}
        if len(finite) == len(ratios):
            summary["plasticity_retention_relative"] = retention(ratios)
        else:
            self.summary_unavailable["plasticity_retention_relative"] = (
                "a fresh network reached accuracy 0 on some experience, so its plasticity ratio is undefined")
        return summary

    summary_sources = {
        "plasticity": "R[j][j] (accuracy_matrix diagonal) / fresh_accuracy[j], per experience",
        "plasticity_mean": "mean of the finite values of plasticity",
        "fresh_accuracy": "fresh_accuracy records: a new network of the run's architecture trained on experience j "
                          "alone with the run's budget, tested on j",
        "plasticity_retention_relative": "plasticity (R[j][j] / fresh_accuracy[j]): mean over the last 10% of tasks / "
                                         "mean over the first 10% (at least one task each)",
    }
