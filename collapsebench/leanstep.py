"""Two of the template's per-minibatch methods, without the work that cannot change their result.

Avalanche's ``SupervisedProblem`` runs, for every minibatch:

- ``_unpack_minibatch``: ``.to(device, non_blocking=True)`` on each tensor of the minibatch. For
  a minibatch cut by ``fastdata.TensorBatches`` from tensors already on the strategy's device,
  each call returns the tensor itself: three calls per step that leave the minibatch as it was.
- ``forward``: ``hasattr(self.experience, "task_labels")`` (a Python ``__getattribute__`` of the
  experience), then ``avalanche_forward``, which calls the model with the task labels only when
  it is a ``MultiTaskModule``. For any other model both of Avalanche's branches call
  ``self.model(self.mb_x)``; only the check that the minibatch has a task-label column can fail.

:func:`lean_step_methods` gives the lean versions to ``dispatch.with_lean_dispatch`` only where
the template's method (and the ``mb_*`` properties it reads) is Avalanche's own, so a template
that overrides one keeps its version. Together they were some 15 of the 100 Python calls per
iteration that collapsebench adds over a hand-written loop (docs/performance.md); the results
are the same to the last bit (tests/test_lean_step.py).
"""

from __future__ import annotations

class PlacedMinibatch(list):
    """A minibatch list whose tensors are all on ``device`` (set by whoever cut it)."""

    __slots__ = ("device",)


#: Avalanche's originals, read when the first lean class is built (Avalanche is imported by then).
_AVALANCHE: dict = {}


def _unpack_minibatch(self):
    mbatch = self.mbatch
    if type(mbatch) is PlacedMinibatch and mbatch.device == self.device:
        return  # Avalanche's .to(self.device) of each tensor would return that tensor
    _AVALANCHE["_unpack_minibatch"](self)


def _forward(self):
    model, mbatch = self.model, self.mbatch
    if mbatch is None or len(mbatch) < 3 or _AVALANCHE["is_multi_task_module"](model):
        return _AVALANCHE["forward"](self)  # task labels used, or Avalanche's assertion to raise
    return model(mbatch[0])


#: lean method -> (its function, the other attributes of Avalanche's that it stands in for).
_LEAN = {"_unpack_minibatch": (_unpack_minibatch, ()), "forward": (_forward, ("mb_x", "mb_task_id"))}


def lean_step_methods(template_cls: type) -> dict:
    """The lean methods for ``template_cls``: those whose Avalanche original it does not override."""
    if not _AVALANCHE:
        from avalanche.models.utils import is_multi_task_module
        from avalanche.training.templates.problem_type.supervised_problem import SupervisedProblem

        _AVALANCHE.update({name: SupervisedProblem.__dict__[name] for name in ("_unpack_minibatch", "forward",
                                                                                  "mb_x", "mb_task_id")})
        _AVALANCHE["is_multi_task_module"] = is_multi_task_module
    kept = {}
    for name, (lean, stands_in_for) in _LEAN.items():
        if all(getattr(template_cls, a, None) is _AVALANCHE[a] for a in (name, *stands_in_for)):
            kept[name] = lean
    return kept
