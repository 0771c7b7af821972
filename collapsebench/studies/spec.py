"""Reading and checking study files.

A study file has ``[study]`` (description, paper, time estimates), ``[grid]`` (streams,
models, strategies, seeds), ``[run]`` (options every run shares), optional per-component
tables ``[models.NAME]`` / ``[streams.NAME]`` (their options), ``[[figure]]`` and ``[[claim]]``
entries, and a ``[quick]`` table that overrides any of grid, run, models and streams for the
reduced version. Everything is checked when the file is read, so a typo fails before any run.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError, unknown_name_error
from collapsebench.records import NAME_PATTERN

STUDY_KEYS = ("description", "paper", "expected_minutes", "expected_minutes_quick", "quick_leaves_out", "not_covered")
GRID_KEYS = ("streams", "models", "strategies", "seeds", "stream_axes", "model_axes")
#: grid key -> (the grid's list of names it varies, the per-name options table it varies)
AXES = {"stream_axes": ("streams", "streams"), "model_axes": ("models", "models")}
SECTIONS = ("study", "grid", "run", "models", "streams", "figure", "claim", "quick")
CLAIM_KEYS = ("name", "text", "statistic", "direction", "threshold", "require", "params")
DIRECTIONS = (">", "<")
REQUIRES = ("interval", "estimate")
#: the grid axes ``study run --only`` can cut
ONLY_AXES = ("streams", "models", "strategies", "seeds")


@dataclass(frozen=True)
class Claim:
    """A check over a study's results that can fail: ``statistic`` compared with ``threshold``.

    ``require = "interval"`` passes only when the whole interval lies on the claimed side;
    ``"estimate"`` when the point estimate does.
    """

    name: str
    text: str
    statistic: str
    direction: str
    threshold: float
    require: str = "interval"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Grid:
    """One version (full or quick) of a study's runs."""

    streams: tuple[str, ...]
    models: tuple[str, ...]
    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    run: dict[str, Any]
    model_options: dict[str, dict[str, Any]]
    stream_options: dict[str, dict[str, Any]]
    #: name -> option -> the values a study runs it at (every combination: a grid of options)
    stream_axes: dict[str, dict[str, list]] = field(default_factory=dict)
    model_axes: dict[str, dict[str, list]] = field(default_factory=dict)

    def variants(self, kind: str, name: str) -> list[dict[str, Any]]:
        """The option settings a stream (``kind="streams"``) or model (``"models"``) runs at: one
        per combination of its axes' values, ``[{}]`` when it has none."""
        axes = (self.stream_axes if kind == "streams" else self.model_axes).get(name, {})
        return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]

    def restricted(self, only: dict[str, list[str]]) -> "Grid":
        """The grid cut to the named values of some of its axes (``{"streams": ["split-mnist"]}``),
        for the largest part of a study that a machine can run: data a machine lacks, or CPU hours
        it does not have. Each value must be one the grid runs."""
        changes = {}
        for axis, values in only.items():
            if axis not in ONLY_AXES:
                raise unknown_name_error("grid axis", axis, ONLY_AXES, hint="Give --only AXIS=VALUE[,VALUE...].")
            present = getattr(self, axis)
            if axis == "seeds":
                try:
                    values = [int(v) for v in values]
                except ValueError:
                    raise CollapsebenchError(f"--only seeds takes integers, not {','.join(values)!r}.") from None
            for value in values:
                if value not in present:
                    if axis == "seeds":
                        raise CollapsebenchError(f"--only seeds={value}: the grid runs seeds "
                                                 f"{', '.join(map(str, present))}.")
                    raise unknown_name_error(axis[:-1], value, present, hint="--only keeps part of the study's grid.")
            # The grid's own order, so that run order and run directories do not depend on the flag.
            changes[axis] = tuple(v for v in present if v in values)
        return dataclasses.replace(self, **changes)

    @property
    def n_runs(self) -> int:
        streams = sum(len(self.variants("streams", s)) for s in self.streams)
        models = sum(len(self.variants("models", m)) for m in self.models)
        return streams * models * len(self.strategies) * len(self.seeds)


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    meta: dict[str, Any]
    full: Grid
    quick: Grid
    figures: tuple[str, ...]
    claims: tuple[Claim, ...]

    @property
    def description(self) -> str:
        return str(self.meta.get("description", ""))

    def grid(self, quick: bool, only: dict[str, list[str]] | None = None) -> Grid:
        grid = self.quick if quick else self.full
        return grid.restricted(only) if only else grid


