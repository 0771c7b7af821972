"""The grid of a sweep: one job per (strategy, seed) of a track, checked before anything runs,
and the test that decides whether a job's run directory already holds its result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.config import LOCAL_KEYS, identity_of
from collapsebench.errors import CollapsebenchError
from collapsebench.results import RESULTS_FILE

ERROR_FILE = "error.json"
LOG_FILE = "sweep.log"
__all__ = ["LOCAL_KEYS", "identity_of"]  # defined with the config; the sweep compares results by them
MAX_SEED = 2**32 - 1  # numpy's seed range, as for `run --seed`
#: More seeds than any study runs; beyond it a typo (0-100000000) is far likelier than intent.
MAX_SEEDS = 10_000
SEED_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class Job:
    """One run of the grid; picklable, so that it travels to a worker process or a Ray task."""

    track: str
    strategy: str
    seed: int
    run_dir: str  # absolute: Ray workers need not share the driver's working directory
    config: dict[str, Any]  # RunConfig.to_dict(), ``out`` = run_dir
    identity: dict[str, Any]  # what a complete results.json must have recorded to count as this job
    plugins: tuple[str, ...] = field(default=())
    #: Continue from the run directory's checkpoint (an interrupted run of the same config).
    resume: bool = False
    #: Where in a grid of several streams or models the job sits (a study's ``STREAM/MODEL``), so
    #: that progress lines tell its runs apart; empty for a track's sweep, where only the
    #: strategy and seed vary.
    place: str = ""

    @property
    def label(self) -> str:
        return f"{self.place + ' ' if self.place else ''}{self.strategy} seed{self.seed}"

    @classmethod
    def of(cls, run, grid: str, plugins, place: str = "") -> "Job":
        """The job of a planned run (collapsebench.planner.PlannedRun) of the grid named ``grid``."""
        return cls(grid, run.config.strategy, run.config.seed, str(run.run_dir), run.config.to_dict(), run.identity,
                   tuple(plugins), place=place)


def parse_seeds(text: str) -> list[int]:
    """``"0-4"``, ``"0,2,5"`` or ``"0-2,7"`` as a sorted list without repeats.

    Every range is checked, and the seeds counted, before any is expanded: ``0-100000000`` once
    grew to 12 GB of memory on its way to a dry run.
    """
    ranges = []
    for part in (p.strip() for p in text.split(",")):
        match = SEED_PART.match(part)
        if not match:
            raise CollapsebenchError(f"--seeds takes numbers and ranges such as 0-4 or 0,2,5; got {text!r}.")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise CollapsebenchError(f"The seed range {part!r} runs backwards; write {high}-{low}.")
        if high > MAX_SEED:
            raise CollapsebenchError(f"--seeds: seed {high} is above the largest seed, {MAX_SEED} (2**32 - 1).")
        ranges.append((low, high))
    count = sum(high - low + 1 for low, high in ranges)  # an upper bound: ranges may overlap
    if count > MAX_SEEDS:
        raise CollapsebenchError(
            f"--seeds {text!r} asks for {count:,} seeds; a sweep takes at most {MAX_SEEDS:,} (one run directory each)."
        )
    return sorted({seed for low, high in ranges for seed in range(low, high + 1)})


def parse_strategies(text: str, registry) -> list[str]:
    """Comma-separated strategy specs (each may join components with ``+``); ``all``: every one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return registry.names("strategy")
    if not names:
        raise CollapsebenchError("--strategies needs at least one strategy name.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CollapsebenchError(f"--strategies names {', '.join(repeated)} more than once.")
    return names


def state_of(job: Job) -> str:
    """``complete`` (its results.json is complete and records this job's config), ``diverged`` (its
    training diverged under this config), ``stale`` (complete or diverged, but for another config),
    ``partial``, ``failed`` (error.json, no result) or ``missing``."""
    run_dir = Path(job.run_dir)
    try:
        recorded = json.loads((run_dir / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return "failed" if (run_dir / ERROR_FILE).exists() else "missing"
    if isinstance(recorded, dict) and recorded.get("status") == "diverged":
        # Finished, as far as it can: re-running the same config would diverge the same way.
        return "diverged" if identity_of(recorded.get("config") or {}) == job.identity else "stale"
    if not isinstance(recorded, dict) or recorded.get("status") != "complete":
        return "partial"
    return "complete" if identity_of(recorded.get("config") or {}) == job.identity else "stale"


def can_resume(job: Job) -> bool:
    """Whether the run directory holds a checkpoint of an interrupted run of this very config."""
    from collapsebench.checkpoint import CHECKPOINT_FILE, CONFIG_FILE

    run_dir = Path(job.run_dir)
    if not (run_dir / CHECKPOINT_FILE).is_file():
        return False
    try:
        recorded = json.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict):
        return False
    # config.json has no resolved options: compare the config fields alone.
    recorded_fields = {key: value for key, value in identity_of(recorded).items() if key != "resolved_options"}
    return recorded_fields == {key: value for key, value in job.identity.items() if key != "resolved_options"}


def build_jobs(
    manager,
    registry,
    track,
    strategies: list[str],
    seeds: list[int],
    out: str | Path,
    plugins: list[str],
    free: dict[str, Any] | None = None,
    strategy_options: list[tuple[str, Any]] = (),
) -> list[Job]:
    """One checked job per strategy and seed, strategy-major, as collapsebench.planner.plan_sweep
    plans them. ``free`` holds the settings a track leaves to its user (device, data_root,
    download); ``strategy_options`` are ``(NAME.KEY | KEY, value)`` pairs: a qualified key applies
    to the strategies that contain component NAME, a bare key to those with exactly one component
    declaring it."""
    from collapsebench.planner import plan_sweep

    planned = plan_sweep(registry, track, strategies, seeds, out, plugins, free, strategy_options)
    return [Job.of(run, track.name, plugins) for run in planned]
