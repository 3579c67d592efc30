"""Storage in ``report``: the GB-months runs' outputs were kept over a window, at the price.

The measurements come from ``run_storage`` (service/storage_watch.py writes them while runs run
and at their end; ``checkpoints --delete`` after a deletion); the definition is
``costmeter.cost.storage.gb_months``.
"""

from __future__ import annotations

from costmeter.cost.pricing import Pricing
from costmeter.cost.storage import SizePoint, StorageCharge, gb_months
from costmeter.store import Store


def storage_charge(
    store: Store, pricing: Pricing, start: float, end: float
) -> StorageCharge | None:
    """Storage kept in ``[start, end]``; None when no run's outputs were ever measured by then."""
    rows = store.runs().storage_between(start, end)
    if not rows:
        return None
    points = [SizePoint(r.run_id, r.path, r.ts, r.bytes) for r in rows]
    months, runs, at_end = gb_months(points, start, end)
    return StorageCharge(
        start=start,
        end=end,
        gb_months=months,
        price_gb_month=pricing.storage_gb_month,
        currency=pricing.currency,
        runs=runs,
        bytes_at_end=at_end,
        source=pricing.storage_source,
    )
