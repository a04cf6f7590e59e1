"""The interval arithmetic of the bench report against published t quantiles and hand-computed cases."""

from __future__ import annotations

import math

import pytest

from equireg.bench.stats import (
    Interval,
    format_difference,
    format_mean,
    mean_interval,
    paired_difference,
    t_central_probability,
    t_quantile,
)


@pytest.mark.parametrize("df, expected", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (30, 2.042),
                                          (120, 1.980)])
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_other_levels_and_limits() -> None:
    assert t_quantile(0.995, 5) == pytest.approx(4.032, abs=5e-4)
    assert t_quantile(0.95, 10) == pytest.approx(1.812, abs=5e-4)
    assert t_quantile(0.975, 100_000) == pytest.approx(1.95996, abs=1e-4)  # the normal limit
    assert t_central_probability(0.0, 3) == 0.0
    assert t_central_probability(t_quantile(0.975, 7), 7) == pytest.approx(0.95, abs=1e-10)
    with pytest.raises(ValueError):
        t_quantile(0.4, 3)
    with pytest.raises(ValueError):
        t_central_probability(1.0, 0)


def test_mean_interval_hand_computed() -> None:
    # values 74, 75, 76: mean 75, sd = sqrt(((-1)^2 + 0 + 1^2) / 2) = 1, se = 1/sqrt(3) = 0.57735,
    # t_{0.975,2} = 4.302653, half-width = 4.302653 * 0.57735 = 2.484138 -> [72.515862, 77.484138]
    interval = mean_interval([74.0, 75.0, 76.0])
    assert interval.mean == 75.0 and interval.n == 3
    assert interval.low == pytest.approx(72.515862, abs=1e-5) and interval.high == pytest.approx(77.484138, abs=1e-5)
    assert format_mean(interval) == "75.00 ± 2.48"


def test_paired_difference_hand_computed() -> None:
    # method 77, 78, 80 against baseline 75, 75, 76: per-seed differences 2, 3, 4; mean 3, sd 1,
    # half-width 4.302653 / sqrt(3) = 2.484138 -> [0.515862, 5.484138]: excludes 0, so it is significant
    diff = paired_difference([77.0, 78.0, 80.0], [75.0, 75.0, 76.0])
    assert diff.mean == pytest.approx(3.0)
    assert diff.low == pytest.approx(0.515862, abs=1e-5) and diff.high == pytest.approx(5.484138, abs=1e-5)
    assert diff.significant and format_difference(diff) == "**+3.00 [+0.52, +5.48]**"
    # differences 1, 2, 3: the same width around 2 -> [-0.484138, 4.484138] contains 0: printed n.s., not bold
    ns = paired_difference([76.0, 77.0, 79.0], [75.0, 75.0, 76.0])
    assert not ns.significant and format_difference(ns) == "+2.00 [\u22120.48, +4.48] n.s."
    # unpaired, the same numbers would not be distinguishable: pairing is what removes the shared seed noise
    assert mean_interval([77.0, 78.0, 80.0]).low < mean_interval([75.0, 75.0, 76.0]).high


def test_identical_arms_give_a_zero_width_zero_difference() -> None:
    diff = paired_difference([75.1, 80.2, 77.3], [75.1, 80.2, 77.3])
    assert diff.mean == 0.0 and diff.low == 0.0 and diff.high == 0.0 and diff.half_width == 0.0
    assert not diff.significant and format_difference(diff) == "+0.00 [+0.00, +0.00] n.s."


def test_single_seed_has_no_interval() -> None:
    single = mean_interval([75.1])
    assert single.low is None and single.half_width is None and not single.significant
    assert format_mean(single) == "75.10 (n=1)"
    assert format_difference(paired_difference([76.0], [75.5])) == "+0.50 (n=1)"
    assert format_mean(None) == "–" and format_difference(None) == "–"
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        mean_interval([])
    assert Interval(-1.0, 3, -2.0, -0.5).significant and not math.isnan(Interval(1.0, 1).mean)
