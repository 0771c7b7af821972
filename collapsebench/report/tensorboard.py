"""The report in TensorBoard: a custom-scalars layout and the report's figures as images.

The layout puts every layer of one metric in one chart (TensorBoard's "Custom Scalars" tab),
matching the scalar tags ``<metric>/<kind>[_<phase>]/<layer>`` that evaluators write. It costs
nothing and is written once per run. The figures are drawn only when asked for: inside a
training process with ``images=True`` (opt-in), or afterwards from a finished run directory by
:func:`log_run_directory` (``collapsebench report RUN --tensorboard``).

Used by the runner as::

    board = TensorBoardFigures(writer, strategy=config.strategy, taps=taps_of(model),
                               n_experiences=n_experiences, images=<opt-in flag>)
    ...
    board.after_experience(matrix, recorder.records)   # after each experience's evaluation
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

LAYOUT_TAG = "custom_scalars__config__"  # the tag TensorBoard's custom-scalars plugin reads
#: Tag family of the values measured once per experience, logged at step = experience index.
#: Avalanche logs the same values at step = training iterations, which spaces experiences by
#: their length and puts a "start" measurement one iteration before the previous "end".
PER_EXPERIENCE = "per_experience"
PER_EXPERIENCE_CATEGORY = "per experience (x axis: experience index)"
IMAGE_PREFIX = "report"
#: A finished run's figures go to at most this many experiences (evenly spaced, the last always):
#: drawing every figure at each of 800 or 2,000 tasks would take longer than the run.
MAX_IMAGE_STEPS = 50

#: Charts of Avalanche's own scalars, ahead of the collapse metrics.
AVALANCHE_CHARTS = {
    "test accuracy per experience": r"^Top1_Acc_Exp/",
    "test accuracy on the stream": r"^Top1_Acc_Stream/",
    "training loss per epoch": r"^Loss_Epoch/",
}


def custom_scalars_layout(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, list]]:
    """TensorBoard layout (``SummaryWriter.add_custom_scalars`` format): one chart per metric and kind.

    Each chart's tag is a regular expression matching all of the metric's layers, and its
    ``start`` and ``iteration`` phases as well, so a layer or phase first recorded later still
    lands in its chart.
    """
    from collapsebench.declarations import catalog

    declared = catalog().metrics
    pairs = list(dict.fromkeys((r["name"], r["kind"]) for r in records if r.get("value") is not None))
    # The loaded evaluators' declared order; undeclared metrics follow in record order.
    order = {name: k for k, name in enumerate(declared)}
    pairs.sort(key=lambda pair: order.get(pair[0], len(order)))
    layout: dict[str, dict[str, list]] = {"accuracy": {title: ["Multiline", [regex]] for title, regex in AVALANCHE_CHARTS.items()}}
    layers: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if r.get("value") is not None:
            layers.setdefault((r["name"], r["kind"]), [])
            if r["layer"] not in layers[(r["name"], r["kind"])]:
                layers[(r["name"], r["kind"])].append(r["layer"])
    for name, kind in pairs:
        regex = rf"^{re.escape(name)}/{re.escape(kind)}(_start|_iteration)?/[^/]+$"
        category = _category(declared.get(name), kind)
        layout.setdefault(category, {})[f"{name} ({kind}), every layer"] = ["Multiline", [regex]]
    per_experience = {"test accuracy after each experience (one line per test experience, and their mean)":
                      ["Multiline", [rf"^{PER_EXPERIENCE}/accuracy/[^/]+$"]]}
    for name, kind in pairs:
        # One tag per layer, each ending in the layer's name, which is what TensorBoard labels the line with.
        tags = [rf"^{re.escape(PER_EXPERIENCE)}/{re.escape(name)}/{re.escape(kind)}(_start)?/{re.escape(layer)}$"
                for layer in layers[(name, kind)]]
        per_experience[f"{name} ({kind}) by layer: {', '.join(layers[(name, kind)])}"] = ["Multiline", tags]
    layout[PER_EXPERIENCE_CATEGORY] = per_experience
    return layout


def per_experience_tag(name: str, kind: str, layer: str, phase: str = "end") -> str:
    """``per_experience/<metric>/<kind>[_<phase>]/<layer>``: the experience-indexed copy of a measurement."""
    return f"{PER_EXPERIENCE}/{name}/{kind}{'' if phase == 'end' else '_' + phase}/{layer}"


def per_experience_scalars(matrix: Sequence[Sequence[float | None]], records: Iterable[dict[str, Any]],
                           experience: int) -> dict[str, float]:
    """Tag -> value of everything measured once at ``experience``: its row of the accuracy matrix
    (and the mean over the experiences seen so far), and each evaluator value of that experience."""
    scalars: dict[str, float] = {}
    row = matrix[experience] if experience < len(matrix) else []
    for j, value in enumerate(row):
        if value is not None:
            scalars[f"{PER_EXPERIENCE}/accuracy/test_exp{j}"] = float(value)
    seen = [v for j, v in enumerate(row) if j <= experience and v is not None]
    if seen:
        scalars[f"{PER_EXPERIENCE}/accuracy/mean_seen"] = sum(seen) / len(seen)
    for r in records:
        if int(r.get("experience", -1)) == experience and isinstance(r.get("value"), (int, float)) \
                and r.get("phase", "end") in ("end", "start"):
            scalars[per_experience_tag(r["name"], r["kind"], r["layer"], r.get("phase", "end"))] = float(r["value"])
    return scalars


def write_per_experience(writer, matrix, records, experience: int) -> None:
    for tag, value in per_experience_scalars(matrix, records, experience).items():
        writer.add_scalar(tag, value, global_step=experience)


def _category(metric, kind: str) -> str:
    """The metric's declared category (collapsebench.records.Metric), else its kind's."""
    return metric.category if metric is not None and metric.category else f"collapse: {kind}"


def write_layout(writer, records: Iterable[dict[str, Any]]) -> None:
    writer.add_custom_scalars(custom_scalars_layout(records))


def has_layout(run_dir: str | Path) -> bool:
    """Whether any event file of the run already holds a custom-scalars layout (TensorBoard uses the first)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from collapsebench.eventfiles import event_files

    for path in event_files(run_dir):
        for event in EventFileLoader(str(path)).Load():
            if any(value.tag == LAYOUT_TAG for value in event.summary.value):
                return True
    return False


