"""The report page: one self-contained HTML file (images inlined as base64 PNG, no scripts, no
network), with each figure also written as a PNG beside it."""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapsebench.report.figures import FigureSpec, MissingData, all_figures
from collapsebench.report.runs import Run, group_runs
from collapsebench.results import atomic_write_bytes

DPI = 110
#: Longer lists in the summary table are abbreviated.
LIST_SHOWN = 8


@dataclass
class RenderedFigure:
    """A figure of the report as PNG bytes, or the reason it was not drawn."""

    spec: FigureSpec
    png: bytes | None = None
    missing: str | None = None


def figure_png(figure, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def render_figures(runs: Sequence[Run], specs: Sequence[FigureSpec] | None = None) -> list[RenderedFigure]:
    rendered = []
    for spec in all_figures() if specs is None else specs:
        try:
            rendered.append(RenderedFigure(spec, png=figure_png(spec.draw(runs))))
        except MissingData as why:
            rendered.append(RenderedFigure(spec, missing=str(why)))
    return rendered


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if len(value) > LIST_SHOWN:  # per-task series of long streams: the figures show them
            return f"[{len(value)} values: {_format(value[0])}, {_format(value[1])}, …, {_format(value[-1])}]"
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_format(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _runs_table(runs: Sequence[Run]) -> str:
    rows = []
    for run in runs:
        config = run.config
        rows.append([run.label, str(run.path), config.get("stream", "?"), config.get("model", "?"), run.strategy,
                     run.seed, f"{run.status} ({len(run.matrix)}/{run.n_experiences} experiences)"])
    return _table(["label", "run directory", "stream", "architecture", "strategy", "seed", "status"], rows)


def _summary_table(runs: Sequence[Run]) -> str:
    """One row per summary value, one column per group: a table as wide as the strategies
    compared, not as the number of summaries (which outgrew the page)."""
    from collapsebench import stats

    keys = list(dict.fromkeys(key for run in runs for key in run.summary))
    if not keys:
        return "<p class='note'>No run has a summary (a summary needs every experience to finish).</p>"
    groups = {label: [r for r in members if r.summary] for label, members in group_runs(runs).items()}
    groups = {label: members for label, members in groups.items() if members}
    rows = [[key, *(_summary_cell(key, members) for members in groups.values())] for key in keys]
    headers = ["summary", *(f"{label} ({len(members)} seed{'s' if len(members) != 1 else ''})"
                            for label, members in groups.items())]
    note = (f"<p class='meta'>Numbers: {html.escape(stats.label())}, [low, high] where truncated "
            "(collapsebench.stats). Per-experience lists and other non-numbers are shown per seed.</p>")
    return note + f"<div class='wide'>{_table(headers, rows)}</div>"


def _summary_cell(key: str, members: Sequence[Run]) -> str:
    from collapsebench import stats

    values = [run.summary.get(key) for run in members]
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values):
        finite = [v for v in numbers if math.isfinite(v)]
        if not finite:
            return "n/a"
        shown = stats.format_interval(stats.metric_interval(key, finite))
        return shown + (f" ({len(numbers) - len(finite)} n/a)" if len(finite) < len(numbers) else "")
    if len(values) == 1:
        return _format(values[0])
    return "; ".join(f"seed {run.seed}: {_format(v)}" for run, v in zip(members, values))


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.55rem; text-align: left; }
th { background: #f2f2f2; }
td { overflow-wrap: break-word; }
.wide { max-width: 100%; overflow-x: auto; }
figure { margin: 0 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #333; max-width: 900px; margin-top: 0.3rem; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4rem 0.8rem; }
nav ul { columns: 2; }
"""


def build_page(runs: Sequence[Run], rendered: Sequence[RenderedFigure], title: str | None = None) -> str:
    groups = group_runs(runs)
    title = title or ("collapsebench report: " + ", ".join(groups))
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{len(runs)} run(s) in {len(groups)} group(s); generated {generated}. "
        "Runs with the same label are seeds of one configuration: lines show their mean, bands the 95% t-interval over their seeds (the statistic of every table).</p>",
        "<h2>Runs</h2>", _runs_table(runs),
        "<h2>Summary</h2>", _summary_table(runs),
        "<nav><h2>Figures</h2><ul>",
        *(f"<li><a href='#{r.spec.name}'>{html.escape(r.spec.title)}</a>{'' if r.png else ' (not drawn)'}</li>"
          for r in rendered),
        "</ul></nav>",
    ]
    for r in rendered:
        parts.append(f"<section id='{r.spec.name}'><h2>{html.escape(r.spec.title)}</h2>")
        if r.png is None:
            parts.append(f"<p class='note'>Not drawn: {html.escape(r.missing or 'no data')}.</p>")
        else:
            data = base64.b64encode(r.png).decode("ascii")
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(r.spec.title, quote=True)}'>"
                f"<figcaption>{html.escape(r.spec.caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _write(path: Path, payload: bytes) -> None:
    """Atomically, then readable as any new file would be: the temporary file it came from was private."""
    atomic_write_bytes(path, payload)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@dataclass
class ReportFiles:
    page: Path
    images: list[Path]
    missing: dict[str, str]


def write_report(runs: Sequence[Run], output: str | Path, title: str | None = None) -> ReportFiles:
    """Write the page to ``output`` and each drawn figure to ``<output stem>-<figure>.png`` beside it."""
    output = Path(output)
    rendered = render_figures(runs)
    images = []
    for r in rendered:
        if r.png is not None:
            path = output.with_name(f"{output.stem}-{r.spec.name}.png")
            _write(path, r.png)
            images.append(path)
    _write(output, build_page(runs, rendered, title).encode("utf-8"))
    return ReportFiles(output, images, {r.spec.name: r.missing for r in rendered if r.png is None})
