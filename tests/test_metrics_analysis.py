"""Run-level helpers against hand computations."""

import math

import pytest

from collapsebench.metrics import Correlation, capacity_retention, correlate, erank_peak_normalized, pearson, spearman


def test_peak_normalized_erank_uses_the_running_maximum():
    assert erank_peak_normalized([2.0, 4.0, 3.0, 5.0, 1.0]) == pytest.approx([1.0, 1.0, 0.75, 1.0, 0.2])


def test_peak_normalized_erank_is_nan_until_the_layer_has_any_rank():
    got = erank_peak_normalized([0.0, 0.0, 2.0, 1.0])
    assert math.isnan(got[0]) and math.isnan(got[1])
    assert got[2:] == pytest.approx([1.0, 0.5])


def test_capacity_retention_is_the_mean_of_final_over_peak():
    final = {"fc1": 30.0, "fc2": 10.0}
    peak = {"fc1": 40.0, "fc2": 20.0}
    assert capacity_retention(final, peak) == pytest.approx((0.75 + 0.5) / 2)


def test_capacity_retention_counts_the_final_value_as_part_of_the_peak_and_skips_dead_layers():
    assert capacity_retention({"a": 12.0, "b": 0.0}, {"a": 10.0, "b": 0.0}) == pytest.approx(1.0)
    assert math.isnan(capacity_retention({"a": 0.0}, {"a": 0.0}))


def test_capacity_retention_needs_the_same_layers():
    with pytest.raises(ValueError, match="same layers"):
        capacity_retention({"a": 1.0}, {"b": 1.0})


def test_pearson_by_hand():
    x = [1.0, 2.0, 3.0, 4.0]
    y = [2.0, 1.0, 4.0, 3.0]
    # Centred: x' = (-1.5, -0.5, 0.5, 1.5), y' = (-0.5, -1.5, 1.5, 0.5); Σx'y' = 3, Σx'² = Σy'² = 5.
    r, n = pearson(x, y)
    assert (r, n) == (pytest.approx(0.6), 4)
    assert pearson(x, [2 * v + 1 for v in x])[0] == pytest.approx(1.0)
    assert pearson(x, [-v for v in x])[0] == pytest.approx(-1.0)


def test_spearman_is_pearson_of_average_ranks():
    x = [10.0, 20.0, 20.0, 40.0, 100.0]
    y = [1.0, 3.0, 2.0, 5.0, 4.0]
    # Ranks of x with the tie averaged: 1, 2.5, 2.5, 4, 5; of y: 1, 3, 2, 5, 4.
    r, n = spearman(x, y)
    assert n == 5
    assert r == pytest.approx(pearson([1, 2.5, 2.5, 4, 5], [1, 3, 2, 5, 4])[0])
    # Monotone but non-linear: Spearman 1, Pearson below 1.
    grow = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spearman(grow, [v**4 for v in grow])[0] == pytest.approx(1.0)
    assert pearson(grow, [v**4 for v in grow])[0] < 0.99


def test_correlations_drop_non_finite_pairs_and_report_nan_when_undefined():
    x = [1.0, 2.0, math.nan, 3.0, 4.0]
    y = [2.0, 1.0, 7.0, 4.0, math.inf]
    result = correlate(x, y)
    assert isinstance(result, Correlation)
    assert result.n == 3
    assert result.r_pearson == pytest.approx(pearson([1, 2, 3], [2, 1, 4])[0])
    too_few = correlate([1.0, 2.0], [3.0, 4.0])
    assert too_few.n == 2 and math.isnan(too_few.r_pearson) and math.isnan(too_few.r_spearman)
    constant = correlate([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert constant.n == 3 and math.isnan(constant.r_pearson) and math.isnan(constant.r_spearman)


def test_correlations_need_paired_series():
    with pytest.raises(ValueError, match="paired"):
        pearson([1.0, 2.0, 3.0], [1.0, 2.0])
