"""The report on long, sparsely evaluated runs: accuracy on the new task against the task index,
with collapse on the same axis, binned; sparse matrices never feed forgetting."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from report_synthetic import TAPS, dead, long_erank, new_task, online, sparse_result

from collapsebench.report import figures
from collapsebench.report.html import render_figures
from collapsebench.report.runs import Run, complete_matrix, forgetting_and_erank_drop, load_runs, new_task_accuracy


def sparse_run(seed=0, **kwargs) -> Run:
    return Run(path=None, result=sparse_result(seed=seed, **kwargs), label=kwargs.get("strategy", "naive"))


def _expected_bins(fn, n, width):
    xs, ys = [], []
    for start in range(0, n, width):
        tasks = range(start, min(start + width, n))
        xs.append(start + (width - 1) / 2)
        ys.append(sum(fn(i) for i in tasks) / len(tasks))
    return xs, ys


def test_binning_means_consecutive_tasks_at_the_bin_middle():
    assert figures.bin_width(50) == 1 and figures.bin_width(51) == 2 and figures.bin_width(800) == 16
    assert figures.binned({0: 1.0, 1: 3.0, 2: 5.0, 3: math.nan}, 2) == {0.5: 2.0, 2.5: 5.0}
    assert figures.binned({4: 0.5, 5: math.nan}, 1) == {4.0: 0.5}


def test_the_new_task_accuracy_is_the_measured_diagonal():
    run = sparse_run(n_experiences=6)
    assert run.matrix[2][0] != run.matrix[2][0]  # unmeasured cells read as nan
    assert new_task_accuracy(run) == {i: pytest.approx(new_task(i, 6)) for i in range(6)}
    assert complete_matrix(run) is None and forgetting_and_erank_drop(run) == ([], [], [])
    with pytest.raises(figures.MissingData):
        figures.forgetting_vs_erank_drop([run])
    seen = sparse_run(n_experiences=6, protocol="seen")
    assert complete_matrix(seen) is None  # the upper triangle was not measured either


def test_plasticity_figure_bins_seeds_and_shares_the_task_axis():
    n = 120
    width = figures.bin_width(n)
    assert width == 3
    runs = [sparse_run(seed=0, n_experiences=n), sparse_run(seed=2, n_experiences=n)]
    fig = figures.plasticity_over_tasks(runs)
    accuracy_ax, erank_ax, dead_ax = fig.axes
    tested, online_line = accuracy_ax.lines
    assert tested.get_label() == "naive: test, R[i][i]" and online_line.get_linestyle() == "--"
    xs, mean = _expected_bins(lambda i: (new_task(i, n, 0) + new_task(i, n, 2)) / 2, n, width)
    np.testing.assert_allclose(tested.get_xdata(), xs)
    np.testing.assert_allclose(tested.get_ydata(), mean)
    _, online_mean = _expected_bins(lambda i: (online(i, n, 0) + online(i, n, 2)) / 2, n, width)
    np.testing.assert_allclose(online_line.get_ydata(), online_mean)
    band = accuracy_ax.collections[0].get_paths()[0].vertices[:, 1]  # seeds 0 and 2 differ by 0.02
    half = 12.7062 * 0.01  # the 95% t-interval of two seeds 0.02 apart: t_{0.975,1} * (0.02 / sqrt 2) / sqrt 2
    assert band.max() == pytest.approx(max(mean) + half)
    assert band.min() == pytest.approx(min(mean) - half)
    # collapse below, on the same (shared) task axis and the same bins
    assert erank_ax.get_shared_x_axes().joined(accuracy_ax, erank_ax)
    np.testing.assert_allclose(erank_ax.lines[0].get_xdata(), xs)
    peak = {layer: long_erank(layer, 0, n) for layer, _ in TAPS}
    _, erank_mean = _expected_bins(lambda i: sum(long_erank(l, i, n) / peak[l] for l, _ in TAPS) / len(TAPS), n, width)
    np.testing.assert_allclose(erank_ax.lines[0].get_ydata(), erank_mean)
    widths = dict(TAPS)
    _, dead_mean = _expected_bins(lambda i: sum(widths[l] * dead(l, i) / n for l in widths) / sum(widths.values()),
                                  n, width)
    np.testing.assert_allclose(dead_ax.lines[0].get_ydata(), dead_mean)
    assert "mean of each 3 consecutive tasks" in dead_ax.get_xlabel()
    # the synthetic collapse starts at n/3, the accuracy falls from n/2: visible in that order
    first_drop = lambda line, level: next(x for x, y in zip(line.get_xdata(), line.get_ydata()) if y < level)
    assert first_drop(erank_ax.lines[0], 0.99) < first_drop(tested, 0.88)


def test_short_streams_are_not_binned_and_missing_collapse_is_noted():
    run = sparse_run(n_experiences=10, include=(), with_online=False)
    fig = figures.plasticity_over_tasks([run])
    assert len(fig.axes) == 1 and list(fig.axes[0].lines[0].get_xdata()) == list(range(10))
    assert "not recorded: activation erank, dead units" in fig._suptitle.get_text()


def test_plasticity_figure_is_a_note_without_any_accuracy():
    run = sparse_run(n_experiences=4)
    run.result["accuracy_matrix"] = []
    run.result["summary"] = {}
    run.result.pop("online_accuracy")
    with pytest.raises(figures.MissingData, match="right after training"):
        figures.plasticity_over_tasks([run])


def test_a_sparse_run_directory_renders_every_figure_it_can(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps(sparse_result(n_experiences=60)))
    rendered = {r.spec.name: r for r in render_figures(load_runs([directory]))}
    assert rendered["plasticity_over_tasks"].png is not None
    assert rendered["accuracy_matrix"].png is not None  # the measured diagonal, the rest blank
    assert rendered["forgetting_vs_erank_drop"].png is None


def test_long_series_in_the_summary_table_are_abbreviated():
    from collapsebench.report.html import _format

    assert _format([0.5] * 3) == "[0.500, 0.500, 0.500]"
    assert _format([0.1, 0.2] + [0.3] * 797 + [0.25]) == "[800 values: 0.100, 0.200, …, 0.250]"


def test_tensorboard_figures_of_a_long_run_go_to_evenly_spaced_experiences():
    from collapsebench.report.tensorboard import image_steps

    assert image_steps(5) == [0, 1, 2, 3, 4]
    steps = image_steps(800)
    assert len(steps) == 50 and steps[0] == 0 and steps[-1] == 799
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 17
