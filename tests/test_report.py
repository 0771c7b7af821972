"""The report: figure contents against closed forms, the page's self-containment, the command."""

from __future__ import annotations

import base64
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from report_synthetic import TAPS, accuracy, activation_erank, cka, dead, dormant, synthetic_result, write_run
from scipy import stats

from collapsebench.report import figures
from collapsebench.report.html import build_page, render_figures, write_report
from collapsebench.report.runs import Run, forgetting_and_erank_drop, load_runs


def make_run(label="naive", **kwargs) -> Run:
    kwargs.setdefault("strategy", label)
    return Run(path=None, result=synthetic_result(**kwargs), label=label)


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    dirs = [write_run(base / f"{s}{seed}", strategy=s, seed=seed) for s in ("naive", "replay") for seed in (0, 1)]
    return load_runs(dirs)


def test_runs_are_labelled_by_strategy_unless_benchmarks_differ(tmp_path):
    a = write_run(tmp_path / "a", strategy="naive")
    b = write_run(tmp_path / "b", strategy="replay")
    assert [r.label for r in load_runs([a, b])] == ["naive", "replay"]
    other = synthetic_result(strategy="naive")
    other["config"]["model"] = "resnet18"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text(json.dumps(other))
    labels = [r.label for r in load_runs([a, tmp_path / "c"])]
    assert labels == ["split-digits · mlp · naive", "split-digits · resnet18 · naive"]


def test_forgetting_and_erank_drop_closed_form():
    run = make_run("replay")
    experiences, drops, forgetting = forgetting_and_erank_drop(run)
    size = 4

    def normalized(layer, e):
        return activation_erank("replay", layer, e) / max(activation_erank("replay", layer, u) for u in range(e + 1))

    assert normalized("fc1", 0) == 1.0 and normalized("fc1", 1) == 1.0 and normalized("fc1", 3) < 1.0
    expected_drops = [sum(normalized(layer, j) - normalized(layer, size - 1) for layer, _ in TAPS) / len(TAPS)
                      for j in range(size - 1)]
    assert experiences == [0, 1, 2]
    assert drops == pytest.approx(expected_drops)
    expected = [max(accuracy("replay", i, j) for i in range(size - 1)) - accuracy("replay", size - 1, j) for j in range(3)]
    assert forgetting == pytest.approx(expected)


def test_forgetting_needs_a_complete_run():
    assert forgetting_and_erank_drop(make_run("naive", finished=2)) == ([], [], [])
    with pytest.raises(figures.MissingData):
        figures.forgetting_vs_erank_drop([make_run("naive", finished=2)])


def test_accuracy_heatmap_shows_the_mean_over_seeds():
    runs = [make_run("naive", seed=0), make_run("naive", seed=1), make_run("replay", seed=0)]
    fig = figures.accuracy_matrix(runs)
    naive_axes, replay_axes = [ax for ax in fig.axes if ax.images]
    expected = np.array([[(accuracy("naive", i, j, 0) + accuracy("naive", i, j, 1)) / 2 for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(naive_axes.images[0].get_array().filled(np.nan), expected)
    assert naive_axes.get_title() == "naive (2 seeds)" and replay_axes.get_title() == "replay"


def test_partial_run_leaves_unrun_rows_blank():
    fig = figures.accuracy_matrix([make_run("naive", finished=2)])
    shown = fig.axes[0].images[0].get_array()
    assert not shown.mask[:2].any() and shown.mask[2:].all()


def test_erank_figure_peak_normalizes_when_not_recorded():
    run = make_run("naive")
    fig = figures.activation_erank([run])
    by_title = {ax.get_ylabel(): ax for ax in fig.axes}
    norm_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("erank / running peak")]
    raw = [activation_erank("naive", "fc1", e) for e in range(4)]
    expected = [v / max(raw[: k + 1]) for k, v in enumerate(raw)]
    assert expected[-1] < 1.0
    np.testing.assert_allclose(norm_axes[0].lines[0].get_ydata(), expected)
    assert "fc1\nerank (dimensions)" in by_title and "fc2\nerank (dimensions)" in by_title


def test_recorded_peak_normalization_is_preferred():
    run = make_run("naive")
    for record in list(run.records):
        if record["name"] == "erank" and record["kind"] == "weight":
            run.records.append({**record, "name": "erank_peak_normalized", "value": 0.5})
    norm_axes = [ax for ax in figures.weight_erank([run]).axes if ax.get_ylabel().startswith("erank / running peak")]
    np.testing.assert_allclose(norm_axes[0].lines[0].get_ydata(), [0.5] * 4)


def test_seed_band_is_the_95_percent_t_interval():
    runs = [make_run("naive", seed=0), make_run("naive", seed=3)]
    ax = next(ax for ax in figures.activation_erank(runs).axes if ax.get_ylabel() == "fc1\nerank (dimensions)")
    mean = [(activation_erank("naive", "fc1", e, 0) + activation_erank("naive", "fc1", e, 3)) / 2 for e in range(4)]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), mean)
    band = ax.collections[0].get_paths()[0].vertices
    # two seeds 3 apart: sd 3 / sqrt(2), half-width t_{0.975,1} * sd / sqrt(2) = 12.7062 * 1.5
    half = 12.7062 * 1.5
    assert band[:, 1].min() == pytest.approx(min(mean) - half)
    assert band[:, 1].max() == pytest.approx(max(mean) + half)
    assert "95% t-interval" in figures.BAND_CAPTION