def figure_rgb(figure, dpi: int = 100):
    """An RGB ``H × W × 3`` uint8 array of a figure, drawn with the Agg canvas (no pyplot)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_figures(writer, result: dict[str, Any], step: int, run_dir: str | Path = ".") -> list[str]:
    """Draw every report figure the (possibly partial) result has data for, as images at ``step``.

    Returns the names of the figures logged; figures without data are left out silently.
    """
    from collapsebench.report.figures import MissingData, all_figures
    from collapsebench.report.runs import Run

    run = Run(Path(run_dir), result, label=str((result.get("config") or {}).get("strategy", "run")))
    logged = []
    for spec in all_figures():
        try:
            figure = spec.draw([run])
        except MissingData:
            continue
        writer.add_image(f"{IMAGE_PREFIX}/{spec.name}", figure_rgb(figure), global_step=step, dataformats="HWC")
        logged.append(spec.name)
    return logged


class TensorBoardFigures:
    """Called by the runner after each experience: writes the layout once, and the figures if asked.

    ``images`` is the opt-in: without it nothing is plotted in the training process.
    """

    def __init__(self, writer, strategy: str, taps: Sequence[Any], n_experiences: int, images: bool = False):
        self.writer = writer
        self.images = images
        self.layout_written = False
        self.base = {
            "config": {"strategy": strategy},
            "stream": {"n_experiences": n_experiences},
            "taps": [{"name": t.name, "width": t.width} if not isinstance(t, dict) else t for t in taps],
        }

    def after_experience(self, matrix: Sequence[Sequence[float]], records: Sequence[dict[str, Any]]) -> None:
        if not self.layout_written:
            write_layout(self.writer, records)
            self.layout_written = True
        write_per_experience(self.writer, matrix, records, len(matrix) - 1)
        if self.images:
            result = {**self.base, "accuracy_matrix": [list(row) for row in matrix], "metrics": list(records)}
            log_figures(self.writer, result, step=len(matrix) - 1)
        self.writer.flush()


def truncated_result(result: dict[str, Any], experience: int) -> dict[str, Any]:
    """The result as it stood right after experience ``experience`` was trained and evaluated."""
    return {
        **result,
        "status": "partial",
        "accuracy_matrix": (result.get("accuracy_matrix") or [])[: experience + 1],
        "metrics": [r for r in result.get("metrics") or [] if int(r.get("experience", 0)) <= experience],
        "summary": {},
    }


def image_steps(n_experiences: int, most: int = MAX_IMAGE_STEPS) -> list[int]:
    """The experiences a finished run's figures are drawn at: every one, or ``most`` evenly spaced."""
    if n_experiences <= most:
        return list(range(n_experiences))
    return sorted({round(k * (n_experiences - 1) / (most - 1)) for k in range(most)})


