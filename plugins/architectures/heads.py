"""One output head for every architecture, so that heads behave the same everywhere.

An architecture supplies a *feature extractor*: a module mapping a batch of inputs to an
``n x feature_dim`` tensor, with a ``taps(head)`` method listing its tapped layers (``head``
is the ``Linear`` reading the features, or ``None`` where no single ``Linear`` does).
:func:`attach_head` puts a classifier on top of it: a plain ``Linear`` for class- and
domain-incremental scenarios, Avalanche's ``MultiHeadClassifier`` (one ``Linear`` per task
label) for task-incremental ones.
"""

from __future__ import annotations

from typing import Protocol

from torch import nn

from collapsebench import Tap


class FeatureExtractor(Protocol):
    feature_dim: int

    def __call__(self, x): ...

    def taps(self, head: nn.Linear | None) -> list[Tap]: ...


class SingleHeadClassifier(nn.Module):
    """Features followed by one ``Linear`` head shared by every experience."""

    def __init__(self, features: FeatureExtractor, n_classes: int):
        super().__init__()
        self.features = features
        self.head = nn.Linear(features.feature_dim, n_classes)

    def forward(self, x):
        return self.head(self.features(x))

    def collapsebench_taps(self) -> list[Tap]:
        return self.features.taps(self.head)

    def collapsebench_reset_head(self) -> None:
        # In place, so that optimizers and Avalanche training plugins holding the parameters
        # keep pointing at the live ones.
        self.head.reset_parameters()


def attach_head(features: FeatureExtractor, n_classes: int, multihead: bool) -> nn.Module:
    """The classifier for ``features``: multi-head (task labels in ``forward``) or single-head."""
    if multihead:
        # Avalanche takes seconds to import: only task-incremental runs pay for it.
        from .multihead import MultiHeadTaskClassifier

        return MultiHeadTaskClassifier(features, n_classes)
    return SingleHeadClassifier(features, n_classes)
