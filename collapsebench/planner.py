"""The run planner: every command that starts runs gets its configs, and their run directories, here.

``run``, ``run --track``, ``run --resume``, ``collapsebench.run``, ``sweep``, ``study run`` and
``leaderboard verify`` differ only in where a run's settings come from. Each describes that as
:class:`Sources`; the planner merges them in one order, places the ``--KIND-option``
assignments, checks every name and option against the loaded collapsebench plugins and says
where the run lives. So a sweep's cell is the run ``collapsebench run`` makes from the same
flags, and a verify re-run is the submitted run (tests/test_planner.py).

Order, lowest first: RunConfig's defaults, a track's protocol, a file (a TOML file, the mapping
given to ``collapsebench.run``, a recorded config), the flags, a grid cell, then the track's
name, the seed and the run directory; the option assignments go into the merged config last.

Plain Python: nothing here imports torch or Avalanche, so a bad config costs a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.config import (
    RunConfig,
    assign_component_option,
    build_config,
    check_run_dir,
    component_owners,
    identity_of,
    resolve_component_options,
    seed_dir,
    track_run_dir,
)
from collapsebench.errors import CollapsebenchError

OPTION_KINDS = ("stream", "model", "strategy", "evaluator")


@dataclass(frozen=True)
class Sources:
    """Where one run's settings come from; each later layer wins over the ones before."""

    #: A benchmark track (collapsebench.records.Track): its protocol is the lowest layer, and no
    #: other layer may change it.
    track: Any = None
    #: A TOML file's keys (already checked), collapsebench.run's mapping, or a recorded config.
    file: Mapping[str, Any] = field(default_factory=dict)
    #: RunConfig fields set on the command line (``plugins`` among them).
    flags: Mapping[str, Any] = field(default_factory=dict)
    #: A sweep's or a study's grid cell: strategy, stream, model and their options.
    cell: Mapping[str, Any] = field(default_factory=dict)
    #: ``(kind, "[NAME.]KEY", value)`` from ``--KIND-option``: stream and model keys as given, a
    #: strategy or evaluator key to component NAME, or to the one component declaring KEY.
    options: Sequence[tuple[str, str, Any]] = ()

    @property
    def layers(self) -> list[Mapping[str, Any]]:
        return [self.file, self.flags, self.cell]

    def given(self, key: str) -> bool:
        """Whether a layer above the defaults and the track sets ``key``."""
        return any(key in layer for layer in self.layers)

    def setting(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` in the highest layer that sets it."""
        for layer in reversed(self.layers):
            if key in layer:
                return layer[key]
        return default


@dataclass(frozen=True)
class PlannedRun:
    """One fully merged, checked run: its config and every component's resolved options."""

    config: RunConfig
    resolved_options: dict[str, dict[str, dict[str, Any]]]

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir()

    @property
    def record(self) -> dict[str, Any]:
        """The config as results.json records it (without the loaded plugins' versions)."""
        return {**self.config.to_dict(), "resolved_options": self.resolved_options}

    @property
    def identity(self) -> dict[str, Any]:
        """What a result must have recorded to count as this run (config.identity_of)."""
        return identity_of(self.record)


def merged_config(sources: Sources, *, seed: int | None = None, out: str | Path | None = None) -> RunConfig:
    """The layers of ``sources`` merged and checked, before any option assignment (no registry needed)."""
    layers = list(sources.layers)
    if sources.track is not None:
        from collapsebench.tracks import track_layer

        protocol = track_layer(sources.track, {k: v for layer in layers for k, v in layer.items()})
        layers = [protocol, *layers, {"track": sources.track.name}]
    last: dict[str, Any] = {}
    if seed is not None:
        last["seed"] = seed
    if out is not None:
        last["out"] = str(out)
    return build_config(*layers, last)


def plan(sources: Sources, registry, *, seed: int | None = None, out: str | Path | None = None) -> PlannedRun:
    """One run: the merged config, its option assignments placed, every name and option checked."""
    config = merged_config(sources, seed=seed, out=out)
    for kind in OPTION_KINDS:
        for key, value in (a[1:] for a in sources.options if a[0] == kind):
            if kind in ("stream", "model"):
                getattr(config, f"{kind}_options")[key] = value
            else:
                names = config.strategy_components if kind == "strategy" else config.evaluators
                assign_component_option(getattr(config, f"{kind}_options"), names, registry, kind, key, value)
    if sources.track is not None and any(kind != "strategy" for kind, _, _ in sources.options):
        raise CollapsebenchError(f"Track {sources.track.name!r} fixes the stream, model and evaluator options.")
    # Bad names and options fail here, before Avalanche loads.
    return PlannedRun(config, resolve_component_options(config, registry))


def seeds_of(sources: Sources) -> list[int]:
    """The seeds a run asks for: the one it sets, else every seed of its track, else the default."""
    if sources.given("seed"):
        return [sources.setting("seed")]
    return list(sources.track.seeds) if sources.track is not None else [RunConfig().seed]


def plan_runs(sources: Sources, registry) -> list[PlannedRun]:
    """``collapsebench run`` (and ``collapsebench.run``): one run per seed of :func:`seeds_of`.

    A track's seeds, when there are several, go to ``OUT/seedN`` under a given ``out``, else to
    ``runs/TRACK/STRATEGY/seedN`` (RunConfig.run_dir), as a sweep places them under ``runs``.
    """
    seeds = seeds_of(sources)
    planned = []
    for seed in seeds:
        out = seed_dir(sources.setting("out"), seed) if len(seeds) > 1 and sources.given("out") else None
        planned.append(plan(sources, registry, seed=seed, out=out))
    return planned


def resume_sources(run_dir: str | Path, recorded: Mapping[str, Any]) -> Sources:
    """``run --resume RUN_DIR``: the config the interrupted run recorded, in its own directory."""
    return Sources(file=recorded, flags={"out": str(run_dir)})


def plan_rerun(recorded: Mapping[str, Any], registry, *, out: str | Path, plugins: Sequence[str],
               data_root: str | None = None, device: str | None = None) -> PlannedRun:
    """``leaderboard verify``: a submitted run's recorded config (its local keys left out by the
    caller), written to ``out``, with the verifier's plugins and, if given, data root and device."""
    flags: dict[str, Any] = {"out": str(out), "plugins": list(plugins)}
    if data_root:
        flags["data_root"] = data_root
    if device:
        flags["device"] = device
    return plan(Sources(file=recorded, flags=flags), registry)


def portable(free: Mapping[str, Any]) -> dict[str, Any]:
    """Settings for runs that may execute elsewhere: the data root made absolute, so that a worker
    in another working directory (a Ray node) reads the same data."""
    free = dict(free)
    free["data_root"] = str(Path(free.get("data_root") or RunConfig().data_root).expanduser().resolve())
    return free


def plan_sweep(registry, track, strategies: Sequence[str], seeds: Sequence[int], out: str | Path,
               plugins: Sequence[str], free: Mapping[str, Any] | None = None,
               strategy_options: Sequence[tuple[str, Any]] = ()) -> list[PlannedRun]:
    """``collapsebench sweep``: one run per strategy and seed of a track, strategy-major, in
    ``OUT/TRACK/STRATEGY/seedN``. ``free`` holds what a track leaves to its user (device,
    data_root, download). Each ``(NAME.KEY | KEY, value)`` applies to the strategies that have
    component NAME, a bare KEY to those with exactly one component declaring it; one that
    applies to none of them is an error."""
    free = portable(free or {})
    used = {key: False for key, _ in strategy_options}
    planned = []
    for strategy in strategies:
        cell = {**free, "strategy": strategy, "plugins": list(plugins)}
        options = []
        for key, qualified, value in _applicable(strategy, registry, strategy_options):
            options.append(("strategy", qualified, value))
            used[key] = True
        for seed in seeds:
            where = track_run_dir(out, track.name, strategy, seed).resolve()
            planned.append(plan(Sources(track=track, cell=cell, options=options), registry, seed=seed, out=where))
    unused = [key for key, applied in used.items() if not applied]
    if unused:
        raise CollapsebenchError(
            f"--strategy-option {', '.join(unused)} applies to none of the strategies {', '.join(strategies)}."
        )
    return planned


def _applicable(strategy: str, registry, assignments) -> list[tuple[str, str, Any]]:
    """``(key, NAME.KEY, value)`` for each assignment that applies to ``strategy``'s components."""
    components = [part.strip() for part in strategy.split("+")]
    applicable = []
    for key, value in assignments:
        if "." in key:
            if key.split(".", 1)[0] in components:
                applicable.append((key, key, value))
            continue
        owners = component_owners(components, registry, "strategy", key)
        if len(owners) == 1:  # else it belongs to other strategies of the sweep (or is misspelt: see `used`)
            applicable.append((key, f"{owners[0]}.{key}", value))
    return applicable


def plan_study(registry, grid, out: str | Path, plugins: Sequence[str],
               free: Mapping[str, Any] | None = None) -> list[PlannedRun]:
    """``collapsebench study run``: one run per stream x model x strategy x seed of a study's grid
    (collapsebench.studies.spec.Grid), and per combination of the values of its option axes, in
    ``OUT/STREAM/MODEL/STRATEGY/seedN`` (STREAM and MODEL as :func:`variant_name` writes them);
    ``grid.run`` is the study's file layer."""
    free = portable(free or {})
    planned = []
    for stream in grid.streams:
        for stream_axes in grid.variants("streams", stream):
            for model in grid.models:
                for model_axes in grid.variants("models", model):
                    cell: dict[str, Any] = {"stream": stream, "model": model}
                    if stream in grid.stream_options or stream_axes:
                        cell["stream_options"] = {**grid.stream_options.get(stream, {}), **stream_axes}
                    if model in grid.model_options or model_axes:
                        cell["model_options"] = {**grid.model_options.get(model, {}), **model_axes}
                    parent = Path(out) / variant_name(stream, stream_axes) / variant_name(model, model_axes)
                    for strategy in grid.strategies:
                        sources = Sources(file=grid.run,
                                          cell={**cell, **free, "strategy": strategy, "plugins": list(plugins)})
                        for seed in grid.seeds:
                            where = seed_dir(parent / strategy, seed).resolve()
                            planned.append(plan(sources, registry, seed=seed, out=where))
    return planned


def variant_name(name: str, options: Mapping[str, Any]) -> str:
    """``name`` followed by the option values a study's grid axis set: ``task-similarity@similarity=0.5``."""
    import json

    def text(value):
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    return name + ("@" + ",".join(f"{key}={text(value)}" for key, value in options.items()) if options else "")


def check_new_run_dir(run_dir, overwrite: bool, registry=None) -> None:
    """A run directory that can be written and holds no earlier run (unless ``overwrite``), for
    ``run``; a sweep decides from what a directory holds whether to skip, resume or run it."""
    from collapsebench.checkpoint import CHECKPOINT_FILE
    from collapsebench.results import RESULTS_FILE, read_status

    check_run_dir(run_dir)
    if overwrite:
        return
    if (run_dir / CHECKPOINT_FILE).exists():
        raise CollapsebenchError(
            f"{run_dir} holds an interrupted run: continue it with `collapsebench run --resume {run_dir}`, "
            "or pass --overwrite to start it over."
        )
    if (run_dir / RESULTS_FILE).exists():
        status = read_status(run_dir / RESULTS_FILE) or "unreadable"
        raise CollapsebenchError(
            f"{run_dir} already holds a run (results.json, status {status}); pass --overwrite to replace it, "
            "or choose another --out."
        )
    left = registry.logger_outputs(run_dir) if registry is not None else []
    if left:
        shown = ", ".join(str(p.relative_to(run_dir)) for p in left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
        raise CollapsebenchError(
            f"{run_dir} holds the logs of an earlier run ({shown}); a new run would mix its logs with them. "
            "Pass --overwrite to remove them first, or choose another --out."
        )
