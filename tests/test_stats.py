"""The seed statistic: closed-form t quantiles, a known sample, and bounded metrics."""

import math

import pytest

from collapsebench.stats import format_interval, interval, label, metric_interval, t_quantile_975


def test_t_quantiles_match_closed_forms():
    # df = 1 is the Cauchy distribution, df = 2 has an algebraic quantile function
    assert t_quantile_975(1) == pytest.approx(math.tan(math.pi * 0.475), abs=1e-4)
    p = 0.975
    assert t_quantile_975(2) == pytest.approx((2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), abs=1e-4)
    # the expansion beyond the table approaches the normal quantile from above
    assert 1.96 < t_quantile_975(1000) < t_quantile_975(31) < t_quantile_975(30)
    assert t_quantile_975(31) == pytest.approx(2.0395, abs=1e-4)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_known_small_sample():
    value = interval([1.0, 2.0, 3.0])  # mean 2, sd 1
    assert value.mean == 2.0
    assert value.half_width == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert (value.low, value.high) == pytest.approx((2 - 2.48417, 2 + 2.48417), abs=1e-4)
    assert not value.truncated
    assert format_interval(value) == "2.000 ± 2.484"


def test_single_seed_has_no_interval():
    value = interval([0.5])
    assert value.half_width is None and value.low is None
    assert format_interval(value) == "0.500"


def test_bounded_metric_stays_inside_its_bounds():
    values = [0.85, 1.0, 1.0]
    raw = interval(values)
    assert raw.high > 1.0  # the plain interval leaves [0, 1]
    bounded = metric_interval("capacity_retention", values)
    assert bounded.mean == raw.mean and bounded.low == raw.low and bounded.high == 1.0
    assert bounded.truncated
    assert format_interval(bounded) == f"{raw.mean:.3f} [{raw.low:.3f}, 1.000]"
    dead = metric_interval("dead_units", [0.0, 0.0, 0.02])
    assert dead.low == 0.0 and 0.0 < dead.high < 1.0
    # an unbounded metric is left alone
    assert metric_interval("plasticity_retention", values).high > 1.0


def test_overlap_and_labels():
    a, b, c = interval([0.1, 0.2, 0.3]), interval([0.25, 0.3, 0.35]), interval([5.0, 5.1, 5.2])
    assert a.overlaps(b) and b.overlaps(a) and not a.overlaps(c)
    assert interval([0.2]).overlaps(a) and not interval([9.0]).overlaps(a)
    assert label(3).startswith("mean ± 95% t-interval over 3 seeds")
    assert "over 1 seed " in label(1)
    assert "over 2-5 seeds" in label([5, 2, 3])


def test_messages_pluralise_the_head_noun():
    from collapsebench.errors import plural, unknown_name_error

    assert plural("strategy") == "strategies" and plural("stream") == "streams" and plural("key") == "keys"
    assert plural("option of 'replay'") == "options of 'replay'" and plural("grid axis") == "grid axes"
    assert plural("plugin to disable") == "plugins to disable" and plural("config key") == "config keys"
    message = str(unknown_name_error("strategy", "naiv", ["naive", "replay"]))
    assert "Available strategies: naive, replay" in message and "strategys" not in message
