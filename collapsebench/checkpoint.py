"""Checkpoints after every experience, so that ``collapsebench run --resume`` continues a run.

The strategy (model, optimizer, Avalanche training plugins such as a replay buffer) and the
random number generators are saved as Avalanche's own checkpointing saves them, and read back
by it (``maybe_load_checkpoint``); only the pickler differs where that is safe (_save_strategy). The run's progress rides
in the same file, so the two can never disagree: timings, evaluator states, and how far the run
journal (collapsebench.journal) reached. The measurements themselves (accuracies, evaluator
records) live in that append-only journal, so a checkpoint does not grow with the run. The evaluation plugin is left out and rebuilt on resume: it holds the probe
set and the stream, which the run rebuilds identically from its seed.

A checkpoint is a pickle: loading it can run code. Each one is signed (collapsebench.signing),
and one without this installation's signature is refused before it is unpickled.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import time
from pathlib import Path
from typing import Any

from collapsebench import signing
from collapsebench.errors import CollapsebenchError

CHECKPOINT_FILE = "checkpoint.pkl"
CONFIG_FILE = "config.json"
#: Strategy attributes that are rebuilt rather than saved: the evaluator; the optimizer (dill
#: cannot pickle torch 2.13's optimizer objects, so its state_dict is saved instead); and
#: Avalanche's per-experience data (loaders, minibatches) that would only bloat the file.
TRANSIENT = ("evaluator", "optimizer", "dataloader", "adapted_dataset", "experience", "current_eval_stream", "mbatch",
             "mb_output")
#: A class attribute by which a template mixin names caches of its own to leave out as well,
#: so that this module need not know them.
TRANSIENT_ATTRIBUTE = "collapsebench_transient"


def transient(strategy) -> list[str]:
    """The attributes of ``strategy`` that a checkpoint leaves out.

    Every class of the template's MRO may declare its own (several mixins each keep a cache).
    """
    declared = [name for owner in (strategy, *type(strategy).__mro__)
                for name in vars(owner).get(TRANSIENT_ATTRIBUTE, ())]
    return [name for name in dict.fromkeys((*TRANSIENT, *declared)) if hasattr(strategy, name)]
_PROGRESS = "_collapsebench_progress"


class Cadence:
    """When a finished experience is checkpointed: every ``every``-th one, once at least
    ``seconds`` passed since the last checkpoint (or since training began).

    Elapsed time decides only *when* a checkpoint is written, never what is in it: a resume
    from any checkpoint continues exactly as the uninterrupted run (the random generators are
    saved with the strategy), so results do not depend on the machine's speed.
    """

    def __init__(self, every: int = 1, seconds: float = 0.0, clock=time.monotonic):
        self.every, self.seconds, self.clock = every, seconds, clock
        self.last = clock()

    def due(self, experiences_done: int) -> bool:
        return experiences_done % self.every == 0 and self.clock() - self.last >= self.seconds

    def saved(self) -> None:
        self.last = self.clock()


def save(strategy, run_dir: Path, progress: dict[str, Any]) -> None:
    """Checkpoint the strategy and ``progress`` atomically into ``run_dir``."""
    plugins = strategy.plugins
    strategy.plugins = [p for p in plugins if p is not strategy.evaluator]
    setattr(strategy, _PROGRESS, {**progress, "optimizer_state": strategy.optimizer.state_dict()})
    tmp = Path(run_dir) / f".{CHECKPOINT_FILE}.tmp"
    try:
        _save_strategy(strategy, tmp, exclude=transient(strategy))
        signing.install(tmp, Path(run_dir) / CHECKPOINT_FILE)
    finally:
        strategy.plugins = plugins
        delattr(strategy, _PROGRESS)
        tmp.unlink(missing_ok=True)


def _save_strategy(strategy, path: Path, exclude) -> None:
    """What Avalanche's ``save_checkpoint`` writes, pickled by Python's C pickler where that is the same.

    Avalanche pickles with dill, whose pure-Python pickler took 9-10 ms of a 10-11 ms checkpoint
    of an MLP (docs/performance.md, long streams); the C pickler writes the same objects in 3.
    dill is kept wherever its output would differ or the C pickler cannot write an object at
    all: an object whose type has a reducer registered with dill outside dill itself (Avalanche's
    constructor-based datasets, or a third-party ``dill.register``), anything defined in
    ``__main__`` (dill pickles it by value, so a resume in another process finds it), and
    lambdas, local classes and the like (the C pickler refuses them). ``torch.device`` gets the
    reduction Avalanche registers for it, so ``maybe_load_checkpoint`` maps devices on load as
    before. Loading is unchanged: Avalanche reads both with dill.
    """
    import copy

    import dill
    import torch
    from avalanche.training.determinism.rng_manager import RNGManager

    # Avalanche's save_checkpoint, step by step, but for the pickler.
    counter = strategy.clock.train_exp_counter
    strategy = copy.copy(strategy)
    for name in exclude:
        delattr(strategy, name)
    data = {"strategy": strategy, "rng_manager": RNGManager, "exp_counter": counter}
    try:
        torch.save(data, path, pickle_module=_c_pickle_module())
    except (_NeedsDill, pickle.PicklingError, TypeError, AttributeError):
        torch.save(data, path, pickle_module=dill)


class _NeedsDill(Exception):
    """Raised by the C pickler's reducer_override for an object that dill pickles differently."""


