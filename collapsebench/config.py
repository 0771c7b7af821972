"""A run's configuration: defaults, then a TOML file, then command-line flags.

Everything is validated here, before anything heavy is imported, so a typo costs a second,
not a 13-second Avalanche import followed by a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError, plural, unknown_name_error
from collapsebench.records import check_number

DATA_ROOT_ENV = "COLLAPSEBENCH_DATA_ROOT"


def _default_data_root() -> str:
    return os.environ.get(DATA_ROOT_ENV, "data")


@dataclass
class RunConfig:
    """Every option of one run. Field names are the TOML keys; flags use dashes."""

    #: The benchmark track this run belongs to, if any (its protocol is then fixed).
    track: str | None = None
    stream: str = "split-digits"
    model: str = "mlp"
    #: One strategy or several joined with "+" (``replay+cbp``): their parts compose.
    strategy: str = "naive"
    #: The accuracy matrix is always measured; these add collapse measurements.
    evaluators: list[str] = field(default_factory=lambda: ["weights", "activations"])
    #: Which test experiences are measured after each experience (collapsebench.protocols):
    #: full, seen, current or every:N. None: the stream's declared default, else full.
    evaluation: str | None = None
    scenario: str | None = None  # None: the stream's default
    seed: int = 0
    # split-digits has ~290 training images per experience: 5 passes of minibatches of 16
    # (about 90 updates) learn each 2-class task to >93% on every seed we tried; 3 passes
    # of 32 left some tasks at chance.
    epochs: int = 5
    lr: float = 0.01
    # Avalanche's own default minibatch is 1, far too slow; set it explicitly.
    batch_size: int = 16
    eval_batch_size: int = 512
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    device: str = "cpu"
    #: torch CPU threads. One by default: on a 2-core machine with any other load, torch's
    #: multi-threaded kernels spin and small models ran 10-40x slower (docs/performance.md).
    #: 0 keeps torch's own default; raise it for large models on a dedicated machine.
    threads: int = 1
    #: Inputs on which activations are measured, drawn once per run from the test data.
    probe_size: int = 1000
    data_root: str = field(default_factory=_default_data_root)
    download: bool = False
    out: str | None = None  # None: runs/<stream>-<model>-<strategy>-seed<seed>
    #: Checkpoint after every experience so that `run --resume` can continue an interrupted run.
    checkpoint: bool = True
    #: Checkpoint after every N-th experience: on a long stream of short experiences a checkpoint
    #: per experience is a tenth of the run (docs/performance.md); a resume repeats at most N-1.
    checkpoint_every: int = 1
    #: ...and only once at least this many seconds passed since the last checkpoint (0: no
    #: minimum). Where experiences take less time than a checkpoint is worth (a long stream of
    #: short tasks), this bounds the checkpoints' share of the run; a resume then repeats less than
    #: this much work plus one experience. Results do not depend on it (docs/protocols.md).
    checkpoint_seconds: float = 0.0
    #: Draw the report's figures into TensorBoard after every experience (about 2 s each);
    #: off by default so that no plotting runs in a training process unless asked.
    tensorboard_figures: bool = False
    #: Experiment trackers (collapsebench_loggers records) that receive every metric value.
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])
    plugins: list[str] = field(default_factory=list)
    stream_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    #: strategy component name -> options
    strategy_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: evaluator name -> options
    evaluator_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def strategy_components(self) -> list[str]:
        return [part.strip() for part in self.strategy.split("+")]

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        if self.track:
            return track_run_dir("runs", self.track, self.strategy, self.seed)
        return Path("runs") / f"{self.stream}-{self.model}-{self.strategy}-seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


# The run-directory layout, in one place: run, run --track, sweep and verify all place runs so.
def seed_dir(parent: str | Path, seed: int) -> Path:
    """``<parent>/seed<seed>``: one seed's run among several."""
    return Path(parent) / f"seed{seed}"


