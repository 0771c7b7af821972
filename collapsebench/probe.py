"""The probe set: the fixed held-out inputs on which activations are measured.

SPEC.md: n held-out inputs (default 1,000, or all there are), drawn once with the run's seed
and recorded. It is drawn from the test stream with a private generator so that drawing it
does not move the training random state, and spread over experiences in proportion to their
size so every experience is represented (layer-wise CKA needs each experience's inputs).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

from collapsebench.taps import Tap, capture_activations


@dataclass
class ProbeSet:
    inputs: torch.Tensor
    targets: torch.Tensor
    task_labels: torch.Tensor
    #: the test experience each input comes from, and its index inside that experience
    experiences: torch.Tensor
    indices: torch.Tensor
    #: The last ``activations(..., key=...)`` answer: evaluators measuring at the same moment
    #: share one forward pass.
    _cached: tuple[Hashable, dict[str, torch.Tensor]] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def draw(cls, test_stream, size: int, seed: int) -> ProbeSet:
        generator = torch.Generator().manual_seed(seed)
        datasets = [experience.dataset for experience in test_stream]
        total = sum(len(d) for d in datasets)
        chosen = torch.randperm(total, generator=generator)[: min(size, total)].sort().values
        offsets = torch.tensor([0] + [len(d) for d in datasets]).cumsum(0)
        experience_of = torch.bucketize(chosen, offsets[1:], right=True)
        inputs, targets, tasks = [], [], []
        for flat, experience in zip(chosen.tolist(), experience_of.tolist()):
            x, y, t = datasets[experience][flat - int(offsets[experience])][:3]
            inputs.append(torch.as_tensor(x))
            targets.append(int(y))
            tasks.append(int(t))
        return cls(
            inputs=torch.stack(inputs),
            targets=torch.tensor(targets),
            task_labels=torch.tensor(tasks),
            experiences=experience_of,
            indices=chosen - offsets[experience_of],
        )

    def __len__(self) -> int:
        return len(self.targets)

    def activations(
        self, model, taps: list[Tap], device: str = "cpu", batch_size: int = 1000, mask=None, key: Hashable = None
    ) -> dict[str, torch.Tensor]:
        """Each tap's ``n x d`` activations on the probe inputs (all, or those in ``mask``).

        The model runs in eval mode without gradients; its mode is restored afterwards.

        With a ``key`` that names the moment (the model's identity and the training clock,
        see :func:`moment_key`), the answer is remembered and a second call with the same key,
        taps and no mask returns it without running the model again. Only the latest answer is
        kept. The tensors are shared between callers: treat them as read-only.
        """
        if key is not None and mask is None:
            full_key = (key, tuple(t.name for t in taps), str(device))
            if self._cached is not None and self._cached[0] == full_key:
                return self._cached[1]
            answer = self.activations(model, taps, device=device, batch_size=batch_size)
            self._cached = (full_key, answer)
            return answer
        from avalanche.models.utils import avalanche_forward

        inputs, tasks = self.inputs, self.task_labels
        if mask is not None:
            inputs, tasks = inputs[mask], tasks[mask]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), capture_activations(taps) as captured:
                for start in range(0, len(inputs), batch_size):
                    avalanche_forward(
                        model, inputs[start : start + batch_size].to(device), tasks[start : start + batch_size].to(device)
                    )
        finally:
            model.train(was_training)
        return {name: torch.cat(parts).cpu() for name, parts in captured.items()}

    def experience_mask(self, experience: int) -> torch.Tensor:
        """Which probe inputs come from test experience ``experience``."""
        return self.experiences == experience

    def summary(self) -> dict:
        """What results.json records: the size and which test inputs were drawn."""
        return {
            "size": len(self),
            "per_experience": torch.bincount(self.experiences).tolist(),
            "experience_index_pairs": torch.stack([self.experiences, self.indices], 1).tolist(),
        }


def moment_key(strategy, phase: str) -> tuple[Any, ...]:
    """What identifies one measuring moment of a run, for :meth:`ProbeSet.activations`'s cache.

    The phase is part of it: between the end of one experience and the start of the next
    (same iteration count) the head may be reset or grown.
    """
    return (id(strategy.model), strategy.experience.current_experience, strategy.clock.train_iterations, phase)
