"""Everything a submission must satisfy, each failure a message that names the field.

The schema checks the shape. The rest checks what a schema cannot: no NaN or infinity anywhere,
the content hash, that every run is the same strategy on the same track and data, that the
summaries agree with the accuracy matrices they came from, and that the protocol is the track
file's (stream, architecture, budget, evaluators, seeds).
"""

from __future__ import annotations

import math
from typing import Any

from collapsebench.errors import CollapsebenchError
from collapsebench.leaderboard import hashing
from collapsebench.leaderboard.bounded import text_problems
from collapsebench.leaderboard.schema import field_name, schema_errors

#: Recomputing a summary from the stored matrix repeats the same float operations.
SUMMARY_TOLERANCE = 1e-9
#: Summary values the board ranks on; when one run reports one, every run must.
RANKED_SUMMARY_KEYS = (
    "average_accuracy", "forgetting", "capacity_retention", "dead_units", "plasticity_mean",
    "plasticity_retention", "online_plasticity_retention", "plasticity_retention_relative",
)
#: Ratios that are null, not missing, where the first tenth of the tasks averages 0.
NULLABLE_SUMMARY_KEYS = ("plasticity_retention", "online_plasticity_retention", "plasticity_retention_relative")
#: Summaries recomputed from the accuracy matrix (and online accuracies).
ACCURACY_SUMMARY_KEYS = ("average_accuracy", "forgetting", "bwt", "new_task_accuracy", "plasticity_retention",
                         "online_plasticity_retention")
#: Those a run must report whenever its protocol measured what they need.
REQUIRED_WHEN_MEASURED = ("average_accuracy", "forgetting", "bwt")
SAMPLE_MARKER = "sample"


def summarize(matrix):
    from collapsebench.metrics.accuracy import summarize as summarize_matrix  # plain Python, no torch

    return summarize_matrix(matrix)