def track_run_dir(root: str | Path, track: str, strategy: str, seed: int) -> Path:
    """``<root>/<track>/<strategy>/seed<seed>``: a track's run, as run --track and sweep place it."""
    return seed_dir(Path(root) / track / strategy, seed)


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one RunConfig field is set on the command line (``collapsebench run --<name>``).

    The value's type comes from the field's default; a bool is a switch that sets it true. The
    help states no default: the CLI appends the field's own, so the two cannot disagree.
    """

    help: str
    metavar: str | None = None
    #: the flag when not the field's name with dashes (``--logger`` sets ``loggers``)
    name: str | None = None

    def flag(self, field: str) -> str:
        return f"--{self.name or field.replace('_', '-')}"


#: The run flags, in ``run --help`` order: field -> Flag. Fields left out are set in a TOML
#: file or by their own flags (FILE_ONLY says why); tests/test_run_flags.py checks both lists.
RUN_FLAGS: dict[str, Flag] = {
    "stream": Flag("stream name"),
    "scenario": Flag("default: the stream's own"),
    "model": Flag("architecture name"),
    "strategy": Flag("strategy name, or several joined by +"),
    "evaluators": Flag("comma-separated evaluator names"),
    "checkpoint_every": Flag("checkpoint after every N-th experience; a resume repeats at most N-1", metavar="N"),
    "checkpoint_seconds": Flag("checkpoint only once S seconds passed since the last one (0: no minimum); "
                               "bounds the checkpoints' share of a run of short experiences", metavar="S"),
    "evaluation": Flag("test experiences measured after each one: full, seen, current or every:N "
                       "(default: the stream's, else full)", metavar="PROTOCOL"),
    "seed": Flag("random seed of the run"),
    "epochs": Flag("passes over each experience"),
    "lr": Flag("learning rate"),
    "batch_size": Flag("training minibatch"),
    "optimizer": Flag("optimizer"),
    "momentum": Flag("SGD momentum"),
    "weight_decay": Flag("L2 weight decay of the optimizer"),
    "probe_size": Flag("held-out inputs for activation metrics"),
    "device": Flag("cpu, cuda, cuda:N or mps"),
    "threads": Flag("torch CPU threads (0: torch's own number)"),
    "data_root": Flag("where datasets live (default $COLLAPSEBENCH_DATA_ROOT or ./data)"),
    "download": Flag("allow downloading missing datasets"),
    "tensorboard_figures": Flag("also draw the report's figures into TensorBoard after each experience (slower)"),
    "loggers": Flag("comma-separated experiment trackers: tensorboard, csv, wandb, mlflow", metavar="NAMES",
                    name="logger"),
    "out": Flag("run directory (default runs/<stream>-<model>-<strategy>-seed<seed>)"),
}
#: RunConfig fields without a flag of the RUN_FLAGS kind, and why.
FILE_ONLY = {
    "track": "--track selects a protocol and its seeds, more than setting the field",
    "plugins": "--plugin, shared with every command",
    "eval_batch_size": "evaluation only; set it in a TOML file",
    "checkpoint": "a run always checkpoints unless a TOML file turns it off",
    "stream_options": "--stream-option KEY=VALUE",
    "model_options": "--model-option KEY=VALUE",
    "strategy_options": "--strategy-option [NAME.]KEY=VALUE",
    "evaluator_options": "--evaluator-option [NAME.]KEY=VALUE",
}


def add_run_flags(parser) -> None:
    """Add every RUN_FLAGS flag to an argparse parser; each parses to None when not given."""
    defaults = RunConfig()
    for field, spec in RUN_FLAGS.items():
        default = getattr(defaults, field)
        extra: dict[str, Any] = {"dest": field, "help": spec.help}
        if isinstance(default, bool):
            extra.update(action="store_const", const=True)
        else:
            kind = type(default) if isinstance(default, (int, float)) else str  # lists: comma-separated
            choices = tuple(c for c in CHOICES.get(field, ()) if c is not None) or None
            extra.update(type=kind, choices=choices) if choices else extra.update(type=kind, metavar=spec.metavar)
        parser.add_argument(spec.flag(field), **extra)
CHOICES = {"optimizer": ("sgd", "adam"), "scenario": (None, "class", "task", "domain")}
#: Inclusive bounds of every numeric field, declared once; every float must also be finite.
#: The maxima only refuse the absurd (a run that would never end, a seed numpy rejects).
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "seed": (0, 2**32 - 1),  # numpy's seed range
    "epochs": (1, 100_000),
    "lr": (None, None),  # positive, checked apart: no inclusive minimum says "above 0"
    "batch_size": (1, 2**24),
    "eval_batch_size": (1, 2**24),
    "momentum": (0.0, 1.0),
    "weight_decay": (0.0, 100.0),
    "threads": (0, 4096),
    "probe_size": (1, 10_000_000),
    "checkpoint_every": (1, 10_000_000),
    "checkpoint_seconds": (0.0, 1e9),
}
TABLE_KEYS = ("stream_options", "model_options", "strategy_options", "evaluator_options")
NAME_LIST_KEYS = ("evaluators", "plugins", "loggers")


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML config file's keys, each already checked (so that ``plugins`` is a list of names)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            layer = tomllib.load(handle)
    except FileNotFoundError:
        raise CollapsebenchError(f"Config file {str(path)!r} does not exist.") from None
    except IsADirectoryError:
        raise CollapsebenchError(f"Config file {str(path)!r} is a directory; give the path of a .toml file.") from None
    except UnicodeDecodeError as exc:
        raise CollapsebenchError(f"Config file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise CollapsebenchError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from None
    except OSError as exc:
        raise CollapsebenchError(f"Config file {str(path)!r} could not be read: {exc.strerror or exc}.") from None
    return check_layer(layer, f"config file {str(path)!r}")


def check_layer(layer: Any, where: str) -> dict[str, Any]:
    """One layer of settings (a TOML file, a recorded config.json) with every key and value checked."""
    if not isinstance(layer, dict):
        raise CollapsebenchError(f"The {where} must hold a table of config keys, got {type(layer).__name__}.")
    checked = {}
    for key, value in layer.items():
        if key not in FIELDS:
            raise unknown_name_error("config key", key, FIELDS, hint=f"(in the {where})")
        if key in TABLE_KEYS:
            checked[key] = _table(key, value)
            if key in ("strategy_options", "evaluator_options"):
                checked[key] = {name: _table(f"{key}.{name}", options) for name, options in checked[key].items()}
        else:
            checked[key] = _check(key, value)
    return checked


def build_config(*layers: dict[str, Any]) -> RunConfig:
    """Merge layers of settings (later wins; option tables merge key by key) into a checked config."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in FIELDS:
                raise unknown_name_error("config key", key, FIELDS)
            if key in ("stream_options", "model_options"):
                merged[key] = {**merged.get(key, {}), **_table(key, value)}
            elif key in ("strategy_options", "evaluator_options"):
                tables = merged.setdefault(key, {})
                for name, options in _table(key, value).items():
                    tables[name] = {**tables.get(name, {}), **_table(f"{key}.{name}", options)}
            else:
                merged[key] = value
    for key, value in merged.items():
        merged[key] = _check(key, value)
    return RunConfig(**merged)


