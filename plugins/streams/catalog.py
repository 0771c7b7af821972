"""The records of the data-set streams: names, options, scenarios.

Kept free of torch and Avalanche so that listing plugins stays fast; each factory imports its
loader module when a run builds the stream.
"""

from __future__ import annotations

from importlib import import_module

from collapsebench import CollapsebenchError, Option, Stream

from . import layout


def _lazy(module: str, function: str):
    def factory(context, **options):
        return getattr(import_module(f"{__package__}.{module}"), function)(context, **options)

    factory.__name__ = function
    factory.__qualname__ = function
    return factory


#: From this many permutations on, permuted MNIST is a plasticity stream (Dohare et al.: 800)
#: and its T x T matrix would cost more than training.
LONG_STREAM = 100


def _current_when_long(options) -> str | None:
    return "current" if options.get("n_experiences", 0) >= LONG_STREAM else None


def _class_order_options(n_classes: int) -> tuple[Option, ...]:
    return (
        Option(
            "class_order",
            [],
            f"explicit order of the {n_classes} classes (empty: a random order drawn with class_order_seed)",
        ),
        Option("class_order_seed", None, "seed of the random class order (default: the run's seed)", type=int, minimum=0, maximum=2**32 - 1),
    )


def _subset_options(what: str = "experience") -> tuple[Option, ...]:
    return (
        Option("train_subset", 0, f"keep this many training samples per {what}, class-balanced (0: all)", minimum=0),
        Option("test_subset", 0, f"keep this many test samples per {what}, class-balanced (0: all)", minimum=0),
    )


def _base_default_evaluation(options) -> str | None:
    """random-labels is evaluated as its base would be (a 2,000-task continual-imagenet32 base: current).

    Only built-in bases are known here (a record's function sees options, not the registry); a
    third-party base leaves the default at full unless the run sets evaluation.
    """
    base = options.get("base", "split-mnist")
    record = next((s for s in STREAMS if s.name == base), None)
    if record is None or record.default_evaluation is None:
        return None
    declared = record.default_evaluation
    if callable(declared):
        base_options = options.get("base_options") or {}
        return declared({**record.option_defaults(), **(base_options if isinstance(base_options, dict) else {})})
    return declared


def _check_base_data(context, base="split-mnist", base_options=None, **options) -> None:
    """random-labels builds its base: the base's options and files are checked before any import,
    through the host's ``context.check_stream`` (any registered base), else for a built-in base."""
    if base == "random-labels":
        raise CollapsebenchError("'random-labels' cannot use itself as its base stream.")
    if not isinstance(base_options, dict):
        raise CollapsebenchError(
            f"Bad value for option 'base_options' of 'random-labels': expected a table, got {base_options!r}.")
    check = getattr(context, "check_stream", None)
    if check is not None:
        check(base, context, base_options)
        return
    record = next((s for s in STREAMS if s.name == base), None)
    if record is not None:
        resolved = record.resolve_options(base_options)
        if record.check_data is not None:
            record.check_data(context, **resolved)


def _check_similarity_data(context, data="digits", **options) -> None:
    """task-similarity reads MNIST's files only when built on MNIST (digits ship with scikit-learn)."""
    if data == "mnist":
        layout.check_mnist(context)


