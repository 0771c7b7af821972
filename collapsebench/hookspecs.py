"""The hooks a collapsebench plugin may implement.

Built-in capabilities use exactly these hooks; so does a third-party package. Provider hooks
return lists of typed records (:mod:`collapsebench.records`); lifecycle hooks see a run's
config and its finished result. docs/plugin_hooks.md says when each is called, what it may do,
and in which order plugins are called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collapsebench.config import RunConfig
    from collapsebench.records import Architecture, Evaluator, Logger, Strategy, Stream

PROJECT = "collapsebench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- providers ----------------------------------------------------------------------------


@hookspec
def collapsebench_architectures() -> list[Architecture]:
    """Return the model families this plugin provides, as ``Architecture`` records."""


@hookspec
def collapsebench_strategies() -> list[Strategy]:
    """Return the continual-learning strategies this plugin provides, as ``Strategy`` records."""


@hookspec
def collapsebench_streams() -> list[Stream]:
    """Return the streams of experiences this plugin provides, as ``Stream`` records."""


@hookspec
def collapsebench_evaluators() -> list[Evaluator]:
    """Return the measurements this plugin provides, as ``Evaluator`` records."""


@hookspec
def collapsebench_loggers() -> list[Logger]:
    """Return the experiment trackers this plugin provides, as ``Logger`` records (Avalanche loggers)."""


@hookspec
def collapsebench_track_dirs() -> list[Path]:
    """Return directories holding benchmark track files (``*.toml``) this plugin provides."""


@hookspec
def collapsebench_study_dirs() -> list[Path]:
    """Return directories holding study files (``*.toml``: a run grid, figures and claims) this plugin provides."""


# --- lifecycle ------------------------------------------------------------------------------


@hookspec
def collapsebench_configure_run(config: RunConfig) -> None:
    """Inspect or adjust a run's config in place before its options are resolved and anything is built."""


@hookspec
def collapsebench_result_recorded(result: dict[str, Any], run_dir: Path) -> None:
    """Receive a run's finished result, after ``results.json`` has been written to ``run_dir``."""