class SubmissionInvalid(CollapsebenchError):
    """A submission that fails validation; ``problems`` lists every failure."""

    def __init__(self, what: str, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{what} is not a valid submission ({len(problems)} problem(s)):\n{listing}")


def is_sample(stream_description: str) -> bool:
    """Streams on a sample of a data set say so in their description (docs/streams.md)."""
    return SAMPLE_MARKER in stream_description.lower()


def expected_protocol(track) -> dict[str, Any]:
    """The protocol keys a track fixes, with the run defaults it leaves to them."""
    from collapsebench.config import RunConfig
    from collapsebench.tracks import PROTOCOL_KEYS

    defaults = RunConfig()
    return {key: track.config.get(key, getattr(defaults, key, None)) for key in PROTOCOL_KEYS}


#: Protocol keys added after submissions were first made: a submission may lack one when the
#: track leaves it at the default, which is what every run did before the key existed.
LATER_PROTOCOL_KEYS = ("evaluation",)


def check_submission(submission: Any, track=None, require_track: bool = False) -> list[str]:
    """Every problem with ``submission`` (empty: valid). Never raises on malformed input.

    ``track`` is the installed track file the submission claims; without it the protocol is
    checked only for consistency, unless ``require_track``.
    """
    if not isinstance(submission, dict):
        return [f"(the submission): must be a JSON object, not {type(submission).__name__}"]
    problems = non_finite_fields(submission)
    if problems:
        return problems  # the schema and hashes cannot be judged on NaN
    problems = schema_errors(submission) or text_problems(submission)
    if problems:
        return problems
    expected_hash = hashing.content_hash(submission)
    if submission["content_hash"] != expected_hash:
        problems.append(
            f"content_hash: {submission['content_hash']} does not match the content ({expected_hash}); "
            "the file was changed after it was submitted"
        )
    problems += _consistency(submission)
    if track is not None:
        problems += _protocol(submission, track)
    elif require_track:
        problems.append(f"track.name: no installed track is named {submission['track']['name']!r}")
    return problems


def validate_submission(submission: Any, what: str = "The submission", track=None, require_track: bool = False) -> None:
    problems = check_submission(submission, track, require_track)
    if problems:
        raise SubmissionInvalid(what, problems)


def non_finite_fields(value: Any, path: tuple = ()) -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{field_name(path)}: {value} is not a finite number"]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in non_finite_fields(item, (*path, str(key)))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in non_finite_fields(item, (*path, index))]
    return []


def _consistency(submission: dict[str, Any]) -> list[str]:
    problems = []
    track, strategy, data = submission["track"], submission["strategy"], submission["data"]
    components = [part.strip() for part in strategy["spec"].split("+")]
    if strategy["components"] != components:
        problems.append(f"strategy.components: {strategy['components']} is not the parts of {strategy['spec']!r}")
    if [source["component"] for source in strategy["sources"]] != components:
        problems.append("strategy.sources: need one entry per component, in order")
    if sorted(strategy["options"]) != sorted(components):
        problems.append(f"strategy.options: need the options of exactly {components}")
    seeds = [run["seed"] for run in submission["runs"]]
    if len(set(seeds)) != len(seeds):
        problems.append(f"runs: seeds {seeds} repeat a seed")
    if sorted(seeds) != sorted(track["seeds"]):
        problems.append(f"runs: seeds {sorted(seeds)} are not the track's seeds {sorted(track['seeds'])}")
    reported = {key for run in submission["runs"] for key in run["summary"] if key in RANKED_SUMMARY_KEYS}
    for index, run in enumerate(submission["runs"]):
        where = f"runs[{index}]"
        config = run["config"]
        for field, actual, wanted in (
            ("config.track", config["track"], track["name"]),
            ("config.strategy", config["strategy"], strategy["spec"]),
            ("config.seed", config["seed"], run["seed"]),
            ("config.stream", config["stream"], data["stream"]),
            ("stream.fingerprint", run["stream"]["fingerprint"], data["fingerprint"]),
            ("resolved_options.strategy", run["resolved_options"]["strategy"], strategy["options"]),
        ):
            if actual != wanted:
                problems.append(f"{where}.{field}: {actual!r} differs from the submission's {wanted!r}")
        for key, value in track["protocol"].items():
            if config.get(key) != value:
                problems.append(f"{where}.config.{key}: {config.get(key)!r} differs from track.protocol.{key} {value!r}")
        if is_sample(run["stream"]["description"]) != data["sample"]:
            problems.append(f"data.sample: {data['sample']} contradicts {where}.stream.description")
        problems += _matrix_and_summary(run, where)
        for key in sorted(reported):
            value = run["summary"].get(key)
            if value is None and key in NULLABLE_SUMMARY_KEYS and key in run["summary"]:
                continue  # recomputed as null above: the ratio is undefined for this seed
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append(f"{where}.summary.{key}: missing or not a number ({value!r}) while other runs report it")
    return problems


def _matrix_and_summary(run: dict[str, Any], where: str) -> list[str]:
    if ("accuracy_matrix" in run) == ("accuracy_rows" in run):
        return [f"{where}: needs exactly one of accuracy_matrix (every cell, null where not measured) "
                "and accuracy_rows (only the cells its evaluation protocol measures)"]
    if "accuracy_rows" in run:
        from collapsebench.leaderboard.cells import run_matrix

        if "evaluation" not in run:
            return [f"{where}.accuracy_rows: needs evaluation.protocol to say which cells they are"]
        try:
            run = {**run, "accuracy_matrix": run_matrix(run)}
        except (ValueError, CollapsebenchError) as exc:
            return [f"{where}.accuracy_rows: {exc}"]
    matrix = run["accuracy_matrix"]
    size = run["stream"]["n_experiences"]
    if len(matrix) != size or any(len(row) != size for row in matrix):
        return [f"{where}.accuracy_matrix: must be {size} x {size} (the stream's experiences), "
                f"got rows of {[len(row) for row in matrix]}"]
    problems = _measured_cells(run, where)
    if problems:
        return problems  # summaries of a matrix that is not the protocol's would mislead
    problems += _accuracy_summaries(run, where)
    for series_name, series in run["collapse"].items():
        if len(series) != size:
            problems.append(f"{where}.collapse.{series_name}: {len(series)} values for {size} experiences")
    return problems or _collapse_summaries(run, where)


def _measured_cells(run: dict[str, Any], where: str) -> list[str]:
    """The matrix holds exactly the cells its evaluation protocol measures: nothing left out, nothing added."""
    from collapsebench.errors import CollapsebenchError as ProtocolError
    from collapsebench.protocols import parse

    matrix, size = run["accuracy_matrix"], len(run["accuracy_matrix"])
    evaluation = run.get("evaluation", {"protocol": "full"})  # older submissions measured everything
    try:
        protocol = parse(evaluation["protocol"])
    except ProtocolError as exc:
        return [f"{where}.evaluation.protocol: {exc}"]
    configured = run["config"].get("evaluation")
    if configured is not None:
        try:
            if parse(configured).name != protocol.name:
                return [f"{where}.evaluation.protocol: {protocol.name!r} but the run's config sets {configured!r}"]
        except ProtocolError as exc:
            return [f"{where}.config.evaluation: {exc}"]
    wrong, count = [], 0
    for i, row in enumerate(matrix):
        measured = set(protocol.columns(i, size))
        for j, value in enumerate(row):
            if (value is not None) != (j in measured):
                count += 1
                if len(wrong) < 3:
                    wrong.append(f"[{i}][{j}] is {'null' if value is None else 'measured'}")
    if count:
        more = f" and {count - len(wrong)} more" if count > len(wrong) else ""
        return [f"{where}.accuracy_matrix: not the cells protocol {protocol.name!r} measures: {', '.join(wrong)}{more}"]
    cells = protocol.measured_cells(size)
    if "measured_cells" in evaluation and evaluation["measured_cells"] != cells:
        return [f"{where}.evaluation.measured_cells: {evaluation['measured_cells']} but protocol "
                f"{protocol.name!r} measures {cells} cells of a {size} x {size} matrix"]
    return []


def _agrees(stored: Any, recomputed: Any) -> bool:
    if recomputed is None or stored is None:
        return stored is None and recomputed is None
    if isinstance(recomputed, list):
        return isinstance(stored, list) and len(stored) == len(recomputed) and all(map(_agrees, stored, recomputed))
    return (isinstance(stored, (int, float)) and not isinstance(stored, bool)
            and abs(stored - recomputed) <= SUMMARY_TOLERANCE)


def _accuracy_summaries(run: dict[str, Any], where: str) -> list[str]:
    """The accuracy summaries recomputed from the stored matrix and online accuracies.

    The classic three (average accuracy, forgetting, BWT) must be reported whenever the protocol
    measured what they need, as before protocols existed; the plasticity series and ratios are
    checked where reported. A summary the stored cells cannot give is refused, whatever its value.
    """
    from collapsebench.metrics.accuracy import accuracy_summaries

    summary = run["summary"]
    online = run.get("online_accuracy")
    if online is not None and len(online) != len(run["accuracy_matrix"]):
        return [f"{where}.online_accuracy: {len(online)} values for {len(run['accuracy_matrix'])} experiences"]
    protocol = run.get("evaluation", {}).get("protocol", "full")
    found = accuracy_summaries(run["accuracy_matrix"], online, protocol)
    problems = []
    for key in ACCURACY_SUMMARY_KEYS:
        if key in found.values:
            if key not in summary and key not in REQUIRED_WHEN_MEASURED:
                continue
            if not _agrees(summary.get(key), found.values[key]):
                problems.append(f"{where}.summary.{key}: {summary.get(key)!r} but the accuracy matrix gives {found.values[key]!r}"
                                if key != "online_plasticity_retention" else
                                f"{where}.summary.{key}: {summary.get(key)!r} but online_accuracy gives {found.values[key]!r}")
        elif key in summary:
            reason = found.unavailable.get(key) or "it needs online_accuracy, which the run does not store"
            problems.append(f"{where}.summary.{key}: reported, but cannot come from what was measured ({reason})")
    return problems


def _final_and_peak(run: dict[str, Any], metric: str) -> tuple[dict[str, float], dict[str, float]] | None:
    """Per tapped layer, the last value of ``<metric>/activation/<layer>`` and its maximum; None if unrecorded."""
    final, peak = {}, {}
    for tap in run["taps"]:
        series = run["collapse"].get(f"{metric}/activation/{tap['name']}")
        if not series or series[-1] is None:
            return None
        final[tap["name"]] = series[-1]
        peak[tap["name"]] = max(v for v in series if v is not None)
    return final, peak


def _measured_between_experiences(run: dict[str, Any]) -> bool:
    """Whether an evaluator also measured every N iterations (those values are not in the file)."""
    options = run["resolved_options"].get("evaluator", {})
    return any(isinstance(o, dict) and o.get("every_n_iterations") for o in options.values())


def _collapse_summaries(run: dict[str, Any], where: str) -> list[str]:
    """``capacity_retention`` and ``dead_units`` recomputed from the collapse series they summarize."""
    problems = []
    summary = run["summary"]
    recorded = _final_and_peak(run, "erank")
    if isinstance(summary.get("capacity_retention"), (int, float)):
        if recorded is None:
            problems.append(f"{where}.summary.capacity_retention: reported, but collapse has no erank/activation series for every tap")
        else:
            final, peak = recorded
            ratios = [final[k] / max(peak[k], final[k]) for k in final if max(peak[k], final[k]) > 0]
            expected = sum(ratios) / len(ratios) if ratios else None
            stored = summary["capacity_retention"]
            # A peak measured between experiences can only be higher, so the ratio only lower.
            agrees = expected is not None and (
                stored <= expected + SUMMARY_TOLERANCE if _measured_between_experiences(run)
                else abs(stored - expected) <= SUMMARY_TOLERANCE
            )
            if not agrees:
                problems.append(f"{where}.summary.capacity_retention: {stored!r} but the erank/activation series give {expected!r}")
    if "plasticity" in summary or "plasticity_mean" in summary or "plasticity_retention_relative" in summary:
        problems += _plasticity(run, where)
    if isinstance(summary.get("dead_units"), (int, float)):
        dead = _final_and_peak(run, "dead_units")
        expected = sum(dead[0].values()) / len(dead[0]) if dead else None
        if expected is None or abs(summary["dead_units"] - expected) > SUMMARY_TOLERANCE:
            problems.append(f"{where}.summary.dead_units: {summary['dead_units']!r} but the dead_units/activation series give {expected!r}")
    return problems


def _protocol(submission: dict[str, Any], track) -> list[str]:
    problems = []
    if submission["track"]["name"] != track.name:
        return [f"track.name: {submission['track']['name']!r} is not the track {track.name!r}"]
    expected = expected_protocol(track)
    recorded = submission["track"]["protocol"]
    for key, value in expected.items():
        if key not in recorded and key in LATER_PROTOCOL_KEYS and key not in track.config:
            continue
        if key not in recorded:
            problems.append(f"track.protocol.{key}: missing; the track file sets {value!r}")
        elif recorded[key] != value:
            problems.append(f"track.protocol.{key}: {recorded[key]!r} but the track file {track.path.name} sets {value!r}")
    for key in sorted(set(recorded) - set(expected)):
        problems.append(f"track.protocol.{key}: not a protocol key")
    declared = submission["track"].get("rank")
    if declared is not None and tuple(declared) != tuple(track.rank or ()):
        problems.append(f"track.rank: {declared} but the track file {track.path.name} ranks on {list(track.rank or ())}")
    if sorted(submission["track"]["seeds"]) != sorted(track.seeds):
        problems.append(
            f"track.seeds: {sorted(submission['track']['seeds'])} but the track file runs seeds {sorted(track.seeds)}"
        )
    return problems


def _plasticity(run: dict[str, Any], where: str) -> list[str]:
    """``plasticity`` (R[j][j] / fresh accuracy on j) and its mean, from the matrix and the fresh accuracies."""
    summary, matrix = run["summary"], run["accuracy_matrix"]
    fresh = summary.get("fresh_accuracy")
    if not isinstance(fresh, list) or len(fresh) != len(matrix):
        return [f"{where}.summary.fresh_accuracy: plasticity needs one fresh-model accuracy per experience"]
    recorded = run["collapse"].get("fresh_accuracy/model/all")
    if recorded is not None and recorded != fresh:
        return [f"{where}.summary.fresh_accuracy: {fresh} differs from collapse.fresh_accuracy/model/all {recorded}"]
    expected = [matrix[j][j] / fresh[j] if fresh[j] > 0 else None for j in range(len(matrix))]
    stored = summary.get("plasticity")
    if (not isinstance(stored, list) or len(stored) != len(expected)
            or any((a is None) != (b is None) or (a is not None and abs(a - b) > SUMMARY_TOLERANCE)
                   for a, b in zip(stored, expected))):
        return [f"{where}.summary.plasticity: {stored!r} but the matrix and fresh accuracies give {expected!r}"]
    finite = [value for value in expected if value is not None]
    mean = summary.get("plasticity_mean")
    if not finite or not isinstance(mean, (int, float)) or abs(mean - sum(finite) / len(finite)) > SUMMARY_TOLERANCE:
        return [f"{where}.summary.plasticity_mean: {mean!r} but the plasticity values give "
                f"{sum(finite) / len(finite) if finite else None!r}"]
    if "plasticity_retention_relative" in summary:
        from collapsebench.metrics.accuracy import retention

        if len(finite) != len(expected):
            return [f"{where}.summary.plasticity_retention_relative: reported, but plasticity is undefined "
                    "on some experience (a fresh network scored 0 there)"]
        relative = retention(expected)
        if not _agrees(summary["plasticity_retention_relative"], relative):
            return [f"{where}.summary.plasticity_retention_relative: {summary['plasticity_retention_relative']!r} "
                    f"but the plasticity values give {relative!r}"]
    return []
