"""Built-in streams, provided through the same hook a third-party collapsebench plugin uses."""

from __future__ import annotations

from collapsebench import Option, Stream, hookimpl

from .catalog import STREAMS as DATASET_STREAMS


def _split_digits(context, **options):
    from .digits import build_split_digits

    return build_split_digits(context, **options)


@hookimpl
def collapsebench_streams():
    return [
        Stream(
            name="split-digits",
            description="scikit-learn's 8x8 digits (1,797 images, no download), 5 experiences of 2 classes",
            factory=_split_digits,
            scenarios=("class", "task"),
            options=(
                Option("n_experiences", 5, "number of experiences; the 10 classes are divided evenly",
                       choices=(1, 2, 5, 10)),
                Option("test_fraction", 0.2, "held-out fraction, stratified by class with the run's seed", minimum=0.01, maximum=0.99),
            ),
        ),
        *DATASET_STREAMS,
    ]
