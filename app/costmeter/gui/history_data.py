"""What the History page shows, without Qt: metrics and units, targets, reader jobs, gaps, costs.

Kept apart from the widgets so the reader jobs (run on the worker thread) and the arithmetic can be
tested without a display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from costmeter.cost.ledger import CostReport, price_usage
from costmeter.cost.pricing import Pricing
from costmeter.service.reading import DeviceRecord, HostRecord, Series, Store

#: Points asked of the store for the visible range. The store's resolutions step 60x apart (raw,
#: 1 min, 1 h), so a budget above 3,600 keeps a 1 Hz hour raw; pyqtgraph's peak downsampling then
#: brings it to the plot's pixel width when drawing.
VISIBLE_POINTS = 4000
#: Extra range loaded on each side of the visible one (as a fraction of its width), so a pan shows
#: data at once while the re-query runs.
MARGIN = 0.25

#: (key, label, seconds) of the range presets; 0 = a custom range, -1 = all that was recorded.
PRESETS: tuple[tuple[str, str, float], ...] = (
    ("1h", "Last hour", 3600.0),
    ("24h", "Last 24 hours", 86400.0),
    ("7d", "Last 7 days", 7 * 86400.0),
    ("30d", "Last 30 days", 30 * 86400.0),
    ("all", "All history", -1.0),
    ("custom", "Custom range", 0.0),
)


def preset_range(
    key: str, now: float, span: tuple[float, float] | None
) -> tuple[float, float] | None:
    """The range a preset shows at ``now``; None for a custom range (or "all" of nothing)."""
    seconds = next((s for k, _, s in PRESETS if k == key), 0.0)
    if seconds > 0:
        return now - seconds, now
    if seconds < 0 and span is not None:
        pad = max(60.0, (span[1] - span[0]) * 0.02)
        return span[0] - pad, span[1] + pad
    return None


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    label: str
    #: "percent", "bytes", "bytes/s", "W", "°C", "MHz" or "" (a plain number).
    unit: str
    #: The y axis starts at 0 (amounts); False where only the variation reads well (°C, MHz).
    from_zero: bool = True


DEVICE_METRICS: tuple[Metric, ...] = (
    Metric("gpu_util", "GPU utilisation", "percent"),
    Metric("mem_util", "Memory bandwidth utilisation", "percent"),
    Metric("mem_used", "Memory used", "bytes"),
    Metric("power_w", "Power", "W"),
    Metric("temp_c", "Temperature", "°C", from_zero=False),
    Metric("sm_clock_mhz", "SM clock", "MHz", from_zero=False),
    Metric("mem_clock_mhz", "Memory clock", "MHz", from_zero=False),
)
HOST_METRICS: tuple[Metric, ...] = (
    Metric("cpu_percent", "CPU utilisation", "percent"),
    Metric("mem_used", "Memory used", "bytes"),
    Metric("load1", "Load average (1 min)", ""),
    Metric("swap_used", "Swap used", "bytes"),
    Metric("disk_read_bps", "Disk read", "bytes/s"),
    Metric("disk_write_bps", "Disk write", "bytes/s"),
    Metric("net_rx_bps", "Network received", "bytes/s"),
    Metric("net_tx_bps", "Network sent", "bytes/s"),
)


def metrics_for(kind: str) -> tuple[Metric, ...]:
    return DEVICE_METRICS if kind == "device" else HOST_METRICS


@dataclass(frozen=True, slots=True)
class Target:
    """A GPU or a host, as the device picker lists it."""

    kind: str  # "device" or "host"
    id: int
    #: Stable across databases, for the saved choice: "device:<uuid>" or "host:<hostname>".
    key: str
    label: str
    host: str
    uuid: str = ""
    index: int = -1


def targets_from(devices: list[DeviceRecord], hosts: list[HostRecord]) -> list[Target]:
    """Each host's GPUs, then the host itself."""
    out: list[Target] = []
    for h in hosts:
        for d in devices:
            if d.host_id == h.id:
                label = f"{d.host} GPU {d.index}: {d.name or 'unknown GPU'}"
                if d.lost_at is not None:
                    label += " (lost)"
                out.append(
                    Target("device", d.id, f"device:{d.uuid}", label, d.host, d.uuid, d.index)
                )
        cpu = f"{h.cpu_count} CPUs" if h.cpu_count else "CPU"
        out.append(Target("host", h.id, f"host:{h.hostname}", f"{h.hostname} ({cpu})", h.hostname))
    return out


@dataclass(frozen=True, slots=True)
class Catalogue:
    targets: list[Target]
    #: First and last sample time, or None for an empty database.
    span: tuple[float, float] | None


def load_catalogue(store: Store) -> Catalogue:
    return Catalogue(targets_from(store.devices(), store.hosts()), store.time_range())


def load_series(
    store: Store, target: Target, metric: str, start: float, end: float, max_points: int
) -> Series:
    if target.kind == "device":
        return store.query_series(target.id, metric, start, end, max_points)
    return store.query_host_series(target.id, metric, start, end, max_points)


def load_cost(store: Store, pricing: Pricing, start: float, end: float) -> CostReport:
    """What ``[start, end)`` cost; whole hours and minutes come from the rollups (the same
    totals as the raw rows, so a 30-day card reads ~720 rows per device, not millions)."""
    return price_usage(
        store.device_usage(start, end, coarse=True),
        store.host_usage(start, end, coarse=True),
        pricing,
        start,
        end,
    )