def _table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CollapsebenchError(f"Config key {key!r} must be a table of options, got {value!r}.")
    return value


def _check(key: str, value: Any) -> Any:
    """Coerce one value to its field's type, or say clearly what was expected."""
    default = FIELDS[key].default if FIELDS[key].default is not dataclasses.MISSING else FIELDS[key].default_factory()
    if key in NAME_LIST_KEYS and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if key in NAME_LIST_KEYS and isinstance(value, list):
        odd = [v for v in value if not isinstance(v, str) or not v.strip()]
        if odd:
            raise CollapsebenchError(f"Config key {key!r} must be a list of names (strings), got {odd[0]!r} in {value!r}.")
    expected = type(default)
    if key == "evaluation" and value is not None:
        from collapsebench.protocols import parse

        return parse(value).name
    if key in ("scenario", "out", "track", "evaluation"):
        ok = value is None or isinstance(value, str)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise CollapsebenchError(f"Config key {key!r} must be {expected.__name__}, got {value!r}.")
    if key in CHOICES and value not in CHOICES[key]:
        raise CollapsebenchError(
            f"Config key {key!r} must be one of {', '.join(c for c in CHOICES[key] if c)}, got {value!r}."
        )
    if key in BOUNDS:
        try:
            check_number(value, *BOUNDS[key])
        except ValueError as exc:
            raise CollapsebenchError(f"Config key {key!r}: {exc}.") from None
    if key == "lr" and not value > 0:
        raise CollapsebenchError(f"Config key 'lr': expected a positive number, got {value}.")
    if key == "device" and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", value):
        raise CollapsebenchError(f"device must be cpu, cuda, cuda:N or mps, got {value!r}.")
    return value


#: Config keys that say where and how a run executes, not what it computes: moving a run's
#: output or data, or running it with other thread counts, does not change its result.
#: ``plugins`` is left out too: results.json records the loaded plugins, not the ``--plugin`` specs.
LOCAL_KEYS = ("out", "data_root", "download", "plugins", "threads", "checkpoint", "checkpoint_every", "checkpoint_seconds", "loggers")