def parse_only(entries: list[str] | None) -> dict[str, list[str]]:
    """``["streams=split-mnist", "seeds=0,1"]`` as ``{"streams": ["split-mnist"], "seeds": ["0", "1"]}``."""
    only: dict[str, list[str]] = {}
    for entry in entries or []:
        axis, sep, values = entry.partition("=")
        names = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not axis.strip() or not names:
            raise CollapsebenchError(f"--only {entry!r}: give AXIS=VALUE[,VALUE...], AXIS one of {', '.join(ONLY_AXES)}.")
        only.setdefault(axis.strip(), [])
        only[axis.strip()] += [n for n in names if n not in only[axis.strip()]]
    return only


def _merge(base: dict, over: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _grid(data: dict, problems: list[str], where: str) -> Grid | None:
    grid = data.get("grid", {})
    problems += [f"unknown key {where}grid.{k}" for k in grid if k not in GRID_KEYS]
    for key in ("streams", "models", "strategies"):
        value = grid.get(key)
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            problems.append(f"{where}grid.{key} must be a non-empty list of names")
    seeds = grid.get("seeds")
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                      for s in seeds)):
        problems.append(f"{where}grid.seeds must be a non-empty list of non-negative integers")
    run = data.get("run", {})
    for key in ("stream", "model", "strategy", "seed", "out", "track"):
        if key in run:
            problems.append(f"{where}run.{key} is set by the grid, not by [run]")
    tables = {}
    for kind in ("models", "streams"):
        table = data.get(kind, {})
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            problems.append(f"[{where}{kind}] must hold one table of options per name")
            table = {}
        tables[kind] = table
    axes = {key: _axes(grid, key, tables, problems, where) for key in AXES}
    if any(p.startswith(where) or p.startswith(f"[{where}") for p in problems):
        return None
    return Grid(tuple(grid["streams"]), tuple(grid["models"]), tuple(grid["strategies"]), tuple(grid["seeds"]),
                dict(run), tables["models"], tables["streams"], axes["stream_axes"], axes["model_axes"])


def _axes(grid: dict, key: str, tables: dict, problems: list[str], where: str) -> dict[str, dict[str, list]]:
    """``[grid.stream_axes.NAME]`` / ``[grid.model_axes.NAME]``: option -> list of values."""
    names_key, options_key = AXES[key]
    table = grid.get(key, {})
    if not isinstance(table, dict):
        problems.append(f"{where}grid.{key} must hold one table per {names_key[:-1]}")
        return {}
    axes = {}
    for name, options in table.items():
        if name not in (grid.get(names_key) or []):
            problems.append(f"{where}grid.{key}.{name} varies a {names_key[:-1]} the grid does not run "
                            f"(grid.{names_key} is {grid.get(names_key)})")
            continue
        if not isinstance(options, dict) or not options:
            problems.append(f"{where}grid.{key}.{name} must be a table of option = [values]")
            continue
        for option, values in options.items():
            if not isinstance(values, list) or not values:
                problems.append(f"{where}grid.{key}.{name}.{option} must be a non-empty list of values")
            elif any(values.count(v) > 1 for v in values):
                problems.append(f"{where}grid.{key}.{name}.{option} lists a value twice")
            if option in tables[options_key].get(name, {}):
                problems.append(f"{where}{options_key}.{name}.{option} is also a grid axis; set it in one place")
        axes[name] = dict(options)
    return axes


