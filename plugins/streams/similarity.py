"""task-similarity: two tasks whose similarity is a number, for Ramasesh et al.'s claim that
forgetting is largest at intermediate task similarity.

Ramasesh, Dyer & Raghu (2020) vary how similar a second task is to the first between two ends:
a second task that *is* the first (nothing to forget) and one that shares nothing with it. This
stream builds that interpolation from a data set that is here (scikit-learn's digits or MNIST):

- The 10 classes are shuffled with ``class_order_seed``; task A takes the first
  ``classes_per_task`` of them, and the next ``classes_per_task`` are the new classes.
- Task A is a ``k``-way classification of its classes (label ``c`` for A's ``c``-th class).
- Task B is also ``k``-way; its label ``c`` is a mix of A's ``c``-th class and the ``c``-th
  new class with weight ``similarity``:

  - ``mixing = "classes"``: a share ``similarity`` of label ``c``'s samples are images of A's
    class, the rest images of the new class (two tasks' classes mixed in proportion);
  - ``mixing = "inputs"``: every sample is the pixel blend ``s * x_A + (1 - s) * x_new`` of an
    image of A's class and one of the new class.

  Either way ``similarity = 1`` makes task B task A's classes with task A's labels, and
  ``similarity = 0`` a task on classes A never saw.

In the ``task`` scenario (the default, as in Ramasesh's multi-head split CIFAR-10) each task has
its own head; in ``domain`` both share one head of ``k`` outputs. Forgetting is then the
accuracy on task A after A minus after B (the run's ``forgetting`` summary).
"""

from __future__ import annotations

import torch

from collapsebench import StreamContext, StreamData

from . import common, datafiles, tensors

NAME = "task-similarity"
SCENARIOS = ("task", "domain")


def _data(context: StreamContext, data: str):
    """``(train_x, train_y, test_x, test_y, input_shape, fingerprint settings, files, note)``."""
    if data == "digits":
        from .digits import split_digits

        train_x, test_x, train_y, test_y, digest = split_digits(context.seed, 0.2)
        as_images = lambda x: torch.from_numpy(x).unsqueeze(1)  # noqa: E731
        return (as_images(train_x), torch.from_numpy(train_y), as_images(test_x), torch.from_numpy(test_y),
                (1, 8, 8), {"digits": digest}, [], f"sklearn digits, {len(train_y)} train / {len(test_y)} test images")
    from .mnist import INPUT_SHAPE, load_mnist

    mnist = load_mnist(context.data_root, context.download)
    return (mnist.train_x, mnist.train_y, mnist.test_x, mnist.test_y, INPUT_SHAPE, {}, mnist.files, mnist.size_note())


def _pick(x: torch.Tensor, y: torch.Tensor, label: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` images of class ``label``, drawn at random without repeats."""
    where = (y == label).nonzero().squeeze(1)
    chosen = where[torch.randperm(len(where), generator=generator)[:count]]
    return tensors.rows(x, chosen)


def task_a(x: torch.Tensor, y: torch.Tensor, old: list[int]):
    """Task A's ``(inputs, labels)`` from one split: the images of ``old``, labelled by position."""
    keep = torch.isin(y, torch.tensor(old)).nonzero().squeeze(1)
    return tensors.rows(x, keep), tensors.renumber(tensors.rows(y, keep), old)


def task_b(x, y, old: list[int], new: list[int], similarity: float, mixing: str, generator: torch.Generator):
    """Task B's ``(inputs, labels)`` from one split: label ``c`` mixes class ``old[c]`` with ``new[c]``.

    Each label gets as many samples as the smaller of its two classes has, so the share of A's
    class is exactly ``round(similarity * n)`` of them under ``"classes"``.
    """
    inputs, labels = [], []
    for label, (a, b) in enumerate(zip(old, new)):
        n = min(int((y == a).sum()), int((y == b).sum()))
        if mixing == "classes":
            n_old = round(similarity * n)
            part = torch.cat([_pick(x, y, a, n_old, generator), _pick(x, y, b, n - n_old, generator)])
        else:
            part = similarity * _pick(x, y, a, n, generator) + (1.0 - similarity) * _pick(x, y, b, n, generator)
        inputs.append(part)
        labels.append(torch.full((n,), label, dtype=torch.long))
    return torch.cat(inputs), torch.cat(labels)


def build_task_similarity(
    context: StreamContext,
    data: str,
    similarity: float,
    mixing: str,
    classes_per_task: int,
    class_order_seed: int | None,
    train_subset: int,
    test_subset: int,
) -> StreamData:
    common.check_scenario(context.scenario, SCENARIOS, NAME)  # before reading any file
    train_x, train_y, test_x, test_y, input_shape, settings, files, note = _data(context, data)
    seed = common.seed_or_default(class_order_seed, context.seed, NAME, "class_order_seed")
    order = tensors.shuffled(list(range(10)), seed)
    old, new = order[:classes_per_task], order[classes_per_task:2 * classes_per_task]
    splits = ((train_x, train_y), (test_x, test_y))
    a_parts = [task_a(x, y, old) for x, y in splits]
    # The draws of task B's samples depend on the seed alone, not on the global RNG.
    generator = torch.Generator().manual_seed(seed)
    b_parts = [task_b(x, y, old, new, similarity, mixing, generator) for x, y in splits]
    benchmark = tensors.build_benchmark(
        None, None, None, None, [tuple(a_parts), tuple(b_parts)], context.scenario,
        train_subset=common.non_negative(train_subset, NAME, "train_subset"),
        test_subset=common.non_negative(test_subset, NAME, "test_subset"),
        subset_seed=seed,
    )
    settings = {**settings, "data": data, "similarity": similarity, "mixing": mixing,
                "classes_per_task": classes_per_task, "train_subset": train_subset, "test_subset": test_subset}
    return StreamData(
        fixed_samples=True,  # tensors prepared once, no random augmentation
        benchmark=benchmark,
        input_shape=input_shape,
        n_classes=classes_per_task,
        scenario=context.scenario,
        fingerprint=datafiles.fingerprint(NAME, files, settings),
        description=f"task similarity {similarity:g} ({mixing}): task A classes {old}, task B mixes them with "
                    f"{new}; {note}",
    )
