"""Building a submission from run directories, and writing it to the board.

A submission is one strategy (one configuration of it) on one track: one run per seed of the
track. It carries what the board ranks (accuracy matrices, summaries, collapse series) and what
makes it checkable (the resolved configs, the collapsebench plugins with their versions, the
strategy's source hash, the environment, the data fingerprint) plus a hash over all of it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError
from collapsebench.leaderboard import FORMAT, FORMAT_VERSION, hashing, submissions_dir
from collapsebench.leaderboard.validate import expected_protocol, is_sample, validate_submission
from collapsebench.results import RESULTS_FILE, atomic_write_bytes, read_results

#: Run-config keys that describe the submitter's machine, not the experiment.
LOCAL_CONFIG_KEYS = ("out", "data_root", "plugins", "resolved_options", "download")
#: Metric phases kept: the value after each experience, and at the start of the next.
KEPT_PHASES = ("end", "start")
#: results.json keys of runs with an evaluation protocol, carried into the submission when present.
SPARSE_KEYS = ("evaluation", "online_accuracy", "summary_unavailable", "summary_sources")
LOCK_FILE = ".lock"  # leaderboard/.gitignore keeps it out of commits


def slug(name: str) -> str:
    """A file name from a submission's display name."""
    text = re.sub(r"[^\w.-]+", "-", name.lower()).strip("-.")  # \w: letters of any script
    if not text:
        raise CollapsebenchError(f"The submission name {name!r} has no letters or digits to name its file by.")
    return text[:80]


def plugin_specs(plugin_records: Sequence[dict[str, Any]], skip_missing: bool = False) -> list[str]:
    """``--plugin`` specs that load the collapsebench plugins a run recorded (entry points load anyway).

    A recorded plugin file that is gone is an error, or skipped with ``skip_missing``.
    """
    specs = []
    for record in plugin_records:
        if not isinstance(record, dict):
            continue
        if record.get("source") == "module":
            specs.append(record["location"])
        elif record.get("source") == "file":
            if not Path(record["location"]).is_file():
                if skip_missing:
                    continue
                raise CollapsebenchError(
                    f"The run used the collapsebench plugin file {record['location']!r}, which is not there any more; "
                    "pass its new path with --plugin."
                )
            specs.append(record["location"])
    return specs


def load_manager(plugin_records: Sequence[dict[str, Any]], extra: Sequence[str] = (), skip_missing: bool = False):
    """A plugin manager and registry with the recorded collapsebench plugins plus ``extra`` specs."""
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    extra_names = {Path(spec).stem for spec in extra}
    # --plugin replaces a recorded file of the same name that moved
    recorded = [r for r in plugin_records if isinstance(r, dict) and r.get("name") not in extra_names]
    manager = build_manager([*plugin_specs(recorded, skip_missing), *extra])
    return manager, Registry(manager)


def collapse_series(records: Sequence[dict[str, Any]], n_experiences: int) -> dict[str, list[float | None]]:
    """``<metric>/<kind>/<layer>`` -> the value at each experience, from a run's metric records.

    Values measured every N iterations are left out (they belong to TensorBoard); a value at the
    start of an experience is kept under the kind ``<kind>_start``, as TensorBoard tags it.
    """
    series: dict[str, list[float | None]] = {}
    for record in records:
        if record.get("phase") not in KEPT_PHASES:
            continue
        kind = record["kind"] if record["phase"] == "end" else f"{record['kind']}_{record['phase']}"
        values = series.setdefault(f"{record['name']}/{kind}/{record['layer']}", [None] * n_experiences)
        if 0 <= record["experience"] < n_experiences:
            values[record["experience"]] = record["value"]
    return series


def _run_entry(results: dict[str, Any], raw: bytes) -> dict[str, Any]:
    config = results["config"]
    n_experiences = results["stream"]["n_experiences"]
    pairs = results.get("probe", {}).get("experience_index_pairs", [])
    return {
        "seed": config["seed"],
        "status": results["status"],
        "results_sha256": hashing.sha256_hex(raw),
        "config": {key: value for key, value in config.items() if key not in LOCAL_CONFIG_KEYS},
        "resolved_options": config["resolved_options"],
        "stream": {key: results["stream"][key] for key in
                   ("description", "scenario", "n_experiences", "input_shape", "n_classes", "fingerprint",
                    "classes_per_experience") if key in results["stream"]},
        "probe": {
            "size": results.get("probe", {}).get("size", len(pairs)),
            "per_experience": results.get("probe", {}).get("per_experience", []),
            "sha256": hashing.sha256_hex(hashing.canonical_json(pairs)),
        },
        "taps": results["taps"],
        **_matrix_entry(results),
        "summary": results["summary"],
        "collapse": collapse_series(results.get("metrics", []), n_experiences),
        "environment": results["environment"],
        "timing": results.get("timing", {}),
        # what the protocol measured, and the series the plasticity summaries are recomputed from
        **{key: results[key] for key in SPARSE_KEYS if results.get(key) is not None},
    }


def _matrix_entry(results: dict[str, Any]) -> dict[str, Any]:
    """The full matrix as it is; a sparse protocol's as its measured values only (cells.py)."""
    from collapsebench.leaderboard.cells import measured_rows
    from collapsebench.protocols import parse

    protocol = parse(results.get("evaluation", {}).get("protocol", "full"))
    if protocol.name == "full":
        return {"accuracy_matrix": results["accuracy_matrix"]}
    return {"accuracy_rows": measured_rows(results["accuracy_matrix"], protocol)}