def identity_of(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a recorded config that decides the result: every RunConfig field but the
    local ones, plus every component's resolved options (defaults filled in)."""
    import json

    from collapsebench.results import json_safe

    kept = {key: value for key, value in config.items() if key in FIELDS and key not in LOCAL_KEYS}
    kept["resolved_options"] = config.get("resolved_options")
    return json.loads(json.dumps(json_safe(kept)))  # tuples become lists, as in results.json


def identity_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two identities (``lr``, ``resolved_options.strategy.replay.mem_size``)."""
    differ = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differ += identity_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differ.append(f"{prefix}{key}")
    return differ


def check_run_dir(path: str | Path) -> None:
    """A run directory that can be created and written, checked before anything runs.

    An existing file (``/dev/full`` included), a path below a file, or a folder without write
    permission would otherwise fail after the data was read, in the middle of a write.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CollapsebenchError(f"The run directory {str(path)!r} exists and is not a folder; choose another --out.")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise CollapsebenchError(
            f"The run directory {str(path)!r} cannot be made: {str(ancestor)!r} is a file, not a folder."
        )
    if ancestor.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        where = "" if ancestor == path else f" (it would be made in {str(ancestor)!r})"
        raise CollapsebenchError(f"The run directory {str(path)!r} is not writable{where}; choose another --out.")


def load_recorded_config(run_dir: Path, name: str) -> dict[str, Any]:
    """A run directory's recorded config (config.json), checked like a TOML config file."""
    import json

    path = Path(run_dir) / name
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CollapsebenchError(
            f"{str(Path(run_dir))!r} holds no readable {name}: it is not a collapsebench run directory."
        ) from None
    return check_layer(recorded, f"recorded config {str(path)!r}")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as TOML when it parses as TOML."""
    if "=" not in text:
        raise CollapsebenchError(f"Expected KEY=VALUE, got {text!r}.")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as relu
    return key, value


def resolve_component_options(config: RunConfig, registry) -> dict[str, dict[str, dict[str, Any]]]:
    """Every component's options, defaults filled in and values checked against its record."""
    stream = registry.get("stream", config.stream)
    if config.scenario is not None and config.scenario not in stream.scenarios:
        raise CollapsebenchError(
            f"Stream {config.stream!r} supports the scenarios {', '.join(stream.scenarios)}, not {config.scenario!r}."
        )
    resolved = {
        "stream": {config.stream: stream.resolve_options(config.stream_options)},
        "model": {config.model: registry.get("architecture", config.model).resolve_options(config.model_options)},
        "strategy": {},
        "evaluator": {},
    }
    for kind, names, given in (
        ("strategy", config.strategy_components, config.strategy_options),
        ("evaluator", config.evaluators, config.evaluator_options),
    ):
        if len(set(names)) != len(names):
            raise CollapsebenchError(f"The {kind} list {names} names a component twice.")
        for name in given:
            if name not in names:
                raise CollapsebenchError(
                    f"Options were given for {kind} {name!r}, which this run does not use ({', '.join(names)})."
                )
        for name in names:
            resolved[kind][name] = registry.get(kind, name).resolve_options(given.get(name, {}))
    for name in config.loggers:
        registry.get("logger", name)  # an unknown tracker fails before anything is built
    return resolved


def component_owners(names: list[str], registry, kind: str, key: str) -> list[str]:
    """The components among ``names`` that declare the option ``key``."""
    return [n for n in names if any(o.name == key for o in registry.get(kind, n).options)]


def assign_component_option(
    tables: dict[str, dict[str, Any]], names: list[str], registry, kind: str, key: str, value: Any
) -> None:
    """Place ``name.key=value`` or a bare ``key=value`` (the one component declaring it)."""
    if "." in key:
        name, key = key.split(".", 1)
    else:
        owners = component_owners(names, registry, kind, key)
        if not owners and len(names) == 1:
            owners = names  # its option check then names the closest option
        if len(owners) != 1:
            where = "none of" if not owners else "several of"
            raise CollapsebenchError(
                f"Option {key!r} matches {where} the {plural(kind)} {', '.join(names)}; write it as NAME.{key}=VALUE."
            )
        name = owners[0]
    tables.setdefault(name, {})[key] = value
