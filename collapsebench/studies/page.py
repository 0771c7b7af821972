"""``study report``: the claims' verdicts and the study's figures, as ``claims.json`` and a page.

The page reuses the report's figure rendering and page styling (collapsebench.report.html)."""

from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path

from collapsebench.errors import CollapsebenchError
from collapsebench.results import RESULTS_FILE, write_json
from collapsebench.studies.jobs import STUDY_FILE


def describe_only(only: dict[str, list]) -> str:
    """``{"streams": ["split-mnist"]}`` as ``streams = split-mnist``."""
    return "; ".join(f"{axis} = {', '.join(map(str, values))}" for axis, values in only.items())

CLAIMS_FILE = "claims.json"
PAGE_FILE = "report.html"


def read_manifest(directory: Path) -> dict:
    try:
        manifest = json.loads((Path(directory) / STUDY_FILE).read_text())
    except FileNotFoundError:
        raise CollapsebenchError(f"{directory} holds no {STUDY_FILE}: give the --out directory of a "
                                 "`collapsebench study run`.") from None
    except ValueError as exc:
        raise CollapsebenchError(f"{Path(directory) / STUDY_FILE} is not valid JSON: {exc}.") from None
    return manifest


def study_runs(directory: Path, manifest: dict):
    """The complete runs of the study's grid (the others are counted, not used)."""
    from collapsebench.report.runs import load_runs

    paths = [Path(p) for p in manifest["run_dirs"]]
    # The directory may have moved since the run: run directories are stored absolute, so
    # fall back to the same layout under the directory given.
    paths = [p if p.exists() else Path(directory) / Path(*p.parts[-4:]) for p in paths]
    complete = []
    for path in paths:
        try:
            status = json.loads((path / RESULTS_FILE).read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            continue
        if status == "complete":
            complete.append(path)
    if not complete:
        raise CollapsebenchError(f"No run of the study in {directory} is complete: `collapsebench study run` it first.")
    runs = load_runs(complete)
    return runs, len(paths)


def evaluate_study(study, runs) -> list:
    from collapsebench.studies.checks import evaluate

    return [evaluate(claim, runs) for claim in study.claims]


def _verdict_rows(verdicts) -> str:
    from collapsebench.report.html import _table

    rows = []
    for v in verdicts:
        d = v.to_dict()
        interval = "–" if d["low"] is None else f"[{d['low']:.3f}, {d['high']:.3f}]"
        rows.append([d["claim"], d["text"], f"{d['statistic']} {d['direction']} {d['threshold']:g}",
                     d["estimate"], interval, d["interval_method"], d["verdict"], d["reason"]])
    return _table(["claim", "what it says", "check", "measured", "95% interval", "interval", "verdict", "why"], rows)


def write_study_report(directory: str | Path, study, output: str | Path | None = None):
    from collapsebench.report.html import STYLE, _write, render_figures
    from collapsebench.studies.figures import specs

    directory = Path(directory)
    manifest = read_manifest(directory)
    runs, planned = study_runs(directory, manifest)
    verdicts = evaluate_study(study, runs)
    only = manifest.get("only") or {}
    write_json(directory / CLAIMS_FILE, {
        "study": study.name, "quick": manifest.get("quick"), "complete_runs": len(runs), "planned_runs": planned,
        "only": only, "claims": [v.to_dict() for v in verdicts],
    })
    rendered = render_figures(runs, specs(study.figures))
    title = f"collapsebench study: {study.name}{' (quick)' if manifest.get('quick') else ''}"
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    passed = sum(v.passed for v in verdicts)
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{html.escape(study.meta.get('paper', ''))} · {len(runs)} of {planned} runs complete · "
             f"{passed} of {len(verdicts)} claims pass · generated {generated}</p>",
             f"<p>{html.escape(study.description)}</p>"]
    if only:
        parts.append("<p class='note'><b>Part of the grid:</b> only " + html.escape(describe_only(only))
                     + f" ran (<code>study run --only</code>); the whole {'quick ' if manifest.get('quick') else ''}"
                     f"grid has {study.grid(bool(manifest.get('quick'))).n_runs} runs. The claims are checked "
                     "on this part alone.</p>")
    for key, heading in (("quick_leaves_out", "What the quick version leaves out"), ("not_covered", "Not covered")):
        if study.meta.get(key):
            parts.append(f"<p class='note'><b>{heading}:</b> {html.escape(study.meta[key])}</p>")
    parts += ["<h2>Claims</h2>", _verdict_rows(verdicts)]
    for r in rendered:
        parts.append(f"<section id='{r.spec.name}'><h2>{html.escape(r.spec.title)}</h2>")
        if r.png is None:
            parts.append(f"<p class='note'>Not drawn: {html.escape(r.missing or 'no data')}.</p>")
        else:
            data = base64.b64encode(r.png).decode("ascii")
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(r.spec.title, quote=True)}'>"
                         f"<figcaption>{html.escape(r.spec.caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    page = Path(output) if output else directory / PAGE_FILE
    for r in rendered:
        if r.png is not None:
            _write(page.with_name(f"{page.stem}-{r.spec.name}.png"), r.png)
    _write(page, ("\n".join(parts) + "\n").encode("utf-8"))
    return page, verdicts, len(runs), planned