def _claims(entries: Any, problems: list[str]) -> tuple[Claim, ...]:
    from collapsebench.studies.checks import STATISTICS  # plain Python

    if not isinstance(entries, list) or not entries:
        problems.append("a study needs at least one [[claim]]")
        return ()
    claims = []
    for k, entry in enumerate(entries):
        where = f"claim {entry.get('name', k) if isinstance(entry, dict) else k}"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a table")
            continue
        problems += [f"{where}: unknown key {key}" for key in entry if key not in CLAIM_KEYS]
        missing = [key for key in ("name", "text", "statistic", "direction", "threshold") if key not in entry]
        problems += [f"{where}: {key} is required" for key in missing]
        if missing:
            continue
        if entry["statistic"] not in STATISTICS:
            problems.append(f"{where}: unknown statistic {entry['statistic']!r} (known: {', '.join(sorted(STATISTICS))})")
        if entry["direction"] not in DIRECTIONS:
            problems.append(f"{where}: direction must be '>' or '<'")
        if isinstance(entry["threshold"], bool) or not isinstance(entry["threshold"], (int, float)):
            problems.append(f"{where}: threshold must be a number")
        if entry.get("require", "interval") not in REQUIRES:
            problems.append(f"{where}: require must be 'interval' or 'estimate'")
        claims.append(Claim(entry["name"], entry["text"], entry["statistic"], entry["direction"],
                            float(entry["threshold"]) if isinstance(entry["threshold"], (int, float)) else 0.0,
                            entry.get("require", "interval"), dict(entry.get("params", {}))))
    names = [c.name for c in claims]
    problems += [f"two claims are named {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
    return tuple(claims)


def read_study(path: Path, text: str | None = None) -> Study:
    """The study in the file at ``path`` (or in ``text``, as a study directory stores it)."""
    from collapsebench.studies.figures import STUDY_FIGURES  # no matplotlib at import

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text() if text is None else text)
    except tomllib.TOMLDecodeError as exc:
        raise CollapsebenchError(f"Study file {str(path)!r} is not valid TOML: {exc}.") from None
    name = path.stem
    problems = [f"unknown section [{k}]" for k in data if k not in SECTIONS]
    if not NAME_PATTERN.match(name):
        problems.append("the file name must be lower case letters, digits, '-' or '_'")
    meta = data.get("study", {})
    problems += [f"unknown key study.{k}" for k in meta if k not in STUDY_KEYS]
    full = _grid(data, problems, "")
    quick_over = data.get("quick", {})
    problems += [f"unknown key quick.{k}" for k in quick_over if k not in ("grid", "run", "models", "streams")]
    quick = _grid(_merge({k: data.get(k, {}) for k in ("grid", "run", "models", "streams")}, quick_over),
                  problems, "quick.") if full else None
    figures = []
    for entry in data.get("figure", []):
        figure = entry.get("name") if isinstance(entry, dict) else None
        if figure not in STUDY_FIGURES:
            problems.append(f"unknown figure {figure!r} (known: {', '.join(sorted(STUDY_FIGURES))}, "
                            "or report:NAME for a figure of `collapsebench report`)")
        else:
            figures.append(figure)
    claims = _claims(data.get("claim"), problems)
    if problems:
        raise CollapsebenchError(f"Study file {str(path)!r} is invalid: " + "; ".join(problems) + ".")
    return Study(name, path, dict(meta), full, quick, tuple(figures), claims)


def load_studies(manager) -> dict[str, Study]:
    """Every study the loaded collapsebench plugins provide, by name."""
    from collapsebench.registry import Registry

    Registry(manager)  # publishes the loaded evaluators' declared figures, which report:NAME may name
    studies: dict[str, Study] = {}
    for _plugin, directories in manager.call_each("collapsebench_study_dirs"):
        for directory in directories or []:
            for path in sorted(Path(directory).glob("*.toml")):
                study = read_study(path)
                if study.name in studies:
                    raise CollapsebenchError(
                        f"Two study files are named {study.name!r}: {studies[study.name].path} and {path}.")
                studies[study.name] = study
    return studies


def get_study(manager, name: str) -> Study:
    studies = load_studies(manager)
    if name not in studies:
        raise unknown_name_error("study", name, studies, hint="`collapsebench study list` describes them.")
    return studies[name]
