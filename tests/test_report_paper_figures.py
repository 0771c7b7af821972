"""The report's paper figures: the average-accuracy curve, the ranked-metrics bars, the
plasticity panel, fixed [0, 1] axes for normalized values, and one colour per strategy."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex
from report_synthetic import BEHAVIOUR, synthetic_result

from collapsebench import stats
from collapsebench.report import figures
from collapsebench.report.runs import Run


def runs_of(*strategies, seeds=(0, 1, 2), **extra_summary):
    runs = []
    for strategy in strategies:
        for seed in seeds:
            # Labels of the synthetic data set's strategies; any other name borrows naive's data.
            result = synthetic_result(strategy=strategy if strategy in BEHAVIOUR else "naive", seed=seed)
            result["summary"].update({k: (v(seed) if callable(v) else v) for k, v in extra_summary.items()})
            runs.append(Run(path=None, result=result, label=strategy))
    return runs


def test_average_accuracy_curve_is_the_mean_over_seen_experiences():
    runs = runs_of("naive", "replay")
    fig = figures.average_accuracy_curve(runs)
    (ax,) = fig.axes
    naive = next(line for line in ax.lines if line.get_label() == "naive")
    expected = np.mean([[np.mean(r.matrix[i][: i + 1]) for i in range(4)] for r in runs if r.label == "naive"], axis=0)
    np.testing.assert_allclose(naive.get_ydata(), expected)
    np.testing.assert_array_equal(naive.get_xdata(), [0, 1, 2, 3])
    assert ax.get_ylim() == (0.0, 1.0)
    assert len(ax.collections) == 2  # a seed band per strategy


def test_ranked_metrics_bars_are_seed_means_with_t_intervals():
    retention = {0: 0.99, 1: 0.97, 2: 0.995}
    runs = runs_of("naive", "replay", capacity_retention=lambda seed: retention[seed])
    fig = figures.ranked_metrics(runs)
    panels = {ax.get_ylabel(): ax for ax in fig.axes if ax.get_visible()}
    ax = next(a for label, a in panels.items() if label.startswith("capacity retention"))
    assert "higher is better" in ax.get_ylabel()
    bars = [patch for patch in ax.patches]
    assert [b.get_height() for b in bars] == pytest.approx([np.mean(list(retention.values()))] * 2)
    estimate = stats.interval(list(retention.values()), bounds=(0.0, 1.0))
    (segments,) = [c.get_segments() for c in ax.collections][:1]
    low, high = segments[0][0][1], segments[0][1][1]
    assert (low, high) == pytest.approx((estimate.low, estimate.high))
    assert high <= 1.0  # truncated to the metric's bounds
    assert ax.get_ylim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["naive", "replay"]
    assert "95% t-interval" in fig._suptitle.get_text()


def test_ranked_metrics_need_a_rankable_summary():
    run = Run(path=None, result={**synthetic_result(finished=2), "summary": {}}, label="naive")
    with pytest.raises(figures.MissingData):
        figures.ranked_metrics([run])


def test_plasticity_panel_appears_when_measured():
    plain = figures.plasticity_over_tasks(runs_of("naive"))
    measured = figures.plasticity_over_tasks(runs_of("naive", plasticity=[1.0, 0.9, 0.8, 0.7]))
    assert len(measured.axes) == len(plain.axes) + 1
    ax = measured.axes[-1]
    assert "fresh network" in ax.get_ylabel()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, 0.9, 0.8, 0.7])


def test_normalized_values_are_drawn_on_fixed_axes():
    fig = figures.weight_erank(runs_of("naive"))
    normalized = [ax for ax in fig.axes if "running peak" in ax.get_ylabel()]
    assert normalized and all(ax.get_ylim() == (0.0, 1.05) for ax in normalized)
    units = figures.dead_and_dormant_units(runs_of("naive"))
    assert all(ax.get_ylim() == (0.0, 1.0) for ax in units.axes)


def test_a_strategy_keeps_its_colour_across_figures_and_reports():
    alone = figures._colors(runs_of("replay", seeds=(0,)))
    together = figures._colors(runs_of("naive", "replay", "ewc", seeds=(0,)))
    assert alone["replay"] == together["replay"] == figures.color_of("replay")
    assert figures.color_of("naive") == figures.color_of("naive")
    fig = figures.average_accuracy_curve(runs_of("naive", "replay", seeds=(0,)))
    line = next(line for line in fig.axes[0].lines if line.get_label() == "replay")
    assert to_hex(line.get_color()) == figures.color_of("replay")


def test_names_that_hash_alike_still_get_different_colours():
    by_colour: dict[str, str] = {}
    for k in range(200):  # find two names that share a slot
        name = f"s{k}"
        if figures.color_of(name) in by_colour:
            first, second = by_colour[figures.color_of(name)], name
            break
        by_colour[figures.color_of(name)] = name
    colours = figures._colors(runs_of(first, second, seeds=(0,)))
    assert colours[first] != colours[second]
    assert colours[min(first, second)] == figures.color_of(min(first, second))


def test_hessian_density_keeps_to_four_columns_and_four_decades():
    runs = [Run(path=None, result=synthetic_result(strategy="naive", seed=0, n_experiences=10), label="naive")]
    fig = figures.hessian_density(runs)
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 4  # evenly spaced boundaries, the last experience included
    low, high = panels[0].get_ylim()
    peak = max(float(np.max(line.get_ydata())) for ax in panels for line in ax.lines)
    assert high == pytest.approx(3 * peak) and low == pytest.approx(peak * 1e-4)
    assert sum(bool(ax.get_legend()) for ax in panels) == 1  # one legend for the row


def test_summary_table_has_a_row_per_summary_and_a_column_per_strategy():
    import re

    from collapsebench.report.html import build_page

    runs = runs_of("naive", "replay", capacity_retention=lambda seed: 0.9 + 0.04 * seed)
    page = build_page(runs, [])
    table = page.split("<h2>Summary</h2>", 1)[1].split("</table>", 1)[0]
    headers = re.findall(r"<th>(.*?)</th>", table)
    assert headers == ["summary", "naive (3 seeds)", "replay (3 seeds)"]
    rows = {cells[0]: cells[1:] for cells in (re.findall(r"<td>(.*?)</td>", row) for row in table.split("<tr>")[2:])}
    assert set(rows) >= {"average_accuracy", "forgetting", "capacity_retention"}
    expected = stats.format_interval(stats.metric_interval("capacity_retention", [0.9, 0.94, 0.98]))
    assert rows["capacity_retention"] == [expected, expected]
    assert "95% t-interval" in page.split("<h2>Summary</h2>", 1)[1].split("<table>", 1)[0]
