"""Month-end cost projected from the trailing days' spending."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class MonthProjection:
    month_to_date: float
    #: Average cost per day over the trailing window (what the projection extends).
    per_day: float
    #: The month-to-date cost plus ``per_day`` for the rest of the month.
    month_end: float
    #: Days of data the daily average stands on (at most the window; less for a new install).
    days_observed: float


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def project_month_end(
    now: datetime, month_to_date: float, trailing_cost: float, trailing_days_observed: float
) -> MonthProjection:
    """``trailing_cost`` was spent over ``trailing_days_observed`` days (the trailing 7 days, or
    less when the history is shorter). With no history at all, the projection is what was spent."""
    per_day = trailing_cost / trailing_days_observed if trailing_days_observed > 0 else 0.0
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    end = month_start(now) + timedelta(days=days_in_month)
    remaining_days = max(0.0, (end - now).total_seconds() / 86400.0)
    return MonthProjection(
        month_to_date=month_to_date,
        per_day=per_day,
        month_end=month_to_date + per_day * remaining_days,
        days_observed=trailing_days_observed,
    )
