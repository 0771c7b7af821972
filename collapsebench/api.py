"""Running collapsebench from Python: ``collapsebench.run(...)`` and ``collapsebench.load_run(dir)``.

``run`` takes the keys of a TOML config, as a mapping, a path to a ``.toml`` file, keyword
arguments or all three (keywords win; option tables merge key by key), and goes through the
same checks and the same runner as ``collapsebench run``. It returns the run's ``results.json``
as a :class:`RunResult`. torch and Avalanche are imported by the first call only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError

_NESTED_TABLES = ("strategy_options", "evaluator_options")
_TABLES = ("stream_options", "model_options")


class RunResult(Mapping):
    """A run directory's ``results.json``, read-only, plus where it lives.

    ``result["summary"]``, ``result.accuracy_matrix`` and ``result.metrics`` (the evaluators'
    records, one flat dict each) read the file's content; ``result.run_dir`` is the directory
    (TensorBoard events, ``model.pt``, ``config.json``).
    """

    def __init__(self, run_dir: str | os.PathLike, data: Mapping[str, Any]):
        self.run_dir = Path(run_dir)
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        config = self._data.get("config", {})
        what = "/".join(str(config.get(k, "?")) for k in ("stream", "model", "strategy"))
        return f"RunResult({str(self.run_dir)!r}, {what}, seed {config.get('seed', '?')}, {self.status})"

    @property
    def status(self) -> str | None:
        return self._data.get("status")

    @property
    def accuracy_matrix(self) -> list[list[float | None]]:
        return self._data.get("accuracy_matrix", [])

    @property
    def summary(self) -> dict[str, Any]:
        return self._data.get("summary", {})

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return self._data.get("metrics", [])

    def metrics_frame(self):
        """The metric records as a pandas DataFrame, one row per record (pandas is optional)."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "RunResult.metrics_frame() needs pandas, which collapsebench does not install: "
                "`pip install pandas` (or `uv add pandas`). result.metrics holds the same records as a list of dicts."
            ) from None
        return pandas.DataFrame.from_records(self.metrics)


def load_run(run_dir: str | os.PathLike) -> RunResult:
    """The result recorded in ``run_dir`` (complete or partial)."""
    from collapsebench.results import RESULTS_FILE

    path = Path(run_dir) / RESULTS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CollapsebenchError(f"{str(run_dir)!r} holds no {RESULTS_FILE}: it is not a finished collapsebench run.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CollapsebenchError(f"{str(path)!r} could not be read as JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise CollapsebenchError(f"{str(path)!r} does not hold a collapsebench result.")
    return RunResult(run_dir, data)


def run(config: Mapping[str, Any] | str | os.PathLike | None = None, /, *, plugins: Sequence[str] = (),
        resume: str | os.PathLike | None = None, overwrite: bool = False,
        echo: Callable[[str], Any] | None = print, show_warnings: bool = False,
        **keys: Any) -> RunResult | list[RunResult]:
    """Train and evaluate one configuration; return its result.

    ``config`` is a mapping of TOML keys or the path of a TOML file; ``keys`` are more TOML keys
    (``stream="split-mnist"``, ``strategy_options={"replay": {"mem_size": 200}}``) and win.
    ``plugins`` are ``--plugin`` specs, ``resume`` an interrupted run directory to continue,
    ``overwrite`` replaces an earlier run in the same directory. ``echo`` receives the progress
    lines (None: silent). A track without a ``seed`` runs all its seeds and returns a list.

    Deprecation warnings raised inside Avalanche and its dependencies are hidden unless
    ``show_warnings`` is true or Python was started with ``-W`` options.
    """
    from collapsebench.cli import build_parser, prepare_runs
    from collapsebench.config import check_layer, load_toml
    from collapsebench.preflight import check_data
    from collapsebench.results import RESULTS_FILE, read_status

    args = build_parser().parse_args(["run"])
    args.plugin = list(plugins)
    args.overwrite = overwrite
    layer = None
    if resume is not None:
        if config is not None or keys:
            raise CollapsebenchError("collapsebench.run(resume=...) continues a run exactly as it was configured; "
                                     "give no other config.")
        args.resume = str(resume)
    else:
        given = load_toml(config) if isinstance(config, (str, os.PathLike)) else check_layer(
            dict(config or {}), "config given to collapsebench.run")
        layer = _merge(given, check_layer(keys, "keyword arguments of collapsebench.run"))
    manager, registry, configs = prepare_runs(args, file_layer=layer)
    say = echo or (lambda *_args, **_kwargs: None)
    results = []
    for run_config in configs:
        run_dir = run_config.run_dir()
        if resume is not None and read_status(run_dir / RESULTS_FILE) == "complete":
            say(f"collapsebench: {run_dir} is already complete; nothing to resume.")
            results.append(load_run(run_dir))
            continue
        check_data(run_config, registry)
        with quiet_dependency_warnings(show_warnings):
            from collapsebench.runner import execute

            say(f"collapsebench: {run_config.stream} / {run_config.model} / {run_config.strategy}, "
                f"seed {run_config.seed} -> {run_dir}")
            execute(run_config, manager, registry, echo=say, resume=resume is not None)
        results.append(load_run(run_dir))
    return results[0] if len(results) == 1 else results


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if key in _TABLES:
            merged[key] = {**merged.get(key, {}), **value}
        elif key in _NESTED_TABLES:
            tables = dict(merged.get(key, {}))
            for name, options in value.items():
                tables[name] = {**tables.get(name, {}), **options}
            merged[key] = tables
        else:
            merged[key] = value
    return merged


SHOW_WARNINGS_ENV = "COLLAPSEBENCH_SHOW_WARNINGS"
_DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning)


@contextlib.contextmanager
def quiet_dependency_warnings(show: bool = False):
    """Hide deprecation warnings raised inside installed packages (Avalanche and what it uses).

    Filters are not enough: Avalanche's ``@deprecated`` sets its own "always" filter around each
    warning, so the warnings are dropped where they would be shown. Warnings from the user's own
    code, and every other category, still show; ``show``, ``COLLAPSEBENCH_SHOW_WARNINGS=1`` or
    Python's ``-W`` options show everything.
    """
    if show or sys.warnoptions or os.environ.get(SHOW_WARNINGS_ENV, "") not in ("", "0"):
        yield
        return
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show_unless_dependency_deprecation(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, _DEPRECATIONS) and _in_installed_package(filename):
                return
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show_unless_dependency_deprecation
        yield


def _in_installed_package(filename: str) -> bool:
    parts = Path(filename).parts
    return "site-packages" in parts or "dist-packages" in parts

