"""A third-party evaluator declares what it produces, and the host ranks, plots and validates it
with no change: the report, TensorBoard's layout, the board's ranking and its validation all read
the declarations (collapsebench/declarations.py). No torch, no training."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest

from collapsebench import declarations
from collapsebench.records import Evaluator, FigureSpec, Metric, Summary
from conftest import REPO

PLUGIN = '''
from matplotlib.figure import Figure

from collapsebench import Evaluator, FigureSpec, Metric, MissingData, Summary, hookimpl


def final_sharpness(run):
    series = run["collapse"].get("sharpness/model/all")
    if not series or series[-1] is None:
        raise ValueError("collapse has no sharpness/model/all series")
    return series[-1]


def draw(runs):
    curves = [run.by_experience("sharpness", "model", "all") for run in runs if run.has("sharpness", "model")]
    if not curves:
        raise MissingData("no run recorded sharpness (add the sharpness evaluator)")
    figure = Figure()
    axis = figure.subplots()
    for curve in curves:
        axis.plot(list(curve), list(curve.values()))
    return figure


@hookimpl
def collapsebench_evaluators():
    return [Evaluator(
        "sharpness", "a made-up sharpness after each experience", lambda context: [],
        metrics=(Metric("sharpness", ("model",), category="loss landscape"),),
        summaries=(Summary("sharpness_final", "sharpness after the last experience", higher_is_better=False,
                           bounds=(0.0, 1.0), recompute=final_sharpness),),
        figures=(FigureSpec("sharpness_curve", "Sharpness", "Sharpness after each experience.", draw),),
    )]
'''


@pytest.fixture()
def plugin(tmp_path):
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    path = tmp_path / "sharpness_plugin.py"
    path.write_text(PLUGIN)
    Registry(build_manager([str(path)]))  # as `--plugin sharpness_plugin.py` does
    yield path
    declarations.reset()  # later tests see only what they load


def test_a_declared_summary_is_ranked_and_bounded(plugin):
    from collapsebench.leaderboard.ranking import METRICS, check_rank, rank_board, ranking_rule
    from collapsebench.stats import metric_interval

    assert METRICS["sharpness_final"] is False and check_rank(["sharpness_final", "average_accuracy"]) == []
    assert "`sharpness_final` lower-is-better" in ranking_rule(("sharpness_final",))
    submissions = [{"name": name, "runs": [{"summary": {"sharpness_final": s, "average_accuracy": a}}]}
                   for name, s, a in (("sharp", 0.9, 0.8), ("flat", 0.1, 0.8), ("worse", 0.5, 0.7))]
    ranked = rank_board(submissions, ("sharpness_final", "average_accuracy"))
    assert [(e.name, e.front) for e in ranked] == [("flat", 1), ("sharp", 2), ("worse", 2)]
    # its declared bounds truncate the seed interval, as they do for the built-in bounded summaries
    assert metric_interval("sharpness_final", [0.0, 0.0, 0.05]).low == 0.0


def test_without_the_plugin_the_summary_is_unknown():
    from collapsebench.leaderboard.ranking import METRICS, check_rank

    declarations.reset()
    assert "sharpness_final" not in METRICS and check_rank(["sharpness_final"])
    assert "capacity_retention" in METRICS  # the installed evaluators' declarations still count


def _with_sharpness(submission, values):
    from collapsebench.leaderboard import hashing

    edited = copy.deepcopy(submission)
    for run, value in zip(edited["runs"], values):
        size = run["stream"]["n_experiences"]
        run["collapse"]["sharpness/model/all"] = [0.5] * (size - 1) + [0.2]
        run["summary"]["sharpness_final"] = value
    edited["content_hash"] = hashing.content_hash(edited)
    return edited


def test_a_declared_summary_is_validated_from_the_stored_series(plugin, tmp_path):
    from collapsebench.leaderboard.submission import build_submission
    from collapsebench.leaderboard.validate import check_submission
    from leaderboard_helpers import track_record, write_runs

    track = track_record()
    submission = build_submission(write_runs(tmp_path / "runs"), author="A. Tester", url=None)
    assert check_submission(_with_sharpness(submission, [0.2, 0.2, 0.2]), track) == []
    wrong = check_submission(_with_sharpness(submission, [0.2, 0.3, 0.2]), track)
    assert [p.split(":")[0] for p in wrong] == ["runs[1].summary.sharpness_final"]
    assert "sharpness evaluator" in wrong[0] and "0.2" in wrong[0]
    outside = check_submission(_with_sharpness(submission, [0.2, 1.5, 0.2]), track)
    assert outside and "outside its bounds [0, 1]" in outside[0]
    # one run reporting a ranked summary means every run must
    missing = _with_sharpness(submission, [0.2, 0.2, 0.2])
    del missing["runs"][2]["summary"]["sharpness_final"]
    from collapsebench.leaderboard import hashing

    missing["content_hash"] = hashing.content_hash(missing)
    assert any(p.startswith("runs[2].summary.sharpness_final: missing") for p in check_submission(missing, track))


def _run(tmp_path, with_sharpness=True):
    from collapsebench.report.runs import Run

    metrics = [{"name": "sharpness", "kind": "model", "layer": "all", "experience": j, "value": 0.5 - 0.1 * j,
                "phase": "end", "iteration": j} for j in range(3)] if with_sharpness else []
    result = {"status": "complete", "config": {"strategy": "naive", "seed": 0}, "stream": {"n_experiences": 3},
              "taps": [], "accuracy_matrix": [[0.9, 0, 0], [0.8, 0.9, 0], [0.7, 0.8, 0.9]], "summary": {},
              "metrics": metrics}
    return Run(tmp_path, result, label="naive")


def test_a_declared_figure_is_drawn_on_the_report_and_its_metric_charted(plugin, tmp_path):
    from collapsebench.report.html import render_figures
    from collapsebench.report.tensorboard import custom_scalars_layout

    rendered = {r.spec.name: r for r in render_figures([_run(tmp_path)])}
    assert rendered["sharpness_curve"].png.startswith(b"\x89PNG")
    missing = {r.spec.name: r for r in render_figures([_run(tmp_path, with_sharpness=False)])}
    assert missing["sharpness_curve"].png is None and "sharpness evaluator" in missing["sharpness_curve"].missing
    layout = custom_scalars_layout(_run(tmp_path).result["metrics"])
    assert list(layout["loss landscape"]) == ["sharpness (model), every layer"]


def test_declarations_are_checked_when_made():
    with pytest.raises(ValueError, match="bounds"):
        Summary("x", "a value", bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="higher_is_better"):
        Summary("x", "a value", higher_is_better="yes")
    with pytest.raises(ValueError, match="summaries must be"):
        Evaluator("e", "an evaluator", lambda context: [], summaries=("x",))
    with pytest.raises(ValueError, match="twice"):
        Evaluator("e", "an evaluator", lambda context: [], metrics=(Metric("m", ("k",)), Metric("m", ("k",))))
    with pytest.raises(ValueError, match="draw"):
        FigureSpec("f", "F", "a caption", draw=None)


# --- no built-in evaluator's name in the host -----------------------------------------------------

#: Where a built-in evaluator's metric or summary name may stay in collapsebench/, and why.
ALLOWED = {
    # the math: the functions that compute these quantities carry their names
    "collapsebench/metrics/",
    # config defaults: the evaluators a run uses when its config names none
    "collapsebench/config.py",
}


def _builtin_names() -> set[str]:
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    registry = Registry(build_manager())
    evaluators = [e.record for e in registry.entries("evaluator") if e.plugin.startswith("builtin_")]
    names = {m.name for e in evaluators for m in e.metrics} | {s.name for e in evaluators for s in e.summaries}
    return names | {s.ranked_as for e in evaluators for s in e.summaries}


def _literals(path: Path):
    """(line, text) of every string literal in the code, docstrings left out (prose may name anything)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def _offenders(names: set[str], root: Path = REPO, allowed: dict[str, set[str]] | None = None) -> list[str]:
    """Literals that are a name, a name's prefix (``"hessian_"``) or a record tag naming it (``"erank/..."``)."""
    allowed = allowed or {}
    found = []
    for path in sorted((root / "collapsebench").rglob("*.py")):
        where = path.relative_to(root).as_posix()
        if any(where.startswith(prefix) for prefix in ALLOWED):
            continue
        for line, text in sorted(_literals(path)):
            for part in re.split(r"[/{}]", text):
                hit = part if part in names else next((n for n in names if part.endswith("_") and n.startswith(part)), None)
                if hit and part not in allowed.get(where, set()):
                    found.append(f"{where}:{line}: {part!r}")
    return found


