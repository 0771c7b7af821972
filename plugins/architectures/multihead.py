"""The multi-head classifier for task-incremental scenarios, built on Avalanche's own modules."""

from __future__ import annotations

from avalanche.models import MultiHeadClassifier, MultiTaskModule

from collapsebench import Tap

from .heads import FeatureExtractor


class TaskHeads(MultiHeadClassifier):
    """Avalanche's multi-head classifier, answering for task labels it has no head for yet.

    Avalanche adds a task's head when an experience with that label starts (model
    adaptation), but evaluators also run probe inputs of tasks still to come through the
    model, for their activations. Such inputs get every class masked, exactly as a head
    masks the classes its task has not shown.
    """

    def forward_single_task(self, x, task_label):
        if str(task_label) not in self.classifiers:
            return x.new_full((x.shape[0], self.max_class_label), float(self.mask_value))
        return super().forward_single_task(x, task_label)


class MultiHeadTaskClassifier(MultiTaskModule):
    """Shared features, one ``Linear`` head per task label.

    Avalanche's ``SupervisedTemplate`` passes task labels to a ``MultiTaskModule`` and adds
    a head when a new task label arrives (model adaptation). Every head has ``n_classes``
    outputs, so that heads of mini-batches mixing tasks (replay) line up; within a head,
    Avalanche masks the classes the task has not shown during training.
    """

    def __init__(self, features: FeatureExtractor, n_classes: int):
        super().__init__()
        self.features = features
        self.head = TaskHeads(features.feature_dim, initial_out_features=n_classes)

    def forward(self, x, task_labels):
        # The features run once on the whole mini-batch (BatchNorm sees all of it); only the
        # head is split by task.
        return self.head(self.features(x), task_labels)

    def forward_single_task(self, x, task_label):
        return self.head.forward_single_task(self.features(x), task_label)

    def collapsebench_taps(self) -> list[Tap]:
        # No single Linear reads the last hidden layer: each task has its own.
        return self.features.taps(None)

    def collapsebench_reset_head(self) -> None:
        for task_head in self.head.classifiers.values():
            task_head.classifier.reset_parameters()
