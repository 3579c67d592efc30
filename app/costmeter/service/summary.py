"""The figures the Overview shows, computed from the store in one go (on a worker thread)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from costmeter.cost.forecast import MonthProjection, day_start, month_start, project_month_end
from costmeter.cost.ledger import CostReport, price_usage
from costmeter.cost.pricing import Pricing
from costmeter.store import Store

TRAILING_DAYS = 7


@dataclass(frozen=True, slots=True)
class CostSummary:
    today: CostReport
    month: CostReport
    projection: MonthProjection


def report_between(store: Store, pricing: Pricing, start: float, end: float) -> CostReport:
    """Exactly what ``costmeter report`` prices for ``[start, end]``."""
    return price_usage(
        store.device_usage(start, end), store.host_usage(start, end), pricing, start, end
    )


def cost_summary(store: Store, pricing: Pricing, now: datetime | None = None) -> CostSummary:
    """Today (since local midnight), this month, and the month end projected from the trailing
    7 days (or from as many days of history as there are, when fewer)."""
    now = now or datetime.now().astimezone()
    end = now.timestamp()
    today = report_between(store, pricing, day_start(now).timestamp(), end)
    month = report_between(store, pricing, month_start(now).timestamp(), end)
    trailing_start = (now - timedelta(days=TRAILING_DAYS)).timestamp()
    span = store.time_range()
    observed_start = max(trailing_start, span[0]) if span is not None else end
    trailing = report_between(store, pricing, observed_start, end)
    days = max(0.0, end - observed_start) / 86400.0
    projection = project_month_end(now, month.total.cost, trailing.total.cost, days)
    return CostSummary(today, month, projection)