def test_forgetting_figure_reports_correlations_an_independent_implementation_agrees_with():
    runs = [make_run("naive", seed=0), make_run("naive", seed=1), make_run("replay")]
    fig = figures.forgetting_vs_erank_drop(runs)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for label, members in (("naive", runs[:2]), ("replay", runs[2:])):
        xs = [x for r in members for x in forgetting_and_erank_drop(r)[1]]
        ys = [y for r in members for y in forgetting_and_erank_drop(r)[2]]
        pearson, spearman = stats.pearsonr(xs, ys)[0], stats.spearmanr(xs, ys)[0]
        text = next(t for t in legend if t.startswith(label + ":"))
        assert f"Pearson r = {pearson:.2f}" in text and f"Spearman ρ = {spearman:.2f}" in text
        assert f"(n = {len(xs)})" in text


def test_cka_heatmaps_hold_the_recorded_values():
    fig = figures.cka_by_layer([make_run("naive")])
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == [f"naive: inputs of experience {j}" for j in range(3)]
    for probe, ax in enumerate(panels):
        later = list(range(probe + 1, 4))
        expected = np.array([[cka(index, probe, i) for i in later] for index in range(len(TAPS))])
        np.testing.assert_allclose(ax.images[0].get_array().filled(np.nan), expected)
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in later]


def test_cka_probe_experience_may_come_from_the_kind_or_the_data():
    for variant in ("kind only", "data only"):
        run = make_run("naive")
        for record in run.records:
            if record["name"] == "cka":
                if variant == "kind only":
                    record.pop("data")
                else:
                    record["kind"] = "representation"
        panels = [ax for ax in figures.cka_by_layer([run]).axes if ax.images]
        assert [ax.get_title() for ax in panels] == [f"naive: inputs of experience {j}" for j in range(3)], variant
        np.testing.assert_allclose(panels[0].images[0].get_array().filled(np.nan)[:, 0], [cka(0, 0, 1), cka(1, 0, 1)])


def test_hessian_density_prefers_the_whole_model_block():
    run = make_run("naive")
    per_layer = [{**r, "kind": "layer", "layer": "fc1", "data": {"nodes": [100.0, 200.0], "weights": [0.5, 0.5]}}
                 for r in run.records if r["name"] == "hessian_density"]
    run.records[:0] = per_layer  # first in the file, still not chosen
    ax = next(ax for ax in figures.hessian_density([run]).axes if ax.lines)
    assert ax.lines[0].get_xdata().max() < 100
    for record in run.records:  # the format named kind "hessian", layer "model" works the same
        if record["name"] == "hessian_density" and record["kind"] == "model":
            record["kind"], record["layer"] = "hessian", "model"
    ax = next(ax for ax in figures.hessian_density([run]).axes if ax.lines)
    assert ax.lines[0].get_xdata().max() < 100


def test_hessian_density_curves_are_densities_and_pair_end_with_next_start():
    fig = figures.hessian_density([make_run("naive")])
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 4  # boundaries 0→1, 1→2, 2→3, and the end of 3
    for t, ax in enumerate(panels):
        styles = {line.get_label(): line.get_linestyle() for line in ax.lines}
        expected = {f"end of {t}": "-"} if t == 3 else {f"end of {t}": "-", f"start of {t + 1}": "--"}
        assert styles == expected
        for line in ax.lines:  # smoothed point masses with weights summing to 1 integrate to 1
            x, y = line.get_xdata(), line.get_ydata()
            assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.02)


def test_dead_and_dormant_units_are_width_weighted_over_layers():
    fig = figures.dead_and_dormant_units([make_run("naive")])
    dead_ax, dormant_ax = fig.axes
    widths = dict(TAPS)
    for ax, fn in ((dead_ax, dead), (dormant_ax, dormant)):
        expected = [sum(widths[layer] * fn(layer, e) for layer in widths) / sum(widths.values()) for e in range(4)]
        np.testing.assert_allclose(ax.lines[0].get_ydata(), expected)


