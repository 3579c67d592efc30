"""What keeping a run's output costs, at the storage price per GB-month.

Definitions (docs/STORAGE.md):

- a GB is 10^9 bytes and a month is 730.5 hours (365.25 x 24 / 12), as cloud storage bills;
- ``monthly_cost(bytes)``: keeping ``bytes`` for one month (``runs.storage_cost``: the run's
  output at its last measured size; it recurs, so it is shown apart from the run's cost, which
  is compute only and paid once);
- ``gb_months(points, start, end)``: the GB-months kept over ``[start, end]`` from measurements
  over time: each measurement of a folder holds until the next one of that folder, the last
  one until ``end`` (what was measured is taken as kept until measured again). A folder several
  runs write to (a sweep's) is one folder: measured by any of them, counted once. ``report``
  charges these GB-months at the price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Bytes in a GB as storage is billed (decimal).
GB = 1_000_000_000
SECONDS_PER_MONTH = 730.5 * 3600.0


def monthly_cost(nbytes: float, price_gb_month: float) -> float:
    """Money to keep ``nbytes`` for one month."""
    return max(0.0, nbytes) / GB * price_gb_month


@dataclass(frozen=True, slots=True)
class SizePoint:
    """One measurement: ``bytes`` in folder ``path`` of run ``run_id`` at ``ts``."""

    run_id: int
    path: str
    ts: float
    bytes: int


@dataclass(frozen=True, slots=True)
class StorageCharge:
    """Storage over a window: what ``report`` adds to compute cost."""

    start: float
    end: float
    gb_months: float
    price_gb_month: float
    currency: str
    #: Runs whose outputs were kept in the window, and their bytes at the window's end.
    runs: int
    bytes_at_end: int
    source: str

    @property
    def cost(self) -> float:
        return self.gb_months * self.price_gb_month

    def to_dict(self) -> dict[str, object]:
        return {
            "gb_months": self.gb_months,
            "price_gb_month": self.price_gb_month,
            "cost": self.cost,
            "currency": self.currency,
            "runs": self.runs,
            "bytes_at_end": self.bytes_at_end,
            "per_month_at_end": monthly_cost(self.bytes_at_end, self.price_gb_month),
            "source": self.source,
        }


def gb_months(points: Iterable[SizePoint], start: float, end: float) -> tuple[float, int, int]:
    """GB-months kept in ``[start, end]``, the runs kept, and the bytes kept at ``end``.

    ``points`` must include each folder's last measurement before ``start`` (its size then
    holds into the window)."""
    series: dict[str, list[SizePoint]] = {}
    for p in points:
        series.setdefault(p.path, []).append(p)
    byte_seconds = 0.0
    runs: set[int] = set()
    at_end = 0
    for pts in series.values():
        pts.sort(key=lambda p: (p.ts, p.run_id))
        for i, p in enumerate(pts):
            lo = max(p.ts, start)
            hi = min(pts[i + 1].ts if i + 1 < len(pts) else end, end)
            if hi > lo:
                byte_seconds += p.bytes * (hi - lo)
        last = [p for p in pts if p.ts <= end]
        if last and last[-1].bytes > 0:
            at_end += last[-1].bytes
            runs.update(p.run_id for p in pts)
    return byte_seconds / GB / SECONDS_PER_MONTH, len(runs), at_end