def _read_run(run_dir: Path) -> tuple[dict[str, Any], bytes]:
    results = read_results(run_dir)
    raw = (Path(run_dir) / RESULTS_FILE if Path(run_dir).is_dir() else Path(run_dir)).read_bytes()
    if results.get("status") != "complete":
        raise CollapsebenchError(f"{str(run_dir)!r} holds a {results.get('status')!r} run; only complete runs can be submitted.")
    if not results.get("config", {}).get("track"):
        raise CollapsebenchError(
            f"{str(run_dir)!r} was not run on a benchmark track; run it with `collapsebench run --track TRACK`."
        )
    return results, raw


def build_submission(
    run_dirs: Sequence[str | Path],
    name: str | None = None,
    author: str | None = None,
    url: str | None = None,
    extra_plugins: Sequence[str] = (),
) -> dict[str, Any]:
    """A validated submission from the run directories of one strategy on one track."""
    from collapsebench.tracks import get_track

    if not run_dirs:
        raise CollapsebenchError("Give the run directories to submit: one per seed of the track.")
    runs = [(Path(d), *_read_run(Path(d))) for d in run_dirs]
    first = runs[0][1]
    for field in ("track", "strategy", "stream", "model"):
        values = {str(d): r["config"][field] for d, r, _ in runs}
        if len(set(values.values())) > 1:
            listing = ", ".join(f"{d}: {v}" for d, v in values.items())
            raise CollapsebenchError(f"A submission is one {field} for all its runs; these differ ({listing}).")
    seeds = [r["config"]["seed"] for _, r, _ in runs]
    if len(set(seeds)) != len(seeds):
        raise CollapsebenchError(f"Two run directories are the same seed ({seeds}); give one per seed.")

    manager, registry = load_manager(first["config"].get("plugins", []), extra_plugins)
    track = get_track(manager, first["config"]["track"])
    missing = sorted(set(track.seeds) - set(seeds))
    if missing:
        raise CollapsebenchError(
            f"Track {track.name!r} runs seeds {list(track.seeds)}; the runs given lack seeds {missing}. "
            f"`collapsebench run --track {track.name} --strategy {first['config']['strategy']}` runs them all."
        )
    spec = first["config"]["strategy"]
    components = [part.strip() for part in spec.split("+")]
    entries = sorted((_run_entry(r, raw) for _, r, raw in runs), key=lambda run: run["seed"])
    stream = entries[0]["stream"]
    submission = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name or spec,
        "author": author,
        "url": url,
        "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "track": {
            "name": track.name,
            "description": track.description,
            "seeds": list(track.seeds),
            "protocol": expected_protocol(track),
            "data": _track_data(track),
            **({"rank": list(track.rank)} if track.rank else {}),
        },
        "strategy": {
            "spec": spec,
            "components": components,
            "options": first["config"]["resolved_options"]["strategy"],
            "sources": [hashing.strategy_source(manager, registry, component) for component in components],
        },
        "data": {
            "stream": first["config"]["stream"],
            "fingerprint": stream["fingerprint"],
            "description": stream["description"],
            "sample": is_sample(stream["description"]),
        },
        "plugins": first["config"].get("plugins", []),
        "environment": first["environment"],
        "runs": entries,
    }
    submission["content_hash"] = hashing.content_hash(submission)
    validate_submission(submission, "The runs", track=track)
    return submission


def _track_data(track) -> str | None:
    """The track file's note on its data (``track.data``), which the Track record does not keep."""
    import tomllib

    try:
        return tomllib.loads(Path(track.path).read_text()).get("track", {}).get("data")
    except (OSError, tomllib.TOMLDecodeError):
        return None


def run_fingerprint(submission: dict[str, Any]) -> frozenset[str]:
    """What makes two submissions the same results, whatever their names."""
    return frozenset(run["results_sha256"] for run in submission["runs"])


def write_submission(submission: dict[str, Any], board_dir: str | Path, replace: bool = False) -> Path:
    """Write ``submission`` under ``<board>/submissions/<track>/``; return its path.

    A file lock serializes writers, so concurrent submits each see the others' files: none is
    lost, and a duplicate (the same name, or the same runs under another name) is refused
    unless ``replace``, which removes the submissions it duplicates.
    """
    from filelock import FileLock

    directory = submissions_dir(Path(board_dir), submission["track"]["name"])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{slug(submission['name'])}.json"
    with FileLock(str(directory / LOCK_FILE), timeout=60):
        duplicates = [existing for existing in sorted(directory.glob("*.json")) if existing == path or _same_runs(existing, submission)]
        if duplicates and not replace:
            listing = ", ".join(str(p) for p in duplicates)
            raise CollapsebenchError(
                f"The board already has this submission ({listing}): same name or same runs. "
                "Pass --replace to replace it, or --name to submit under another name."
            )
        text = json.dumps(submission, indent=1, allow_nan=False) + "\n"
        atomic_write_bytes(path, text.encode())
        path.chmod(0o644)  # the temporary file was private; a board is for everyone to read
        for existing in duplicates:
            if existing != path:
                existing.unlink(missing_ok=True)
    return path


def _same_runs(path: Path, submission: dict[str, Any]) -> bool:
    try:
        existing = read_submission(path)
        return run_fingerprint(existing) == run_fingerprint(submission)
    except (CollapsebenchError, KeyError, TypeError, AttributeError):
        return False  # an unreadable file is the validator's business, not a duplicate


def read_submission(path: str | Path) -> Any:
    """A submission file's JSON (any JSON within bounds: validation judges it), or a clear error."""
    from collapsebench.leaderboard.bounded import read_submission as read_bounded

    return read_bounded(path)