def log_run_directory(run_dir: str | Path, images: bool = True, layout: bool = True) -> dict[str, Any]:
    """Add the layout (if the run has none) and the figures at every experience to a finished run's TensorBoard.

    Writes a separate event file beside the run's own (collapsebench.eventfiles.log_dir);
    TensorBoard reads all of a folder's event files as one run. Returns what was written.
    """
    from torch.utils.tensorboard import SummaryWriter

    from collapsebench.eventfiles import log_dir, run_name
    from collapsebench.results import read_results

    run_dir = Path(run_dir)
    result = read_results(run_dir)
    written = {"layout": False, "images": {}}
    need_layout = layout and not has_layout(run_dir)
    if not need_layout and not images:
        return written
    where = log_dir(run_dir, run_name(result.get("config") or {}, run_dir.resolve().name))
    writer = SummaryWriter(str(where), filename_suffix=".collapsebench-report")
    try:
        if need_layout:
            write_layout(writer, result.get("metrics") or [])
            written["layout"] = True
            # A run without a layout predates it, and so the experience-indexed scalars too.
            matrix = result.get("accuracy_matrix") or []
            for experience in range(len(matrix)):
                write_per_experience(writer, matrix, result.get("metrics") or [], experience)
        if images:
            for experience in image_steps(len(result.get("accuracy_matrix") or [])):
                written["images"][experience] = log_figures(writer, truncated_result(result, experience), experience, run_dir)
    finally:
        writer.close()
    return written


def logdir_spec(run_dirs: Sequence[str | Path]) -> str:
    """``name:path,...`` for ``tensorboard --logdir_spec``, names from the directories' own names, made unique.

    A run directory whose event files lie in one folder (``<run dir>/<run name>/``) is given as
    that folder, so the run is shown as ``name``, not ``name/<run name>``.
    """
    from collapsebench.eventfiles import log_dirs

    used: dict[str, int] = {}
    parts = []
    for path in run_dirs:
        path = Path(path).resolve()
        name = re.sub(r"[:,]", "_", path.name) or "run"
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name}-{used[name]}"
        holders = log_dirs(path)
        parts.append(f"{name}:{holders[0] if len(holders) == 1 else path}")
    return ",".join(parts)


def tensorboard_command(run_dirs: Sequence[str | Path], extra: Sequence[str] = ()) -> list[str]:
    import sys

    # Even one run goes by the name given here, whatever folder its event files lie in.
    return [sys.executable, "-m", "tensorboard.main", "--logdir_spec", logdir_spec(run_dirs), *extra]
