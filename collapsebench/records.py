"""Typed records that collapsebench plugins hand to the host.

A provider hook (``collapsebench_architectures`` and friends) returns a list of these. Each
record checks its own fields when it is made, so a malformed one fails at load time with the
plugin's name attached, not in the middle of a run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]*$")
SCENARIOS = ("class", "task", "domain")


@dataclass(frozen=True)
class Option:
    """One option of an architecture, strategy, stream or evaluator.

    The default fixes the type: a value given on the command line or in TOML is coerced to
    it (an int option accepts ``3``, a float ``1e-4``, a list ``[256, 256]``).
    """

    name: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    #: The value's type when the default (None) does not show it: ``Option("seed", None, ..., type=int)``.
    type: type | None = None
    #: Inclusive bounds of a number (of each number, for a list of numbers); None: unbounded.
    #: A float option is always finite: NaN and infinity silently ruin a run rather than fail it.
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"option name {self.name!r} must be snake_case")
        if not self.help or "\n" in self.help:
            raise ValueError(f"option {self.name!r} needs a one-line help text")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"option {self.name!r}: minimum {self.minimum} exceeds maximum {self.maximum}")
        if self.default is not None and not isinstance(self.default, bool):
            check_number(self.default, self.minimum, self.maximum, what=f"option {self.name!r}'s default")

    def coerce(self, value: Any) -> Any:
        """Return ``value`` as this option's type, or raise ValueError saying why not."""
        kind = self.type or type(self.default)
        if value is None or (self.default is None and self.type is None):
            result = value
        elif kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                result = value.lower() in ("true", "1", "yes")
            elif isinstance(value, bool):
                result = value
            else:
                raise ValueError(f"expected true or false, got {value!r}")
        elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            result = float(value)
        elif kind in (list, tuple) and isinstance(value, (list, tuple)):
            result = list(value)
        elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            result = value
        else:
            raise ValueError(f"expected {kind.__name__}, got {value!r}")
        if self.choices is not None and result not in self.choices:
            raise ValueError(f"expected one of {', '.join(map(str, self.choices))}, got {value!r}")
        if result is not None and not isinstance(result, bool):
            check_number(result, self.minimum, self.maximum)
        return result

    def describe_bounds(self) -> str:
        """``">= 1"``, ``"0..1"`` or ``""``, for listings."""
        if self.minimum is not None and self.maximum is not None:
            return f"{_number(self.minimum)}..{_number(self.maximum)}"
        if self.minimum is not None:
            return f">= {_number(self.minimum)}"
        return f"<= {_number(self.maximum)}" if self.maximum is not None else ""


def _number(value: float) -> str:
    # str() of a huge int is fine; format(..., "g") would overflow converting it to float.
    return str(value) if isinstance(value, int) else f"{value:g}"


