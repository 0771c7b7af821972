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


def ranked_summary_keys() -> set[str]:
    """Summary values a board may rank on (declared with a direction); when one run reports one, every run must."""
    from collapsebench.declarations import catalog

    return {s.name for s in catalog().ranked().values() if s.name not in UNRANKED_PER_RUN}


def nullable_summary_keys() -> set[str]:
    """Ratios that are null, not missing, for a seed where they are undefined."""
    from collapsebench.declarations import catalog

    return {s.name for s in catalog().summaries.values() if s.nullable}


#: Ranked on the board, but a per-task series that a protocol measuring no diagonal lacks.
UNRANKED_PER_RUN = ("new_task_accuracy",)
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
    ranked, nullable = ranked_summary_keys(), nullable_summary_keys()
    reported = {key for run in submission["runs"] for key in run["summary"] if key in ranked}
    declared_rank = track.get("rank")
    if declared_rank is not None:
        from collapsebench.leaderboard.ranking import check_rank

        problems += check_rank(declared_rank)
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
            if value is None and key in nullable and key in run["summary"]:
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


def _collapse_summaries(run: dict[str, Any], where: str) -> list[str]:
    """Every summary an evaluator declared with a ``recompute``, checked against the stored series.

    A value outside the summary's declared bounds, one the stored series cannot give, and one
    that disagrees with them are each refused; which evaluator declared what is the catalog's
    (collapsebench.declarations), so a third-party evaluator's summaries are checked the same way.
    """
    from collapsebench.declarations import catalog

    problems = []
    found = catalog()
    for name, declared in found.summaries.items():
        if name not in run["summary"] or name not in found.owners:
            continue  # unreported, or the host's accuracy summaries (_accuracy_summaries checks those)
        stored = run["summary"][name]
        if declared.bounds is not None and isinstance(stored, (int, float)) and not isinstance(stored, bool):
            low, high = declared.bounds
            if not low <= stored <= high:
                problems.append(f"{where}.summary.{name}: {stored!r} is outside its bounds [{low:g}, {high:g}]")
                continue
        if declared.recompute is None:
            continue
        try:
            expected = declared.recompute(run)
        except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) else f"the stored series are malformed ({type(exc).__name__})"
            problems.append(f"{where}.summary.{name}: reported, but {reason}")
            continue
        if stored is None and declared.nullable and expected is None:
            continue
        agrees = declared.agrees(stored, expected, run) if declared.agrees else _agrees(stored, expected)
        if not agrees:
            problems.append(f"{where}.summary.{name}: {stored!r} but recomputing it from the stored series "
                            f"({found.owners[name]} evaluator) gives {expected!r}")
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
