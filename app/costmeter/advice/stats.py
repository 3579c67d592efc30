"""Small statistics the rules share: percentiles, stretches, confidence, evidence series."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from costmeter.advice.facts import DeviceFacts, Series
from costmeter.advice.model import EvidenceSeries
from costmeter.advice.thresholds import Thresholds

#: Points per evidence series (a card is a few hundred pixels wide).
EVIDENCE_POINTS = 300


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    data = sorted([v for v in values if v == v])  # NaN is the one value unequal to itself
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    data = [v for v in values if not math.isnan(v)]
    return math.fsum(data) / len(data) if data else math.nan


def step_s(series: Series) -> float:
    """Typical time between points (the median gap); 0 for fewer than two points."""
    return series.cached("step_s", lambda: _step_s(series))


def _step_s(series: Series) -> float:
    if len(series.ts) < 2:
        return 0.0
    gaps = [b - a for a, b in zip(series.ts, series.ts[1:], strict=False)]
    return percentile(gaps, 50)


def known_percentile(series: Series, q: float) -> float:
    """``percentile(series.known(), q)``, worked out once per series."""
    return series.cached(("percentile", q), lambda: percentile(series.known(), q))


def stretches(series: Series, test: Callable[[float], bool]) -> list[tuple[float, float]]:
    """(start, end) of each stretch of consecutive points passing ``test``; a gap over three
    steps, or an unknown value, ends a stretch. Each point stands for one step of time."""
    return stretches_of(series, [v == v and test(v) for v in series.values])  # NaN != NaN


def stretches_of(series: Series, passing: Sequence[bool]) -> list[tuple[float, float]]:
    """``stretches`` for the points whose flag in ``passing`` is true (a caller testing one
    comparison builds the flags at C speed: NaN compares false)."""
    step = step_s(series)
    gap = 3 * step
    out: list[tuple[float, float]] = []
    begin: float | None = None
    prev = -math.inf
    for t, ok in zip(series.ts, passing, strict=True):
        if begin is not None and (not ok or t - prev > gap):
            out.append((begin, prev + step))
            begin = None
        if ok and begin is None:
            begin = t
        prev = t
    if begin is not None:
        out.append((begin, prev + step))
    return out


def within(ts: Sequence[float], spans: Sequence[tuple[float, float]]) -> list[bool]:
    """For each time, whether it lies in one of ``spans`` (``a <= t < b``)."""
    if len(spans) == 1:
        ((a, b),) = spans
        return [a <= t < b for t in ts]
    return [any(a <= t < b for a, b in spans) for t in ts]


def share(values: Sequence[float], test: Callable[[float], bool]) -> float:
    """Share (0..1) of the known values passing ``test``."""
    data = [v for v in values if v == v]  # known: NaN is the one value unequal to itself
    return sum(1 for v in data if test(v)) / len(data) if data else 0.0


def confidence(seconds: float, agreement: float, t: Thresholds) -> float:
    """How sure a rule is: sqrt(evidence length / the length for full confidence, capped at 1)
    times the share of samples that agree with the finding (its steadiness)."""
    full = max(1.0, t.full_confidence_minutes * 60.0)
    length = min(1.0, max(0.0, seconds) / full) ** 0.5
    return round(max(0.0, min(1.0, length * agreement)), 2)


def enough(dev: DeviceFacts, t: Thresholds) -> bool:
    """The device has at least the minimum evidence length."""
    return dev.seconds >= t.min_evidence_minutes * 60.0 and len(dev.gpu_util) >= 3


def evidence_series(
    label: str,
    unit: str,
    series: Series,
    *,
    scale: float = 1.0,
    threshold: float | None = None,
    points: int = EVIDENCE_POINTS,
) -> EvidenceSeries:
    """``series`` x ``scale``, thinned to at most ``points`` (each kept point the mean of its
    group, so a short spike still moves the line)."""
    ts, vs = series.ts, series.values
    n = len(ts)
    if n > points:
        group = math.ceil(n / points)
        new_ts, new_vs = [], []
        for i in range(0, n, group):
            chunk = [v for v in vs[i : i + group] if v == v]  # known: NaN != NaN
            new_ts.append(ts[i])
            new_vs.append(math.fsum(chunk) / len(chunk) if chunk else math.nan)
        ts, vs = tuple(new_ts), tuple(new_vs)
    return EvidenceSeries(label, unit, tuple(ts), tuple(v * scale for v in vs), threshold=threshold)


def gib(nbytes: float) -> float:
    return nbytes / 1024**3


def fmt_pct(v: float) -> str:
    return f"{v:.0f} %"


def fmt_minutes(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