@dataclass(frozen=True, slots=True)
class RangeCost:
    cost: float
    idle_cost: float
    energy_kwh: float


def target_cost(report: CostReport, target: Target) -> RangeCost | None:
    """The selected GPU's (or host's CPUs') share of ``report``; None when it had no samples."""
    if target.kind == "device":
        for d in report.devices:
            if d.uuid == target.uuid:
                return RangeCost(d.cost, d.idle_cost, d.energy_kwh)
        return None
    for h in report.hosts:
        if h.host == target.host:
            return RangeCost(h.cost, h.idle_cost, h.cpu_energy_kwh)
    return None


def axis_scale(unit: str, largest: float) -> tuple[float, str]:
    """Divide values by the factor and label the axis with the text: bytes become KiB...TiB."""
    if unit in ("bytes", "bytes/s"):
        suffix = "/s" if unit == "bytes/s" else ""
        factor, name = 1.0, "B"
        for step in ("KiB", "MiB", "GiB", "TiB"):
            if not math.isfinite(largest) or largest < factor * 1024:
                break
            factor, name = factor * 1024, step
        return factor, name + suffix
    return 1.0, {"percent": "%"}.get(unit, unit)


def y_range(metric: Metric, largest: float) -> tuple[float, float] | None:
    """A fixed y range (0-100 % for percentages, 0 to the top for amounts), or None to follow
    the visible data. ``largest`` is in the axis' (scaled) units."""
    if metric.unit == "percent":
        return 0.0, max(100.0, largest) if math.isfinite(largest) else 100.0
    if not math.isfinite(largest):
        return 0.0, 1.0  # nothing to show: a calm empty axis
    if metric.from_zero and largest > 0:
        return 0.0, largest * 1.05
    return None


def gap_threshold(series: Series) -> float:
    """Seconds between neighbouring points beyond which the line breaks (missing data)."""
    if series.bucket_s > 0:
        return series.bucket_s * 1.5
    if len(series.ts) < 3:
        return math.inf
    step = float(np.median(np.diff(np.asarray(series.ts, dtype=float))))
    return max(3.0 * step, step + 1.0)


@dataclass(frozen=True, slots=True)
class PlotArrays:
    """A series ready to draw: x at the middle of each bucket, NaN where the line breaks."""

    x: np.ndarray
    lo: np.ndarray
    avg: np.ndarray
    hi: np.ndarray


def plot_arrays(series: Series, factor: float = 1.0) -> PlotArrays:
    ts = np.asarray(series.ts, dtype=float) + series.bucket_s / 2
    cols = [np.asarray(c, dtype=float) / factor for c in (series.min, series.avg, series.max)]
    if len(ts) > 1:
        gaps = np.nonzero(np.diff(ts) > gap_threshold(series))[0] + 1
        if len(gaps):
            mid = (ts[gaps - 1] + ts[gaps]) / 2
            ts = np.insert(ts, gaps, mid)
            cols = [np.insert(c, gaps, np.nan) for c in cols]
    return PlotArrays(ts, cols[0], cols[1], cols[2])


def describe_resolution(series: Series) -> str:
    if series.resolution == "raw":
        return "raw samples"
    minutes = series.bucket_s / 60
    if minutes < 60:
        return "1-minute averages" if minutes == 1 else f"{minutes:g}-minute averages"
    hours = minutes / 60
    if hours < 48:
        return "hourly averages" if hours == 1 else f"{hours:g}-hour averages"
    return f"{hours / 24:g}-day averages"


def same_range(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Two ranges equal to within 0.5 % of their width (the view's float noise, not a pan)."""
    tol = max(abs(a[1] - a[0]), 1.0) * 0.005
    return abs(a[0] - b[0]) <= tol and abs(a[1] - b[1]) <= tol


def envelope(
    x: np.ndarray, lo: np.ndarray, hi: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The min-max band on a grid of ``step`` (a few pixels): the lowest ``lo`` and highest ``hi``
    in each cell and its two neighbours.

    Why: Qt fills a polygon scanline by scanline, so an edge that zigzags (a vertex per point, or
    pyqtgraph's peak downsampling, or busy and idle hours alternating from cell to cell) makes
    filling slow. Taking each cell's neighbours too smooths such edges at a cost of one cell of
    width. A cell holding only a gap's NaN stays NaN, so the band breaks where the line does.
    """
    if len(x) < 2 or not step > 0:
        return x, lo, hi
    cell = np.floor((x - x[0]) / step)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(cell)) + 1))
    x, lo, hi = x[starts], np.fmin.reduceat(lo, starts), np.fmax.reduceat(hi, starts)
    if len(x) < 3:
        return x, lo, hi
    gap = np.isnan(lo) | np.isnan(hi)
    lo2 = np.fmin(np.fmin(lo[:-2], lo[1:-1]), lo[2:])
    hi2 = np.fmax(np.fmax(hi[:-2], hi[1:-1]), hi[2:])
    lo = np.concatenate((lo[:1], lo2, lo[-1:]))
    hi = np.concatenate((hi[:1], hi2, hi[-1:]))
    lo[gap] = hi[gap] = np.nan
    return x, lo, hi
