"""Re-running one seed of a submission and comparing what it gives with what it claims.

The strategy must be installed with the very source that was submitted (same hash). The re-run
uses the recorded configuration; its accuracy matrix and summary are then compared with the
submission's. A CPU run on one thread repeats itself exactly; with several threads (or on a GPU)
the order of floating-point sums changes and the collapse metrics move in their last digits. So
the verdict is "identical" when every value matches exactly, "within tolerance" when each value is
within :data:`TOLERANCE` (absolute up to 1, relative above), and a failure otherwise.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError
from collapsebench.leaderboard import hashing
from collapsebench.leaderboard.submission import LOCAL_CONFIG_KEYS, load_manager
from collapsebench.leaderboard.validate import validate_submission

#: How far a re-run may differ from the record: 0.05, i.e. about 4 test images of one split-digits
#: experience (72 images); relative for values above 1.
TOLERANCE = 0.05


@dataclass
class Difference:
    field: str
    recorded: Any
    rerun: Any

    @property
    def deviation(self) -> float:
        try:
            return abs(float(self.rerun) - float(self.recorded))
        except (TypeError, ValueError):
            return float("inf")

    @property
    def within_tolerance(self) -> bool:
        if not isinstance(self.recorded, (int, float)) or not isinstance(self.rerun, (int, float)):
            return False
        return self.deviation <= TOLERANCE * max(1.0, abs(self.recorded))


@dataclass
class Verdict:
    seed: int
    differences: list[Difference] = field(default_factory=list)
    exact_required: bool = False

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def passed(self) -> bool:
        if self.exact_required:
            return self.identical
        return all(d.within_tolerance for d in self.differences)

    def describe(self) -> str:
        if self.identical:
            return f"seed {self.seed}: verified, the re-run's accuracy matrix and summary are identical to the submission's."
        worst = max(self.differences, key=lambda d: d.deviation)
        lines = [
            f"seed {self.seed}: " + (
                f"verified within tolerance ({TOLERANCE}): {len(self.differences)} value(s) differ, at most by "
                f"{worst.deviation:.3g} ({worst.field})." if self.passed else
                f"NOT verified: {sum(not d.within_tolerance for d in self.differences) if not self.exact_required else len(self.differences)} "
                f"value(s) differ beyond {'zero (--exact)' if self.exact_required else TOLERANCE}."
            )
        ]
        for d in sorted(self.differences, key=lambda d: -d.deviation)[:20]:
            mark = "ok  " if d.within_tolerance and not self.exact_required else "FAIL"
            lines.append(f"  {mark} {d.field}: submitted {d.recorded!r}, re-run {d.rerun!r}")
        return "\n".join(lines)


def compare(recorded: Any, rerun: Any, where: str) -> list[Difference]:
    """Every leaf where two JSON values differ."""
    if isinstance(recorded, dict) and isinstance(rerun, dict):
        return [d for key in sorted(set(recorded) | set(rerun), key=str)
                for d in compare(recorded.get(key), rerun.get(key), f"{where}.{key}")]
    if isinstance(recorded, list) and isinstance(rerun, list) and len(recorded) == len(rerun):
        return [d for i, (a, b) in enumerate(zip(recorded, rerun)) for d in compare(a, b, f"{where}[{i}]")]
    if _undefined(recorded) and _undefined(rerun):
        return []
    return [] if recorded == rerun else [Difference(where, recorded, rerun)]


def _undefined(value: Any) -> bool:
    """None or NaN: a submission's JSON stores an undefined value (a correlation of a constant series)
    as null, a re-run holds it as NaN; both mean the same and must compare equal."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_strategy_source(submission: dict[str, Any], manager, registry) -> None:
    """The strategy must be installed, from source that hashes as submitted."""
    problems = []
    for recorded in submission["strategy"]["sources"]:
        component = recorded["component"]
        if component not in registry.names("strategy"):
            where = f" (distribution {recorded['distribution']} {recorded['version']})" if recorded["distribution"] else ""
            problems.append(f"the strategy {component!r} is not installed: install the collapsebench plugin "
                            f"{recorded['plugin']!r}{where}, or pass it with --plugin")
            continue
        current = hashing.strategy_source(manager, registry, component)
        if current["sha256"] != recorded["sha256"]:
            changed = sorted(m for m in set(recorded["files"]) | set(current["files"])
                             if recorded["files"].get(m) != current["files"].get(m))
            problems.append(f"the installed source of strategy {component!r} differs from the submitted one "
                            f"(modules that differ: {', '.join(changed)})")
    if problems:
        raise CollapsebenchError("Cannot verify: " + "; ".join(problems) + ".")