def test_the_name_scan_sees_a_name(tmp_path):
    assert _builtin_names() >= {"erank", "capacity_retention", "dead_units", "plasticity", "cka"}
    (tmp_path / "collapsebench" / "metrics").mkdir(parents=True)
    (tmp_path / "collapsebench" / "report.py").write_text(
        '"""Docstrings name erank freely."""\nx = 1\nLABELS = {"dead_units": "dead"}  # erank\nTAG = f"{k}/erank/{j}"\n')
    (tmp_path / "collapsebench" / "metrics" / "ranks.py").write_text("def erank(): ...\n")
    assert _offenders({"erank", "dead_units"}, tmp_path) == ["collapsebench/report.py:3: 'dead_units'",
                                                             "collapsebench/report.py:4: 'erank'"]
    assert _offenders({"dead_units"}, tmp_path, {"collapsebench/report.py": {"dead_units"}}) == []


#: Names that remain in the host, per file, each with the reason it still does.
NOT_YET_MOVED: dict[str, set[str]] = {
    # a config default: the board's ranking when a track declares none (accuracy and capacity)
    "collapsebench/leaderboard/ranking.py": {"capacity_retention"},
    # the report's built-in collapse figures and their record readers: still drawn by the host
    "collapsebench/report/figures.py": {"erank", "dead_units", "dormant_units", "hessian_density", "plasticity"},
    "collapsebench/report/runs.py": {"erank", "erank_peak_normalized", "cka"},
    # a study reproduces a paper's figure of one named metric (docs/studies.md)
    "collapsebench/studies/figures.py": {"hessian_erank"},
}


def test_no_built_in_evaluator_name_in_the_host():
    offenders = _offenders(_builtin_names(), REPO, NOT_YET_MOVED)
    assert not offenders, "a built-in evaluator's name in the host:\n" + "\n".join(offenders)


def test_checkpoints_leave_out_what_a_template_mixin_declares_transient():
    from collapsebench import checkpoint

    assert not [name for name in checkpoint.TRANSIENT if name.startswith("_")]  # no one's private cache

    class CachingMixin:  # a third party's template mixin with a cache of its own
        collapsebench_transient = ("_my_cache", "_my_cache_bytes")

    class Template(CachingMixin):
        def __init__(self):
            self.optimizer, self.model = object(), object()
            self._my_cache, self._my_cache_bytes = {}, 0

    assert checkpoint.transient(Template()) == ["optimizer", "_my_cache", "_my_cache_bytes"]