def _c_pickle_module():
    import types

    import dill
    import torch
    from avalanche.checkpointing import checkpoint_internals

    # Read at each checkpoint: importing a module can register another reducer.
    dill_only = {t for t, reducer in dill.Pickler.dispatch.items()
                 if not (reducer.__module__ or "").startswith(("dill", "pickle"))} - {torch.device}
    recreate_device = checkpoint_internals._recreate_pytorch_device

    class CheckedPickler(pickle.Pickler):
        def reducer_override(self, obj):
            kind = type(obj)
            if kind is torch.device:  # Avalanche's registered reduction, byte for byte
                return recreate_device, (obj.type,) if obj.index is None else (obj.type, obj.index)
            if kind in dill_only or kind.__module__ == "__main__" or getattr(obj, "__module__", None) == "__main__":
                raise _NeedsDill(kind)
            return NotImplemented

    return types.SimpleNamespace(__name__="pickle", Pickler=CheckedPickler)


def load(strategy, run_dir: Path, make_optimizer, trust: bool = False) -> dict[str, Any] | None:
    """Restore the strategy from ``run_dir``'s checkpoint; return its progress (None: no checkpoint).

    ``make_optimizer(model)`` builds the optimizer for the restored model. A checkpoint that this
    installation did not sign is refused before it is unpickled, unless ``trust`` is given.
    """
    from avalanche.checkpointing import maybe_load_checkpoint

    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    signing.check(path, trust)
    evaluator = strategy.evaluator
    try:
        # Avalanche prints "Mapping cpu to cpu" for every device it unpickles.
        with contextlib.redirect_stdout(io.StringIO()):
            strategy, experiences_done = maybe_load_checkpoint(strategy, path)
    except Exception as exc:
        raise CollapsebenchError(f"The checkpoint {str(path)!r} could not be read ({type(exc).__name__}: {exc}); "
                                 "delete it to start the run over.") from None
    strategy.plugins.append(evaluator)  # Avalanche keeps its evaluation plugin last
    progress = strategy.__dict__.pop(_PROGRESS)
    strategy.optimizer = make_optimizer(strategy.model)
    strategy.optimizer.load_state_dict(progress.pop("optimizer_state"))
    if progress["experiences_done"] != experiences_done:
        raise CollapsebenchError(f"The checkpoint {str(path)!r} is inconsistent: delete it to start the run over.")
    return progress


def check_trusted(run_dir: Path, trust: bool = False) -> None:
    """Refuse, before anything is built, a checkpoint in ``run_dir`` that this installation did not sign."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if path.is_file():
        signing.check(path, trust)


def remove(run_dir: Path) -> None:
    (Path(run_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)
    signing.remove(Path(run_dir) / CHECKPOINT_FILE)
