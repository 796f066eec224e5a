"""Small statistics: percentiles, a slope, and the median/min/max of repetitions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q``-th percentile (0-100) by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(latencies_ms: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    """Return min, p50, p90, p99 and max of latencies in ms, keyed ``<prefix>p50_ms``..."""
    return {
        f"{prefix}min_ms": min(latencies_ms) if latencies_ms else None,
        f"{prefix}p50_ms": percentile(latencies_ms, 50),
        f"{prefix}p90_ms": percentile(latencies_ms, 90),
        f"{prefix}p99_ms": percentile(latencies_ms, 99),
        f"{prefix}max_ms": max(latencies_ms) if latencies_ms else None,
    }


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Return the least-squares slope of ``(x, y)`` points; None with fewer than two x values."""
    if len(points) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def summarize(values: Sequence[Any]) -> dict[str, Any]:
    """Return the median, min and max of the repetitions' numeric values (None ones skipped)."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(numbers),
        "min": min(numbers),
        "max": max(numbers),
        "n": len(numbers),
    }
