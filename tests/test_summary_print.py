"""What a run prints: rounded values, undefined correlations explained, seeds summarised with intervals."""

import math

from collapsebench.summary import _format, render_seed_summary, render_summary


def _result(seed, accuracy, retention, correlation=0.5):
    return {
        "config": {"seed": seed},
        "accuracy_matrix": [[accuracy]],
        "summary": {"average_accuracy": accuracy, "capacity_retention": retention,
                    "plasticity": [0.9863013698630136, 0.5],
                    "forgetting_erank_correlation": {"pearson": correlation, "spearman": correlation, "n": 4}},
    }


def test_values_print_rounded():
    assert _format([0.9863013698630136, 0.5]) == "[0.9863, 0.5]"
    assert "0.9863013698630136" not in render_summary(_result(0, 0.9863013698630136, 1.0))


def test_undefined_correlation_is_explained():
    text = _format({"pearson": math.nan, "spearman": math.nan, "n": 4})
    assert text.startswith("pearson nan, spearman nan, n 4 (undefined:")
    assert "constant" in text
    assert "undefined" not in _format({"pearson": 0.5, "spearman": 0.4, "n": 4})


def test_seed_summary_is_mean_and_t_interval():
    text = render_seed_summary([_result(0, 0.4, 0.9), _result(1, 0.5, 1.0), _result(2, 0.6, 1.0)])
    assert "mean ± 95% t-interval over 3 seeds" in text
    assert "Summary over seeds 0, 1, 2" in text
    # 0.5 ± t_{0.975,2} * 0.1 / sqrt(3)
    assert "0.500 ± 0.248" in text
    # capacity retention stays inside [0, 1]
    line = next(row for row in text.splitlines() if row.startswith("capacity_retention"))
    assert "[" in line and "1.000]" in line
    assert "forgetting_erank_correlation" not in text  # not a single number per seed
