"""Small statistics helpers: percentiles, medians and latency summaries (seconds in, milliseconds out)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["latency_summary", "median", "percentile"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """The median of the finite values; NaN when there are none."""
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p90, p99 and max of latencies given in seconds, in milliseconds."""
    if not seconds:
        return {
            "count": 0,
            "mean_ms": math.nan,
            "p50_ms": math.nan,
            "p90_ms": math.nan,
            "p99_ms": math.nan,
            "max_ms": math.nan,
        }
    ordered = sorted(seconds)
    return {
        "count": len(ordered),
        "mean_ms": 1000 * statistics.fmean(ordered),
        "p50_ms": 1000 * percentile(ordered, 0.50),
        "p90_ms": 1000 * percentile(ordered, 0.90),
        "p99_ms": 1000 * percentile(ordered, 0.99),
        "max_ms": 1000 * ordered[-1],
    }
