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

A shuffled epoch of an experience up to ``SHUFFLE_WHOLE_BYTES`` is put in its shuffled order in
one gather per tensor, and its minibatches are slices of that copy: the same rows as a gather
per minibatch, with one operation per epoch instead of three per step.

On a device other than the CPU the gathered tensors are moved there once, when gathered: each
epoch then copies only its permutation (one index per sample) to the device, and every
minibatch is cut out of device memory. The permutation is still drawn on the CPU generator, so
a run's batches are the same on every device.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict

import torch

from collapsebench import avalanche_imports
from collapsebench.leanstep import PlacedMinibatch

avalanche_imports.install()  # ahead of the Avalanche import below (see that module)

from avalanche.core import SupervisedPlugin  # noqa: E402

#: Gathered datasets kept for reuse (test experiences are evaluated after every experience);
#: beyond this the least recently used are dropped (800 permuted-MNIST tasks would not fit).
CACHE_BYTES = 2 * 1024**3
#: An experience up to this size is shuffled whole at each epoch (a second copy of it, held for
#: the epoch); a larger one is gathered minibatch by minibatch.
SHUFFLE_WHOLE_BYTES = 256 * 1024**2


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
        tensors = self.tensors
        whole = None  # (the unshuffled tensors, the permutation) where the epoch is one shuffled copy
        if order is not None:
            # One copy of the permutation per epoch to the tensors' device; the minibatches are
            # then cut there, with no copy from host memory per step (a no-op on the CPU).
            order = order.to(tensors[0].device)
            if sum(t.nbytes for t in tensors) <= SHUFFLE_WHOLE_BYTES:
                # The epoch in shuffled order, in one gather per tensor: each minibatch is then a
                # slice of it, where a gather per minibatch cost more than its copy (the same rows).
                # index_select, not t[order]: fancy indexing was 100x slower on busy CPUs here.
                whole = (tensors, order)
                tensors, order = [t.index_select(0, order) for t in tensors], None
        devices = {t.device for t in tensors}
        device = devices.pop() if len(devices) == 1 else None
        last = (n // self.batch_size - 1 if self.drop_last else (n - 1) // self.batch_size) * self.batch_size
        for start in range(0, n, self.batch_size):
            if self.drop_last and start + self.batch_size > n:
                break
            if whole is not None and start == last:
                # The last minibatch is gathered, not sliced: the template holds it past the epoch,
                # and as a slice it would keep the shuffled copy alive while the next epoch makes
                # its own (two copies of the experience at once).
                (originals, permutation), whole, tensors = whole, None, None
                index = permutation[start : start + self.batch_size]
                batch = [t.index_select(0, index) for t in originals]
            elif order is None:
                batch = [t[start : start + self.batch_size] for t in tensors]
            else:
                index = order[start : start + self.batch_size]
                batch = [t.index_select(0, index) for t in tensors]
            if device is not None:
                # Marked with its device: the template then skips moving it there (leanstep).
                batch = PlacedMinibatch(batch)
                batch.device = device
            yield batch


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


class Timing:
    """What an evaluator's context offers of the run's clock (EvaluatorContext.timing)."""

    @staticmethod
    def uncounted():
        return uncounted_gathering()


def gather(dataset) -> tuple[torch.Tensor, ...] | None:
    """A dataset's ``(x, y, t)`` samples stacked into three tensors, or None if they are not tensors."""
    global gather_seconds
    started = time.perf_counter()
    try:
        return _stack(dataset)
    finally:
        gather_seconds += time.perf_counter() - started


def gather_onto(dataset, device) -> tuple[torch.Tensor, ...] | None:
    """:func:`gather`, then placed on ``device`` once; None also for a dataset of several task labels.

    On a GPU the experience then lives in device memory: a minibatch is cut there, never copied
    from host memory at each step (tests/test_device_placement.py).
    """
    global gather_seconds
    tensors = gather(dataset)
    if tensors is None or _several(tensors[2]):
        return None  # several task labels: Avalanche's task-balanced loader matters there
    started = time.perf_counter()
    try:
        return tuple(t.to(device) for t in tensors)
    finally:
        gather_seconds += time.perf_counter() - started


def _several(labels: torch.Tensor) -> bool:
    """Whether ``labels`` holds more than one distinct value (a comparison, not ``torch.unique``'s sort)."""
    return len(labels) > 1 and bool((labels != labels[0]).any())


def _stack(dataset) -> tuple[torch.Tensor, ...] | None:
    if len(dataset) == 0:
        return None
    bulk = _bulk_stack(dataset)
    if bulk is not None:
        return bulk
    first = dataset[0]
    if len(first) != 3 or not torch.is_tensor(first[0]):
        return None  # decided on one sample, before reading all of them
    samples = [first, *(dataset[i] for i in range(1, len(dataset)))]
    inputs = torch.stack([s[0] for s in samples])
    targets = torch.as_tensor([int(s[1]) for s in samples], dtype=torch.long)
    tasks = torch.as_tensor([int(s[2]) for s in samples], dtype=torch.long)
    return inputs, targets, tasks


#: The stream-side hook of the bulk path: a dataset at the bottom of an Avalanche dataset
#: whose method of this name takes a LongTensor of its own sample indices and returns
#: ``(inputs, labels)`` for them, stacked, exactly as its ``__getitem__`` would one by one
#: (or None when it cannot), lets a whole experience be gathered in one indexing operation.
ROWS_HOOK = "collapsebench_rows"


def dataset_rows(dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(inputs, labels)`` of ``dataset``'s samples ``indices`` (LongTensor) by the bulk path, or None.

    ``dataset`` is an Avalanche dataset (its subsets and concatenations are followed) or one that
    offers :data:`ROWS_HOOK`. None when any part of it transforms samples or lacks the hook: the
    caller then reads samples one by one. A wrapper stream's own dataset can offer the hook by
    calling this on the base dataset it wraps.
    """
    flat = getattr(dataset, "_flat_data", None)
    if flat is not None:
        group = getattr(getattr(flat, "_transform_groups", None), "current_group", None)
        return _flat_rows(flat, indices, group)
    return _leaf_rows(dataset, indices)


def _leaf_rows(dataset, indices):
    hook = getattr(dataset, ROWS_HOOK, None)
    if callable(hook):
        return hook(indices)
    if _plain_tensor_dataset(dataset):
        inputs, labels = dataset.tensors
        return inputs.index_select(0, indices), labels.index_select(0, indices)
    return None


def _plain_tensor_dataset(dataset) -> bool:
    """A torch ``TensorDataset`` of (inputs, labels) whose ``__getitem__`` is torch's or Avalanche's
    (which only turns the label into an int): its rows are its tensors' rows. A subclass with a
    ``__getitem__`` of its own may transform samples, so it needs the hook."""
    from torch.utils.data import TensorDataset

    if not isinstance(dataset, TensorDataset) or len(dataset.tensors) != 2:
        return False
    getitem = type(dataset).__getitem__
    if getitem is TensorDataset.__getitem__:
        return True
    from avalanche.benchmarks.utils.classification_dataset import _TensorClassificationDataset

    return getitem is _TensorClassificationDataset.__getitem__


def _flat_rows(node, indices, group):
    """Follows Avalanche's FlatData index arithmetic (``FlatData._get_idx``) on a whole index tensor."""
    if getattr(node, "_flat_data", None) is not None:
        return None  # a nested Avalanche dataset appends its own attributes to each sample
    datasets = getattr(node, "_datasets", None)
    if datasets is None:
        return _leaf_rows(node, indices)
    for groups in (getattr(node, "_frozen_transform_groups", None), getattr(node, "_transform_groups", None)):
        # .get: the groups are a defaultdict, and a lookup must not add an entry
        if groups is not None and groups.transform_groups.get(group) is not None:
            return None
    if node._indices is not None:
        indices = torch.as_tensor(node._indices, dtype=torch.long).index_select(0, indices)
    if len(datasets) == 1:
        return _flat_rows(datasets[0], indices, group)
    ends = torch.as_tensor(node._cumulative_sizes, dtype=torch.long)
    which = torch.searchsorted(ends, indices, right=True)
    inputs = labels = None
    for part in torch.unique(which).tolist():
        where = (which == part).nonzero().squeeze(1)
        local = indices.index_select(0, where) - (int(ends[part - 1]) if part else 0)
        rows = _flat_rows(datasets[part], local, group)
        if rows is None:
            return None
        if inputs is None:
            inputs = rows[0].new_empty((len(indices), *rows[0].shape[1:]))
            labels = rows[1].new_empty((len(indices),))
        inputs[where], labels[where] = rows[0], rows[1]
    return inputs, labels


def _bulk_stack(dataset) -> tuple[torch.Tensor, ...] | None:
    """:func:`_stack`'s result in one indexing operation, when the dataset's parts allow it."""
    attributes = getattr(dataset, "_data_attributes", None)
    if attributes is None:
        return None
    appended = [a for a in attributes.values() if a.use_in_getitem]
    # Avalanche appends these attributes to each sample; only the task label is understood here.
    if [a.name for a in appended] != ["targets_task_labels"]:
        return None
    n = len(dataset)
    rows = dataset_rows(dataset, torch.arange(n))
    if rows is None:
        return None
    inputs, labels = rows
    task_labels = appended[0]
    uniques = task_labels.uniques
    if len(uniques) == 1:
        tasks = torch.full((n,), int(next(iter(uniques))), dtype=torch.long)
    else:
        tasks = torch.as_tensor([int(t) for t in task_labels], dtype=torch.long)
    result = inputs, torch.as_tensor(labels, dtype=torch.long), tasks
    # A hook that disagreed with __getitem__ would change results silently: spot-check both ends.
    for i in {0, n - 1}:
        sample = dataset[i]
        if not (torch.equal(sample[0], inputs[i]) and int(sample[1]) == int(result[1][i])
                and int(sample[2]) == int(tasks[i])):
            return None
    return result


class TensorBatchesPlugin(SupervisedPlugin):
    """An Avalanche training plugin that hands the template :class:`TensorBatches` loaders.

    Avalanche 0.6's templates build the loader of an experience (``make_train_dataloader``,
    ``make_eval_dataloader``) right before they call ``before_training_exp`` and
    ``before_eval_exp``; there this plugin replaces it with minibatches sliced from the
    experience's gathered tensors. It goes first in the template's plugin list
    (runner.make_template), so that a plugin bringing its own loader (replay) replaces this one
    in turn. Avalanche's own loader stays for a dataset that mixes task labels (its
    task-balanced loader matters there) or whose samples are not tensors.

    It replaced a template mixin (put in front of the template by a class made at run time) at
    the same speed: the loader Avalanche builds first and this plugin drops cost under 0.4 ms
    per experience (benchmarks/bench_loader_swap.py, docs/performance.md), and is now left
    unbuilt until used (leaneval).
    """

    def __init__(self, cache_bytes: int = CACHE_BYTES):
        super().__init__()
        #: The bound on gathered test tensors kept; a run whose protocol tests each experience
        #: once sets it to 0 (only the latest is kept).
        self.cache_bytes = cache_bytes
        self._gathered: OrderedDict = OrderedDict()
        self._gathered_bytes = 0

    def before_training_exp(self, strategy, shuffle=True, drop_last=False, **kwargs):
        # Gathered from the adapted dataset, which Avalanche training plugins may have changed;
        # it is used for one experience only, so it is not worth caching. Gathered when first
        # used: a plugin that brings its own loader (replay) throws this one away unread.
        avalanche_loader = strategy.dataloader  # unbuilt (leaneval) until the fallback needs it
        strategy.dataloader = PendingTensorBatches(
            strategy.adapted_dataset, strategy.device, strategy.train_mb_size, shuffle, drop_last,
            lambda: avalanche_loader.loader if isinstance(avalanche_loader, DeferredLoader) else avalanche_loader)

    def before_eval_exp(self, strategy, shuffle=False, **kwargs):
        # Keyed by the experience's own dataset: the adapted one is a new object at every call.
        tensors = self._cached(strategy.experience.dataset, strategy.adapted_dataset, strategy.device)
        if tensors is not None:
            strategy.dataloader = TensorBatches(tensors, strategy.eval_mb_size, shuffle)
        else:
            # The template left Avalanche's loader unbuilt for this plugin to replace
            # (leaneval, a DeferredLoader): the plugins after this one see the loader itself.
            if isinstance(strategy.dataloader, DeferredLoader):
                strategy.dataloader = strategy.dataloader.loader

    def _cached(self, key_dataset, dataset, device):
        cache = self._gathered
        key = id(key_dataset)
        if key in cache:
            cache.move_to_end(key)
            return cache[key][1]
        tensors = gather_onto(dataset, device)
        cache[key] = (key_dataset, tensors)  # holding the dataset keeps its id from being reused
        # A running total: summing over the whole cache at every call grew with the number of experiences.
        self._gathered_bytes += _nbytes(tensors)
        while len(cache) > 1 and self._gathered_bytes > self.cache_bytes:
            self._gathered_bytes -= _nbytes(cache.popitem(last=False)[1][1])
        return tensors

    def __getstate__(self):
        # Checkpointed with the strategy: the gathered tensors are rebuilt from the stream on resume.
        return {**self.__dict__, "_gathered": OrderedDict(), "_gathered_bytes": 0}


class DeferredLoader:
    """A data loader built on first use (iteration, ``len`` or any public attribute) by ``build``."""

    def __init__(self, build):
        self._build = build
        self._loader = None

    @property
    def loader(self):
        if self._loader is None:
            self._loader, self._build = self._build(), None
        return self._loader

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.loader, name)  # what a plugin reads of a loader (batch_size, dataset, ...)


class PendingTensorBatches(DeferredLoader):
    """A training experience's :class:`TensorBatches`, gathered on first use.

    Until it is iterated (or its length asked), nothing is read: when an Avalanche training
    plugin replaces the strategy's loader (replay does from the second experience on), the
    experience is never gathered. Gathering does not touch the random number generators, so
    when it happens does not change a result. A dataset that cannot be gathered (samples that
    are not tensors, several task labels) gets Avalanche's own loader at that moment instead;
    building one draws no random numbers either (its sampler draws when iterated).
    """

    def __init__(self, dataset, device, batch_size: int, shuffle: bool, drop_last: bool, fallback):
        self.dataset = dataset
        self.device = device
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._fallback = fallback
        super().__init__(self._gather)

    def _gather(self):
        tensors = gather_onto(self.dataset, self.device)
        loader = (TensorBatches(tensors, self.batch_size, self.shuffle, self.drop_last)
                  if tensors is not None else self._fallback())
        self._fallback = None
        return loader


def _nbytes(tensors) -> int:
    return sum(t.nbytes for t in tensors or ())