def test_every_figure_is_titled_and_labelled(four_runs):
    for spec in figures.all_figures():  # the evaluators' declared figures keep the same conventions
        fig = spec.draw(four_runs)
        assert fig._suptitle is not None and fig._suptitle.get_text(), spec.name
        assert spec.caption.endswith(".") and spec.caption.count(". ") == 0, spec.name  # one sentence
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            if ax.get_label() == "<colorbar>":
                assert ax.get_ylabel(), f"{spec.name}: colorbar without a label"
                continue
            assert ax.get_xlabel() or ax.get_subplotspec().rowspan.stop < ax.get_subplotspec().get_gridspec().nrows, spec.name
            assert ax.get_ylabel() or ax.get_subplotspec().colspan.start > 0, spec.name
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert not label or "(" in label, f"{spec.name}: {label!r} names no unit"


def test_missing_data_becomes_a_note_not_an_error():
    run = make_run("naive", include=())
    rendered = {r.spec.name: r for r in render_figures([run])}
    assert rendered["accuracy_matrix"].png is not None
    for name in ("weight_erank", "activation_erank", "forgetting_vs_erank_drop", "cka_by_layer",
                 "hessian_density", "dead_and_dormant_units", "hessian_density_over_tasks"):
        assert rendered[name].png is None and rendered[name].missing
    page = build_page([run], list(rendered.values()))
    assert page.count("class='note'>Not drawn:") == 7
    assert "add the hessian evaluator" in page


def test_page_is_self_contained_and_pngs_match(tmp_path, four_runs):
    previous = os.umask(0o022)
    try:
        files = write_report(four_runs, tmp_path / "out" / "page.html")
    finally:
        os.umask(previous)
    page = files.page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page), "the page must not reach the network"
    assert "<script" not in page
    embedded = [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]
    drawn = figures.all_figures()  # the report's own and the loaded evaluators' declared figures
    assert len(embedded) == len(drawn) == len(files.images)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in embedded)
    assert sorted(embedded) == sorted(p.read_bytes() for p in files.images)
    assert {p.name for p in files.images} == {f"page-{spec.name}.png" for spec in drawn}
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in [files.page, *files.images])  # others may read (umask 022)
    for spec in drawn:
        assert f"<figcaption>{spec.caption}</figcaption>" in page.replace("&#x27;", "'")


def test_report_command_writes_page_beside_a_single_run(tmp_path, cli):
    run_dir = write_run(tmp_path / "run", strategy="naive", include=("erank",))
    code, out, _ = cli("report", run_dir)
    assert code == 0
    assert (run_dir / "report.html").exists() and (run_dir / "report-accuracy_matrix.png").exists()
    assert "not drawn: hessian_density" in out
    assert not (run_dir / "report-hessian_density.png").exists()


def test_report_command_names_a_missing_run_directory(tmp_path, cli):
    code, _, err = cli("report", tmp_path / "nowhere")
    assert code == 2 and "No such run directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("report", tmp_path / "empty")
    assert code == 2 and "results.json" in err


def test_non_finite_values_are_skipped_not_plotted():
    run = make_run("naive")
    for record in run.records:
        if record["name"] == "erank" and record["kind"] == "activation" and record["experience"] == 2:
            record["value"] = None
    ax = next(ax for ax in figures.activation_erank([run]).axes if ax.get_ylabel() == "fc1\nerank (dimensions)")
    assert list(ax.lines[0].get_xdata()) == [0, 1, 3]
    assert all(math.isfinite(v) for v in ax.lines[0].get_ydata())


REAL_RUNS = [Path(__file__).parent / "fixtures" / "report" / name for name in ("naive", "replay")]


def test_real_runs_draw_every_figure_and_agree_with_the_summary():
    # results.json of real runs (split-digits, MLP, 3 epochs; evaluators weights, activations, hessian, cka)
    runs = load_runs(REAL_RUNS)
    assert [r.spec.name for r in render_figures(runs) if r.png is None] == []
    legend = [t.get_text() for t in figures.forgetting_vs_erank_drop(runs).axes[0].get_legend().get_texts()]
    for run, text in zip(runs, legend):
        recorded = run.summary["forgetting_erank_correlation"]
        assert f"(n = {recorded['n']})" in text
        for key, symbol in (("pearson", "r"), ("spearman", "ρ")):
            shown = "n/a" if recorded[key] is None else f"{recorded[key]:.2f}"
            assert f"{symbol} = {shown}" in text, (run.label, key, text)
