"""Latency summaries: nearest-rank percentiles over samples in seconds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec


class Summary(msgspec.Struct, frozen=True):
    """Latency of `count` operations, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


EMPTY = Summary(0, math.nan, math.nan, math.nan, math.nan)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank `q` percentile (0-100) of already sorted samples."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: Sequence[float]) -> Summary:
    """Summarize latencies given in seconds."""
    if not samples:
        return EMPTY
    ordered = sorted(samples)
    return Summary(
        count=len(ordered),
        p50_ms=percentile(ordered, 50) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
        max_ms=ordered[-1] * 1000,
        mean_ms=sum(ordered) / len(ordered) * 1000,
    )


def ratio(value: float, baseline: float) -> float:
    """value / baseline, NaN when the baseline is zero."""
    return value / baseline if baseline else math.nan