STREAMS = (
    Stream(
        name="split-mnist",
        description="MNIST in 5 experiences of 2 digits (torchvision's raw IDX files under the data root)",
        factory=_lazy("mnist", "build_split_mnist"),
        check_data=layout.check_mnist,
        scenarios=("class", "task"),
        options=(
            Option("n_experiences", 5, "number of experiences; the 10 digits are divided evenly",
                   choices=(1, 2, 5, 10)),
            *_class_order_options(10),
            *_subset_options(),
        ),
    ),
    Stream(
        name="permuted-mnist",
        description="MNIST under a fixed random pixel permutation per experience (Dohare's online setting: 800)",
        factory=_lazy("mnist", "build_permuted_mnist"),
        check_data=layout.check_mnist,
        scenarios=("domain",),
        default_evaluation=_current_when_long,
        options=(
            Option("n_experiences", 10, "number of permutations (Dohare et al.: 800)", minimum=1, maximum=100_000),
            Option("permutation_seed", None, "seed of the permutations (default: the run's seed)", type=int, minimum=0, maximum=2**32 - 1),
            *_subset_options(),
        ),
    ),
    Stream(
        name="split-cifar10",
        description="CIFAR-10 in 2 experiences of 5 classes (Ramasesh et al.) or 5 of 2",
        factory=_lazy("cifar", "build_split_cifar10"),
        check_data=layout.check_cifar10,
        scenarios=("class", "task"),
        options=(
            Option("n_experiences", 2, "number of experiences; the 10 classes are divided evenly",
                   choices=(1, 2, 5, 10)),
            *_class_order_options(10),
            *_subset_options(),
        ),
    ),
    Stream(
        name="split-cifar100",
        description="CIFAR-100 in 10 or 20 experiences of equal class groups",
        factory=_lazy("cifar", "build_split_cifar100"),
        check_data=layout.check_cifar100,
        scenarios=("class", "task"),
        options=(
            Option("n_experiences", 10, "number of experiences; the 100 classes are divided evenly",
                   choices=(1, 2, 4, 5, 10, 20, 25, 50, 100)),
            *_class_order_options(100),
            *_subset_options(),
        ),
    ),
    Stream(
        name="cifar100-shift",
        description="CIFAR-100 20-way superclass task; each experience has different subclasses of every superclass",
        factory=_lazy("cifar", "build_cifar100_shift"),
        check_data=layout.check_cifar100,
        scenarios=("domain", "task"),
        options=(
            Option(
                "n_experiences",
                5,
                "number of experiences (1 to 5); each takes 5 // n_experiences subclasses of every superclass",
                minimum=1,
                maximum=5,
            ),
            Option("class_order_seed", None, "seed of the subclass assignment (default: the run's seed)", type=int, minimum=0, maximum=2**32 - 1),
            *_subset_options(),
        ),
    ),
    Stream(
        name="continual-imagenet32",
        description="Dohare's Continual ImageNet: binary tasks on pairs of 32x32 ImageNet classes, head reset per task",
        factory=_lazy("imagenet32", "build_continual_imagenet32"),
        check_data=layout.check_imagenet32,
        scenarios=("domain", "task"),
        # The head is reset for every task: testing old tasks measures heads that are gone.
        default_evaluation="current",
        options=(
            Option("n_experiences", 2000, "number of binary tasks (Dohare et al.: 2,000 or 5,000)", minimum=1, maximum=1_000_000),
            Option("n_classes", 1000, "use ImageNet classes 1..n_classes; pairs repeat once all are used", minimum=2, maximum=1000),
            Option("train_per_class", 600, "training images per class (the first ones in the training batches)", minimum=1),
            Option("test_per_class", 100, "test images per class (the next ones, or the validation set's)", minimum=1),
            Option(
                "test_images",
                "train",
                "where test images come from: 'train' (Dohare's 700 per class) or 'val' (val_data.npz)",
                choices=("train", "val"),
            ),
            Option("class_order_seed", None, "seed of the class pairing (default: the run's seed)", type=int, minimum=0, maximum=2**32 - 1),
        ),
    ),
    Stream(
        name="task-similarity",
        description="two tasks of controlled similarity: task B's classes mix task A's with new ones (Ramasesh et al.)",
        factory=_lazy("similarity", "build_task_similarity"),
        check_data=_check_similarity_data,
        scenarios=("task", "domain"),
        options=(
            Option("similarity", 0.5, "how much task B is task A: 1 = A's classes, 0 = new classes only",
                   minimum=0.0, maximum=1.0),
            Option("mixing", "classes",
                   "'classes': that share of each B label's samples are A's class, the rest a new class; "
                   "'inputs': every sample blends an A image and a new one, weighted by similarity",
                   choices=("classes", "inputs")),
            Option("data", "digits", "scikit-learn's 8x8 digits (no files) or MNIST (files under the data root)",
                   choices=("digits", "mnist")),
            Option("classes_per_task", 5, "classes of each task (A's and the new ones, drawn from the 10)",
                   minimum=1, maximum=5),
            Option("class_order_seed", None, "seed of the class draw and of B's samples (default: the run's seed)",
                   type=int, minimum=0, maximum=2**32 - 1),
            *_subset_options(),
        ),
    ),
    Stream(
        name="random-labels",
        description="another stream's inputs with labels shuffled within each experience: a pure plasticity probe",
        factory=_lazy("random_labels", "build_random_labels"),
        check_data=_check_base_data,
        scenarios=("class", "task", "domain"),
        default_evaluation=_base_default_evaluation,
        options=(
            Option("base", "split-mnist", "the stream whose inputs are used"),
            Option("base_options", {}, "options of the base stream, as a table"),
            Option("label_seed", None, "seed of the label shuffles (default: the run's seed)", type=int, minimum=0, maximum=2**32 - 1),
            Option(
                "evaluate_on",
                "train",
                "test each experience on its own shuffled training samples ('train': memorization) or on "
                "the base's test samples with shuffled labels ('test': chance by construction)",
                choices=("train", "test"),
            ),
        ),
    ),
)
