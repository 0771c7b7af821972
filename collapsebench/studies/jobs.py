"""A study's grid as sweep jobs, so that the sweep's driver and executors run it (skipping
complete runs, resuming from checkpoints) and each job is an ordinary ``collapsebench run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collapsebench.sweep.grid import Job

STUDY_FILE = "study.json"


def build_jobs(study, quick: bool, registry, out: str | Path, plugins: list[str],
               free: dict[str, Any] | None = None) -> list[Job]:
    """One checked job per stream x model x strategy x seed (collapsebench.planner.plan_study, in
    OUT/STREAM/MODEL/STRATEGY/seedN); bad names or options fail here."""
    from collapsebench.planner import plan_study

    return [Job.of(run, study.name, plugins) for run in plan_study(registry, study.grid(quick), out, plugins, free)]
