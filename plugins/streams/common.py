"""Checks and defaults shared by the data-set streams' options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collapsebench import CollapsebenchError


def seed_or_default(value: Any, run_seed: int, stream: str, option: str) -> int:
    """``value`` as an int seed, or the run's seed where it is unset (None)."""
    if value is None:
        return int(run_seed)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CollapsebenchError(f"Bad value for option {option!r} of {stream!r}: expected an integer seed, got {value!r}.") from None


def class_order(given: Sequence[Any], seed: int, classes: Sequence[int], stream: str) -> list[int]:
    """The given order if any (it must list every class once), else ``classes`` shuffled with ``seed``."""
    from .tensors import shuffled

    if not given:
        return shuffled(list(classes), seed)
    try:
        order = [int(c) for c in given]
    except (TypeError, ValueError):
        raise CollapsebenchError(f"Bad value for option 'class_order' of {stream!r}: expected integers, got {list(given)!r}.") from None
    if sorted(order) != sorted(classes):
        raise CollapsebenchError(
            f"Bad value for option 'class_order' of {stream!r}: it must list each of the classes "
            f"{min(classes)}..{max(classes)} exactly once, got {order}."
        )
    return order


def groups_of(order: Sequence[int], n_experiences: int, stream: str) -> list[list[int]]:
    from .tensors import class_groups

    try:
        return class_groups(order, n_experiences)
    except ValueError:
        divisors = [d for d in range(1, len(order) + 1) if len(order) % d == 0]
        raise CollapsebenchError(
            f"Bad value for option 'n_experiences' of {stream!r}: {len(order)} classes do not split into "
            f"{n_experiences} equal experiences; choose one of {', '.join(map(str, divisors))}."
        ) from None


def non_negative(value: int, stream: str, option: str) -> int:
    if value < 0:
        raise CollapsebenchError(f"Bad value for option {option!r} of {stream!r}: expected 0 or more, got {value}.")
    return value


def check_scenario(scenario: str, allowed: Sequence[str], stream: str) -> None:
    if scenario not in allowed:
        raise CollapsebenchError(
            f"Stream {stream!r} supports the scenarios {', '.join(allowed)}, not {scenario!r}."
        )
