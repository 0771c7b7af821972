"""A study's grid as sweep jobs, so that the sweep's driver and executors run it (skipping
complete runs, resuming from checkpoints) and each job is an ordinary ``collapsebench run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collapsebench.config import RunConfig, build_config, identity_of, resolve_component_options
from collapsebench.sweep.grid import Job

STUDY_FILE = "study.json"


def run_dir(out: Path, stream: str, model: str, strategy: str, seed: int) -> Path:
    return (Path(out) / stream / model / strategy / f"seed{seed}").resolve()


def build_jobs(study, quick: bool, registry, out: str | Path, plugins: list[str],
               free: dict[str, Any] | None = None) -> list[Job]:
    """One checked job per stream x model x strategy x seed; bad names or options fail here."""
    grid = study.grid(quick)
    free = dict(free or {})
    free["data_root"] = str(Path(free.get("data_root") or RunConfig().data_root).expanduser().resolve())
    jobs = []
    for stream in grid.streams:
        for model in grid.models:
            cell = {"stream": stream, "model": model}
            if stream in grid.stream_options:
                cell["stream_options"] = grid.stream_options[stream]
            if model in grid.model_options:
                cell["model_options"] = grid.model_options[model]
            for strategy in grid.strategies:
                for seed in grid.seeds:
                    where = run_dir(Path(out), stream, model, strategy, seed)
                    config = build_config(grid.run, cell, {**free, "strategy": strategy, "seed": seed,
                                                           "out": str(where), "plugins": list(plugins)})
                    resolved = resolve_component_options(config, registry)
                    record = {**config.to_dict(), "resolved_options": resolved}
                    jobs.append(Job(study.name, strategy, seed, str(where), config.to_dict(), identity_of(record),
                                    tuple(plugins)))
    return jobs
