"""Minibatches straight from tensors, for streams whose samples are fixed tensors.

Avalanche's DataLoader fetches every sample through its dataset stack and collates it, every
epoch. When a stream declares its samples fixed (``StreamData.fixed_samples``: no random
augmentation), the run gathers each experience's samples into tensors once and slices
minibatches out of them: same samples, same shuffling source (the global torch RNG), the same
Avalanche training loop, but without the per-sample overhead that made plain Avalanche about
1.8x slower than a hand-written loop on MNIST (docs/performance.md).

Unshuffled, the batches are exactly DataLoader's. Shuffled, the order differs from
DataLoader's for the same seed: DataLoader's sampler seeds a generator of its own from the
global RNG, TensorBatches draws its permutation from the global RNG directly. Each is fixed by
the run's seed, and each epoch holds every sample once (tests/test_avalanche_equivalence.py).
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict

import torch

#: Gathered datasets kept for reuse (test experiences are evaluated after every experience);
#: beyond this the least recently used are dropped (800 permuted-MNIST tasks would not fit).
CACHE_BYTES = 2 * 1024**3


class TensorBatches:
    """An iterable of ``[inputs, targets, task_labels]`` minibatches over stacked tensors."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, drop_last: bool = False):
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.tensors[0])
        # randperm on the global generator, as DataLoader's RandomSampler draws from it too:
        # runs stay reproducible from the run's seed.
        order = torch.randperm(n) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if self.drop_last and start + self.batch_size > n:
                break
            if order is None:
                yield [t[start : start + self.batch_size] for t in self.tensors]
            else:
                index = order[start : start + self.batch_size]
                # index_select, not t[index]: fancy indexing was 100x slower on busy CPUs here.
                yield [t.index_select(0, index) for t in self.tensors]


#: Seconds spent gathering datasets into tensors (one-time data preparation, reported apart
#: from training time).
gather_seconds = 0.0


@contextlib.contextmanager
def uncounted_gathering():
    """Gathering done inside is not counted in ``gather_seconds``, the run's data preparation.

    For an evaluator that trains learners of its own: its time is evaluator time already.
    """
    global gather_seconds
    before = gather_seconds
    try:
        yield
    finally:
        gather_seconds = before


def gather(dataset) -> tuple[torch.Tensor, ...] | None:
    """A dataset's ``(x, y, t)`` samples stacked into three tensors, or None if they are not tensors."""
    global gather_seconds
    started = time.perf_counter()
    try:
        return _stack(dataset)
    finally:
        gather_seconds += time.perf_counter() - started


def _stack(dataset) -> tuple[torch.Tensor, ...] | None:
    if len(dataset) == 0:
        return None
    samples = [dataset[i] for i in range(len(dataset))]
    if len(samples[0]) != 3 or not torch.is_tensor(samples[0][0]):
        return None
    inputs = torch.stack([s[0] for s in samples])
    targets = torch.as_tensor([int(s[1]) for s in samples], dtype=torch.long)
    tasks = torch.as_tensor([int(s[2]) for s in samples], dtype=torch.long)
    return inputs, targets, tasks


class TensorBatchesMixin:
    """Put before an Avalanche template class: its data loaders become :class:`TensorBatches`.

    Falls back to Avalanche's own loaders for a dataset that mixes task labels (its
    task-balanced loader matters there) or whose samples are not tensors. Plugins that
    replace ``strategy.dataloader`` (replay) are untouched.
    """

    #: The bound on gathered test tensors kept; a run whose protocol tests each experience once
    #: sets it to 0 (only the latest is kept).
    collapsebench_cache_bytes = CACHE_BYTES

    def _gathered(self, key_dataset, dataset):
        cache = self.__dict__.setdefault("_collapsebench_gathered", OrderedDict())
        key = id(key_dataset)
        if key in cache:
            cache.move_to_end(key)
            return cache[key][1]
        tensors = gather(dataset)
        if tensors is not None and len(torch.unique(tensors[2])) > 1:
            tensors = None
        cache[key] = (key_dataset, tensors)  # holding the dataset keeps its id from being reused
        # A running total: summing over the whole cache at every call grew with the number of experiences.
        held = self.__dict__.get("_collapsebench_gathered_bytes", 0) + _nbytes(tensors)
        while len(cache) > 1 and held > self.collapsebench_cache_bytes:
            held -= _nbytes(cache.popitem(last=False)[1][1])
        self.__dict__["_collapsebench_gathered_bytes"] = held
        return tensors

    def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None, persistent_workers=False,
                              drop_last=False, **kwargs):
        # Gathered from the adapted dataset, which Avalanche training plugins may have changed;
        # it is used for one experience only, so it is not worth caching.
        tensors = gather(self.adapted_dataset)
        if tensors is not None and len(torch.unique(tensors[2])) > 1:
            tensors = None
        if tensors is None:
            return super().make_train_dataloader(num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory,
                                                 persistent_workers=persistent_workers, drop_last=drop_last, **kwargs)
        self.dataloader = TensorBatches(tensors, self.train_mb_size, shuffle, drop_last)

    def make_eval_dataloader(self, num_workers=0, shuffle=False, pin_memory=None, persistent_workers=False, **kwargs):
        # Keyed by the experience's own dataset: the adapted one is a new object at every call.
        tensors = self._gathered(self.experience.dataset, self.adapted_dataset)
        if tensors is None:
            return super().make_eval_dataloader(num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory,
                                                persistent_workers=persistent_workers, **kwargs)
        self.dataloader = TensorBatches(tensors, self.eval_mb_size, shuffle)


def _nbytes(tensors) -> int:
    return sum(t.nbytes for t in tensors or ())


def with_tensor_batches(template_cls: type) -> type:
    """``template_cls`` with :class:`TensorBatchesMixin` in front, as a named class of this module.

    Named, not anonymous, so that Avalanche's checkpointing pickles instances by reference.
    """
    name = f"TensorBatches_{template_cls.__module__.replace('.', '_')}_{template_cls.__qualname__.replace('.', '_')}"
    if name not in globals():
        cls = type(name, (TensorBatchesMixin, template_cls), {"__module__": __name__, "__qualname__": name})
        globals()[name] = cls
    return globals()[name]