def rerun_config(run: dict[str, Any], plugin_specs: Sequence[str], out: Path, data_root: str | None, device: str | None,
                 registry):
    """The re-run of one submitted run (collapsebench.planner.PlannedRun): its recorded config, less
    what was local to the machine it ran on, written to ``out`` with the verifier's plugins."""
    from collapsebench.config import FIELDS
    from collapsebench.planner import plan_rerun

    layer = {key: value for key, value in run["config"].items() if key in FIELDS and key not in LOCAL_CONFIG_KEYS}
    return plan_rerun(layer, registry, out=out, plugins=plugin_specs, data_root=data_root, device=device)


def verify(
    submission: dict[str, Any],
    seed: int | None = None,
    plugins: Sequence[str] = (),
    data_root: str | None = None,
    device: str | None = None,
    exact: bool = False,
    out: str | Path | None = None,
    echo: Callable[[str], None] = print,
) -> Verdict:
    """Re-run one seed of a (valid) submission and compare; the verdict says how it went."""
    from collapsebench.config import seed_dir
    from collapsebench.tracks import load_tracks

    manager, registry = load_manager(submission.get("plugins", []), plugins)
    track = load_tracks(manager).get(submission.get("track", {}).get("name"))
    validate_submission(submission, track=track, require_track=True)
    check_strategy_source(submission, manager, registry)
    runs = {run["seed"]: run for run in submission["runs"]}
    seed = submission["runs"][0]["seed"] if seed is None else seed
    if seed not in runs:
        raise CollapsebenchError(f"The submission has no seed {seed}; its seeds are {sorted(runs)}.")
    run = runs[seed]

    with tempfile.TemporaryDirectory(prefix="collapsebench-verify-") as scratch:
        run_dir = Path(out) if out else seed_dir(scratch, seed)
        specs = [s for s in _specs(manager)]
        planned = rerun_config(run, specs, run_dir, data_root, device, registry)
        config = planned.config
        differing = compare(run["resolved_options"], planned.resolved_options, "resolved_options")
        if differing:
            raise CollapsebenchError(
                "Cannot verify: the installed components resolve other options than the submission recorded ("
                + "; ".join(f"{d.field}: {d.recorded!r} then, {d.rerun!r} now" for d in differing[:5]) + ")."
            )
        from collapsebench.runner import execute

        echo(f"collapsebench: re-running seed {seed} of {submission['name']!r} on track {config.track} -> {run_dir}")
        result = execute(config, manager, registry, echo=echo)
    if result["stream"]["fingerprint"] != submission["data"]["fingerprint"]:
        raise CollapsebenchError(
            f"Cannot verify: the re-run read other data (fingerprint {result['stream']['fingerprint']}) than the "
            f"submission ({submission['data']['fingerprint']}); point --data-root at the data it used."
        )
    recorded_protocol = run.get("evaluation", {}).get("protocol", "full")  # older submissions: full
    rerun_protocol = result.get("evaluation", {}).get("protocol", "full")
    if rerun_protocol != recorded_protocol:
        raise CollapsebenchError(
            f"Cannot verify: the re-run measured under evaluation protocol {rerun_protocol!r}, "
            f"the submission under {recorded_protocol!r}; their accuracy matrices hold different cells."
        )
    # unmeasured cells are null on both sides, so they compare equal
    from collapsebench.leaderboard.cells import run_matrix

    differences = compare(run_matrix(run), result["accuracy_matrix"], "accuracy_matrix")
    differences += compare(run["summary"], result["summary"], "summary")
    if "online_accuracy" in run:
        differences += compare(run["online_accuracy"], result.get("online_accuracy"), "online_accuracy")
    return Verdict(seed, differences, exact_required=exact)


def _specs(manager) -> list[str]:
    """``--plugin`` specs naming what this manager loaded beyond entry points, for the run's record."""
    return [info.location for info in manager.info.values() if info.source in ("module", "file")]
