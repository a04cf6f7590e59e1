"""Confidence intervals over seeds: Student-t intervals for a mean and for paired differences.

The bench compares methods trained with the same seeds, so the question "does SER beat the baseline?" is
answered by the per-seed differences (method − baseline, same objective, seed and budget) and a t-interval on
their mean. Pairing removes the variance the two arms share (data order, initialisation, views), which is most
of it at small budgets.

The t quantile is computed exactly from the closed-form CDF of Student's t for integer degrees of freedom
(Abramowitz & Stegun 26.7.3-4) and bisection, so no SciPy is needed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


def t_central_probability(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (integer >= 1) degrees of freedom, by the finite series."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:  # odd: 2/pi * (theta + sin(theta) * (cos + 2/3 cos^3 + 2*4/(3*5) cos^5 + ...))
        term, series = math.cos(theta), 0.0
        for k in range(1, (df - 1) // 2 + 1):
            series += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        return 2.0 / math.pi * (theta + math.sin(theta) * series)
    # even: sin(theta) * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
    term, series = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        series += term
        term *= cos2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * series


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile (> 0.5) of Student's t, e.g. ``t_quantile(0.975, 4) == 2.776...``."""
    if not 0.5 < probability < 1.0:
        raise ValueError(f"probability must be in (0.5, 1), got {probability}")
    central = 2.0 * probability - 1.0
    low, high = 0.0, 1.0
    while t_central_probability(high, df) < central:
        high *= 2.0
    for _ in range(200):  # bisection to machine precision
        mid = 0.5 * (low + high)
        if t_central_probability(mid, df) < central:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval; ``low``/``high`` are None when n < 2."""

    mean: float
    n: int
    low: float | None = None
    high: float | None = None

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (only meaningful for differences)."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean ± t_{(1+c)/2, n-1} · sd / √n over ``values`` (no interval for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_interval needs at least one value")
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return Interval(mean, 1)
    half = t_quantile((1 + confidence) / 2, len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
    return Interval(mean, len(vals), mean - half, mean + half)


def paired_difference(method: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The t-interval of the mean per-seed difference ``method[i] - baseline[i]`` (lists aligned by seed)."""
    if len(method) != len(baseline):
        raise ValueError(f"paired values need the same seeds: {len(method)} vs {len(baseline)} values")
    return mean_interval([m - b for m, b in zip(method, baseline)], confidence)


def _signed(value: float, digits: int) -> str:
    text = f"{value:+.{digits}f}"
    return text.replace("-", "\u2212")


def format_mean(interval: Interval | None, digits: int = 2) -> str:
    """``75.10 ± 1.23`` (± = the CI half-width), ``75.10 (n=1)``, or ``–`` when there is no value."""
    if interval is None:
        return "–"
    if interval.half_width is None:
        return f"{interval.mean:.{digits}f} (n=1)"
    return f"{interval.mean:.{digits}f} ± {interval.half_width:.{digits}f}"


def format_difference(interval: Interval | None, digits: int = 2, bold: bool = True) -> str:
    """``+0.40 [−0.80, +1.60] n.s.``; an interval that excludes 0 is bolded (markdown) when ``bold``."""
    if interval is None:
        return "–"
    if interval.low is None or interval.high is None:
        return f"{_signed(interval.mean, digits)} (n=1)"
    text = f"{_signed(interval.mean, digits)} [{_signed(interval.low, digits)}, {_signed(interval.high, digits)}]"
    if not interval.significant:
        return text + " n.s."
    return f"**{text}**" if bold else text