def check_number(value: Any, minimum: float | None = None, maximum: float | None = None, what: str = "") -> None:
    """Raise ValueError unless ``value`` (or each number in a list of them) is finite and in bounds.

    Anything that is not a number passes: the type check is the caller's.
    """
    if isinstance(value, (list, tuple)):
        for item in value:
            check_number(item, minimum, maximum, what)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    prefix = f"{what}: " if what else ""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{prefix}expected a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{prefix}expected at least {_number(minimum)}, got {_number(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{prefix}expected at most {_number(maximum)}, got {_number(value)}")


@dataclass(frozen=True)
class _Provided:
    name: str
    description: str
    factory: Callable[..., Any]
    options: tuple[Option, ...] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"{type(self).__name__} name {self.name!r} must be lower case letters, digits, '-' or '_'"
            )
        if not isinstance(self.description, str) or not self.description.strip() or "\n" in self.description:
            raise ValueError(f"{type(self).__name__} {self.name!r} needs a one-line description")
        if not callable(self.factory):
            raise ValueError(f"{type(self).__name__} {self.name!r}: factory must be callable")
        object.__setattr__(self, "options", tuple(self.options))
        names = [o.name for o in self.options]
        if len(names) != len(set(names)):
            raise ValueError(f"{type(self).__name__} {self.name!r} declares an option twice")

    def option_defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each value coerced; unknown keys are an error."""
        from collapsebench.errors import CollapsebenchError, unknown_name_error

        by_name = {o.name: o for o in self.options}
        resolved = self.option_defaults()
        for key, value in given.items():
            if key not in by_name:
                raise unknown_name_error(f"option of {self.name!r}", key, by_name)
            try:
                resolved[key] = by_name[key].coerce(value)
            except ValueError as exc:
                raise CollapsebenchError(f"Bad value for option {key!r} of {self.name!r}: {exc}.") from None
        return resolved


@dataclass(frozen=True)
class Architecture(_Provided):
    """A named model family.

    ``factory(input_shape, n_classes, multihead, **options)`` returns a ``torch.nn.Module``
    that implements:

    - ``collapsebench_taps() -> list[Tap]``, always (see :mod:`collapsebench.taps`);
    - ``collapsebench_reset_head() -> None``, which re-initialises the output layer and leaves
      the tapped layers alone, when the run's stream resets heads
      (``StreamData.reset_head_each_experience``); the run checks it when it builds the model.

    With ``multihead`` true it must accept task labels (an Avalanche ``MultiTaskModule``).
    """


@dataclass(frozen=True)
class Strategy(_Provided):
    """A named continual-learning strategy, or a component of one.

    ``factory(context: StrategyContext, **options)`` returns :class:`StrategyParts`. Strategies
    compose with ``+`` (``replay+cbp``): their Avalanche training plugins are concatenated.
    """


@dataclass(frozen=True)
class Stream(_Provided):
    """A named stream of experiences.

    ``factory(context: StreamContext, **options)`` returns :class:`StreamData`.
    """

    scenarios: tuple[str, ...] = ("class",)
    #: The evaluation protocol (collapsebench.protocols) a run uses when its config sets none:
    #: a name such as ``"current"``, or ``f(resolved_options) -> name or None`` when it depends
    #: on the options (permuted MNIST with hundreds of permutations). None: ``full``.
    default_evaluation: str | Callable[[Mapping[str, Any]], str | None] | None = None
    #: ``check_data(context: StreamContext, **options)``, optional: raise CollapsebenchError when
    #: the data root lacks a file the factory reads. It must be cheap and import neither torch
    #: nor Avalanche: it runs before they load, so a missing data set is reported at once.
    check_data: Callable[..., None] | None = None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        if not self.scenarios or any(s not in SCENARIOS for s in self.scenarios):
            raise ValueError(f"Stream {self.name!r}: scenarios must be drawn from {SCENARIOS}")
        if isinstance(self.default_evaluation, str):
            from collapsebench.errors import CollapsebenchError
            from collapsebench.protocols import parse

            try:
                parse(self.default_evaluation)
            except CollapsebenchError as exc:
                raise ValueError(f"Stream {self.name!r}: default_evaluation: {exc}") from None
        elif self.default_evaluation is not None and not callable(self.default_evaluation):
            raise ValueError(f"Stream {self.name!r}: default_evaluation must be a protocol name or a function")
        if self.check_data is not None and not callable(self.check_data):
            raise ValueError(f"Stream {self.name!r}: check_data must be callable")

    @property
    def default_scenario(self) -> str:
        return self.scenarios[0]


class MissingData(Exception):
    """The runs lack what a figure needs; the message says what to run to get it."""


@dataclass(frozen=True)
class FigureSpec:
    """A figure of the report: its file stem, heading, the sentence printed under it, and how to draw it.

    ``draw(runs)`` takes the report's runs (``collapsebench.report.runs.Run``) and returns a
    matplotlib ``Figure``, or raises :class:`MissingData` when no run has what it plots.
    """

    name: str
    title: str
    caption: str
    draw: Callable[[Sequence[Any]], Any]

    def __post_init__(self):
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise ValueError(f"figure name {self.name!r} must be lower case letters, digits, '-' or '_'")
        if not self.title or not self.caption:
            raise ValueError(f"figure {self.name!r} needs a title and a caption")
        if not callable(self.draw):
            raise ValueError(f"figure {self.name!r}: draw must be callable")


@dataclass(frozen=True)
class Metric:
    """A metric an evaluator records, as ``<name>/<kind>/<layer>`` (``kind`` in ``kinds``).

    ``category`` groups its charts in TensorBoard's layout (None: ``collapse: <kind>``).
    """

    name: str
    kinds: tuple[str, ...]
    category: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or "") or not self.kinds:
            raise ValueError(f"metric {self.name!r} needs a snake_case name and at least one kind")


@dataclass(frozen=True)
class Summary:
    """A run-level value an evaluator adds to ``results.json``'s summary.

    ``higher_is_better`` makes it rankable on a leaderboard (None: reported, never ranked, such
    as a per-experience list). ``bounds`` are the values it cannot leave; seed intervals are
    truncated to them. ``recompute(run)`` gives the value again from what a submission stores
    of a run (``summary``, ``collapse`` series, ``taps``, ``accuracy_matrix``,
    ``resolved_options``) and raises ValueError saying why when it cannot; validation refuses
    a stored value that disagrees. ``agrees(stored, recomputed, run)`` replaces the default
    comparison (equal within 1e-9). ``rank_name`` is what a track's ``rank`` calls it, when
    not its own name; ``nullable``: null is a valid value (a ratio undefined for a seed).
    """

    name: str
    description: str
    higher_is_better: bool | None = None
    bounds: tuple[float, float] | None = None
    recompute: Callable[[Mapping[str, Any]], Any] | None = None
    agrees: Callable[[Any, Any, Mapping[str, Any]], bool] | None = None
    rank_name: str | None = None
    nullable: bool = False
    #: A short column header for tables ("capacity retention"); None: the name with spaces.
    label: str | None = None

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            raise ValueError(f"summary {self.name!r} must be snake_case")
        if not self.description or "\n" in self.description:
            raise ValueError(f"summary {self.name!r} needs a one-line description")
        if self.higher_is_better not in (True, False, None):
            raise ValueError(f"summary {self.name!r}: higher_is_better must be true, false or None")
        if self.bounds is not None:
            bounds = tuple(self.bounds)
            if len(bounds) != 2 or not all(isinstance(b, (int, float)) for b in bounds) or bounds[0] > bounds[1]:
                raise ValueError(f"summary {self.name!r}: bounds must be (low, high) with low <= high")
            object.__setattr__(self, "bounds", (float(bounds[0]), float(bounds[1])))
        for attr in ("recompute", "agrees"):
            if getattr(self, attr) is not None and not callable(getattr(self, attr)):
                raise ValueError(f"summary {self.name!r}: {attr} must be callable")

    @property
    def ranked_as(self) -> str:
        return self.rank_name or self.name

    @property
    def header(self) -> str:
        return self.label or self.ranked_as.replace("_", " ")


@dataclass(frozen=True)
class Evaluator(_Provided):
    """A named measurement.

    ``factory(context: EvaluatorContext, **options)`` returns a list of Avalanche metrics
    (``PluginMetric``) that emit values named ``<metric>/<kind>/<layer>``.

    It declares what it produces, so that the report, TensorBoard's layout, leaderboard
    validation and ranking handle it without host changes: ``metrics`` (names and kinds),
    ``summaries`` (:class:`Summary`: direction, bounds, how to recompute) and ``figures``
    (:class:`FigureSpec`, drawn on the report page and in TensorBoard).
    """

    metrics: tuple[Metric, ...] = ()
    summaries: tuple[Summary, ...] = ()
    figures: tuple[FigureSpec, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        for attr, kind in (("metrics", Metric), ("summaries", Summary), ("figures", FigureSpec)):
            items = tuple(getattr(self, attr))
            if not all(isinstance(item, kind) for item in items):
                raise ValueError(f"Evaluator {self.name!r}: {attr} must be collapsebench.{kind.__name__} records")
            names = [item.name for item in items]
            if len(names) != len(set(names)):
                raise ValueError(f"Evaluator {self.name!r} declares one of its {attr} twice")
            object.__setattr__(self, attr, items)


@dataclass(frozen=True)
class Logger(_Provided):
    """A named experiment tracker (TensorBoard, W&B, a CSV file, ...).

    ``factory(context: LoggerContext, **options)`` returns one Avalanche logger (a
    ``BaseLogger``) that receives every metric value of the run. A ``close()`` method, if it has
    one, is called once the run's result is written, so buffered values reach their store.
    """

    #: What it writes into the run directory (names or glob patterns relative to it): a new run
    #: refuses a directory holding them unless given --overwrite, which removes them first, so
    #: two runs' logs never mix.
    outputs: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "outputs", tuple(self.outputs))
        for pattern in self.outputs:
            if not isinstance(pattern, str) or not pattern or pattern.startswith(("/", "\\")) or ".." in pattern.split("/"):
                raise ValueError(f"Logger {self.name!r}: outputs must be patterns inside the run directory, got {pattern!r}")


@dataclass(frozen=True)
class Track:
    """A benchmark protocol read from a TOML file: a fixed stream, model, budget and seeds."""

    name: str
    path: Path
    description: str
    config: Mapping[str, Any]
    seeds: tuple[int, ...]
    expected_minutes: float | None = None
    #: the summary metrics its board ranks on (None: the leaderboard's default pair)
    rank: tuple[str, ...] | None = None


# --- what factories receive and return -------------------------------------------------


@dataclass
class StreamContext:
    """What a stream factory needs besides its own options."""

    seed: int
    scenario: str
    data_root: Path
    download: bool = False
    #: ``build_stream(name, context, options) -> StreamData`` builds another registered stream
    #: (a wrapper such as random-labels builds its base through it).
    build_stream: Callable[..., Any] | None = None
    #: ``check_stream(name, context, options)``, given to ``check_data`` before anything heavy is
    #: imported: checks another registered stream's options (names, types, bounds) and data
    #: without building it (a wrapper checks its base through it).
    check_stream: Callable[..., Any] | None = None


@dataclass
class StreamData:
    """A built stream: the Avalanche benchmark plus what the model and evaluators need."""

    benchmark: Any
    input_shape: tuple[int, ...]
    n_classes: int
    scenario: str
    #: Identifies the exact data (file hashes, sizes, subset): results on a sample never
    #: mix with results on the full data set.
    fingerprint: str
    #: Continual ImageNet resets the output layer at the start of each task.
    reset_head_each_experience: bool = False
    #: Every sample is a fixed tensor (no random augmentation): the run may gather each
    #: experience into tensors once and slice minibatches from them (collapsebench.fastdata).
    fixed_samples: bool = False
    description: str = ""


@dataclass
class StrategyContext:
    """What a strategy factory needs besides its own options."""

    model: Any
    config: Any
    stream: StreamData


@dataclass
class StrategyParts:
    """What a strategy contributes to the run's Avalanche ``SupervisedTemplate``."""

    #: Avalanche training plugins (``SupervisedPlugin``) appended to the strategy.
    plugins: Sequence[Any] = field(default_factory=list)
    #: An Avalanche template class to use instead of ``SupervisedTemplate``; at most one part
    #: of a composition may set it.
    template: type | None = None
    #: Extra keyword arguments for the template's constructor.
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EvaluatorContext:
    """What an evaluator factory needs besides its own options."""

    config: Any
    stream: StreamData
    probe: Any  # collapsebench.probe.ProbeSet
    #: Builds a fresh model of the run's architecture (for plasticity's from-scratch baseline).
    architecture_factory: Callable[[], Any]
    recorder: Any = None  # collapsebench.evaluation.Recorder
    #: ``make_learner(model, evaluator)``: an Avalanche template with the run's budget and data
    #: path, for an evaluator that trains learners of its own (the run builds it; no runner import).
    make_learner: Callable[..., Any] | None = None
    #: The run's clock: ``with timing.uncounted():`` keeps data gathered inside out of the run's
    #: data-preparation time (an evaluator's own training is evaluator time already).
    timing: Any = None


@dataclass
class LoggerContext:
    """What a logger factory needs: the run's config and the directory it writes."""

    config: Any
    run_dir: Path
    #: True when the run continues from a checkpoint: a logger should append, not start over.
    resume: bool = False

    @property
    def tensorboard_dir(self) -> Path:
        """Where a TensorBoard logger writes event files: ``<run_dir>/<run name>`` (so TensorBoard,
        pointed at the run directory or above, names the run instead of calling it "."), or where
        the run's event files already are when it resumes (collapsebench.eventfiles)."""
        from collapsebench import eventfiles

        return eventfiles.log_dir(self.run_dir, eventfiles.run_name(self.config.to_dict(), Path(self.run_dir).name))
