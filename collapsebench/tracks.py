"""Benchmark tracks: TOML files that fix a protocol so that strategies can be compared.

A track fixes the stream and its options, the architecture, the training budget, the
evaluators, the evaluation protocol and the seeds, and may declare what its leaderboard ranks
on (``track.rank``; default: accuracy and capacity retention). A user running a track chooses only the strategy (and its options),
where to write, and on which device. Track files come from directories that collapsebench
plugins return from ``collapsebench_track_dirs``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from collapsebench.config import RunConfig
from collapsebench.errors import CollapsebenchError, unknown_name_error
from collapsebench.records import NAME_PATTERN, Track

#: Config keys a track fixes; a run of the track may not change them.
PROTOCOL_KEYS = (
    "stream", "scenario", "model", "evaluators", "epochs", "lr", "batch_size", "eval_batch_size",
    "optimizer", "momentum", "weight_decay", "probe_size", "stream_options", "model_options",
    "evaluator_options", "evaluation",
)
TRACK_KEYS = ("name", "description", "seeds", "expected_minutes_per_seed", "data", "rank")


def read_track(path: Path) -> Track:
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CollapsebenchError(f"Track file {str(path)!r} is not valid TOML: {exc}.") from None
    name = Path(path).stem
    meta, run = data.get("track", {}), data.get("run", {})
    problems = [f"unknown section [{k}]" for k in data if k not in ("track", "run")]
    problems += [f"unknown key track.{k}" for k in meta if k not in TRACK_KEYS]
    problems += [f"run.{k} is not a protocol key (allowed: {', '.join(PROTOCOL_KEYS)})" for k in run
                 if k not in PROTOCOL_KEYS]
    if meta.get("name", name) != name:
        problems.append(f"track.name {meta['name']!r} differs from the file name {name!r}")
    if not NAME_PATTERN.match(name):
        problems.append("the file name must be lower case letters, digits, '-' or '_'")
    seeds = meta.get("seeds")
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        problems.append("track.seeds must be a non-empty list of non-negative integers")
    for key in ("stream", "model"):
        if key not in run:
            problems.append(f"run.{key} is required")
    rank = meta.get("rank")
    if rank is not None:
        from collapsebench.leaderboard.ranking import check_rank  # plain Python

        problems += check_rank(rank)
    if problems:
        raise CollapsebenchError(f"Track file {str(path)!r} is invalid: " + "; ".join(problems) + ".")
    return Track(
        name=name,
        path=Path(path),
        description=meta.get("description", ""),
        config=run,
        seeds=tuple(seeds),
        expected_minutes=meta.get("expected_minutes_per_seed"),
        rank=tuple(rank) if rank is not None else None,
    )


def load_tracks(manager) -> dict[str, Track]:
    """Every track the loaded collapsebench plugins provide, by name."""
    tracks: dict[str, Track] = {}
    for _plugin, directories in manager.call_each("collapsebench_track_dirs"):
        for directory in directories or []:
            for path in sorted(Path(directory).glob("*.toml")):
                track = read_track(path)
                if track.name in tracks:
                    raise CollapsebenchError(
                        f"Two track files are named {track.name!r}: {tracks[track.name].path} and {path}."
                    )
                tracks[track.name] = track
    return tracks


def tracks_by_plugin(manager) -> dict[str, list[str]]:
    """plugin name -> names of the tracks its ``collapsebench_track_dirs`` provides (for ``plugins``)."""
    provided: dict[str, list[str]] = {}
    for plugin, directories in manager.call_each("collapsebench_track_dirs"):
        for directory in directories or []:
            names = [read_track(path).name for path in sorted(Path(directory).glob("*.toml"))]
            provided.setdefault(plugin, []).extend(names)
    return {plugin: sorted(names) for plugin, names in provided.items()}


def get_track(manager, name: str) -> Track:
    tracks = load_tracks(manager)
    if name not in tracks:
        raise unknown_name_error("track", name, tracks, hint="`collapsebench list tracks` describes them.")
    return tracks[name]


def track_layer(track: Track, flags: dict[str, Any]) -> dict[str, Any]:
    """The track's protocol as a config layer; a flag that would change the protocol is an error."""
    defaults = RunConfig()
    changed = [k for k in flags if k in PROTOCOL_KEYS and flags[k] != track.config.get(k, getattr(defaults, k, None))]
    if changed:
        raise CollapsebenchError(
            f"Track {track.name!r} fixes {', '.join(changed)}; leave them out, or run without --track "
            "to change the protocol."
        )
    return dict(track.config)
