"""A study's grid as sweep jobs, so that the sweep's driver and executors run it (skipping
complete runs, resuming from checkpoints) and each job is an ordinary ``collapsebench run``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collapsebench.config import build_config
from collapsebench.sweep.grid import Job

STUDY_FILE = "study.json"


def build_jobs(study, quick: bool, registry, out: str | Path, plugins: list[str],
               free: dict[str, Any] | None = None, only: dict[str, list[str]] | None = None) -> list[Job]:
    """One checked job per stream x model x strategy x seed, and per value of every option axis
    of the grid (collapsebench.planner.plan_study, in OUT/STREAM/MODEL/STRATEGY/seedN, STREAM and
    MODEL carrying their axis values); bad names or options fail here. ``only`` keeps part of the
    grid (spec.Grid.restricted)."""
    from collapsebench.planner import plan_study

    # OUT/STREAM/MODEL/STRATEGY/seedN: the job's place is STREAM/MODEL (with their axis values).
    return [Job.of(run, study.name, plugins, place="/".join(Path(run.run_dir).parts[-4:-2]))
            for run in plan_study(registry, study.grid(quick, only), out, plugins, free)]


def missing_data(jobs: list[Job], registry) -> list[str]:
    """What the data root lacks for the jobs, one message per stream setting (its stream's own
    check, which reads no data and downloads nothing): a study stops before its first run
    rather than fail run by run, hours in, on a data set nobody put there."""
    from collapsebench.errors import CollapsebenchError
    from collapsebench.preflight import check_data

    problems, seen = [], set()
    for job in jobs:
        config = build_config(job.config)
        key = (config.stream, json.dumps(config.stream_options, sort_keys=True, default=str), config.data_root)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_data(config, registry)
        except CollapsebenchError as exc:
            message = f"{config.stream}: {exc}"
            if message not in problems:
                problems.append(message)
    return problems
