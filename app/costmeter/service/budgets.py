"""Budgets per owner (``[[budgets]]``): what each owner spent today and this month, where the day
and the month are heading, and whether the daily or monthly budget is passed.

Money comes from the chargeback (``service.chargeback``), so an owner's figure is the one
``costmeter report --by`` shows. One chargeback call per period and per distinct ``by`` serves
every budget on that dimension. The global ``[alerts] daily_budget`` is not handled here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from costmeter.advice.facts import OwnerBudget, day_forecast
from costmeter.config import Budget, Config
from costmeter.cost.chargeback import TAG_PREFIX, ChargebackReport
from costmeter.cost.forecast import MonthProjection, day_start, month_start, project_month_end
from costmeter.service.chargeback import chargeback
from costmeter.store import Store

#: Days the month-end projection averages over (as the Overview's projection).
TRAILING_DAYS = 7
#: The day's pace is the spending of this last stretch (as the global budget rule uses).
PACE_S = 3600.0
#: The prefixes of the chargeback's "unattributed" reasons when the samples are gone.
_OLDER = ("older than the per-process minutes", "CPU older than the raw samples")


def owner_label(by: str, key: str) -> str:
    """``project vision``, ``user alice``, ``tag team=cv``, ``gpu-model NVIDIA L4``."""
    if by.startswith(TAG_PREFIX):
        return f"tag {by[len(TAG_PREFIX) :]}={key}"
    return f"{by} {key}"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One ``[[budgets]]`` entry against what its owner spent."""

    budget: Budget
    currency: str
    #: Local midnight and the time the figures were read.
    day_start: float
    now: float
    spent_today: float
    #: Cost per hour over the last hour of today (the day's pace).
    per_hour: float
    projection: MonthProjection
    #: Sentences: part of a period older than the per-process samples (the owner's figure is low).
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return owner_label(self.budget.by, self.budget.key)

    @property
    def month_to_date(self) -> float:
        return self.projection.month_to_date

    @property
    def day_forecast(self) -> float:
        """Spent today plus the last hour's pace until midnight."""
        return day_forecast(self.spent_today, self.per_hour, self.day_start, self.now)

    @property
    def daily_over(self) -> bool | None:
        """Today's spending passed the daily budget; None without a daily budget."""
        daily = self.budget.daily
        return None if daily is None else self.spent_today > daily

    @property
    def day_forecast_over(self) -> bool | None:
        daily = self.budget.daily
        return None if daily is None else self.day_forecast > daily

    @property
    def monthly_over(self) -> bool | None:
        """The month's spending so far passed the monthly budget; None without one."""
        monthly = self.budget.monthly
        return None if monthly is None else self.month_to_date > monthly

    @property
    def month_end_over(self) -> bool | None:
        monthly = self.budget.monthly
        return None if monthly is None else self.projection.month_end > monthly

    def facts(self) -> OwnerBudget:
        """The same figures as the advice rules read them."""
        return OwnerBudget(
            by=self.budget.by,
            key=self.budget.key,
            label=self.label,
            daily=self.budget.daily,
            monthly=self.budget.monthly,
            day_start=self.day_start,
            now=self.now,
            spent_today=self.spent_today,
            per_hour=self.per_hour,
            month_to_date=self.month_to_date,
            month_end=self.projection.month_end,
            days_observed=self.projection.days_observed,
        )


@dataclass(slots=True)
class PastSpending:
    """What each owner spent on the days before today (this month, and the trailing days),
    kept by the caller between calls so that a refresh prices only today: closed days do not
    change. Recomputed when the day, the history's start or the config changes. Data that
    arrives late for a closed day (a remote host catching up) counts from the next day on."""

    config: Config | None = None
    key: tuple[float, float, float] | None = None
    month: dict[str, Mapping[str, float]] = field(default_factory=dict)
    trailing: dict[str, Mapping[str, float]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def check(self, config: Config, key: tuple[float, float, float]) -> None:
        if self.config is not config or self.key != key:
            self.config, self.key = config, key
            self.month.clear()
            self.trailing.clear()
            self.notes.clear()


def budget_status(
    store: Store,
    config: Config,
    now: datetime | float | None = None,
    *,
    past: PastSpending | None = None,
) -> tuple[BudgetStatus, ...]:
    """Every ``config.budgets`` entry at ``now`` (local time), in the config's order.

    Per distinct ``by``, one chargeback per period: today, the last hour (the day's pace), and
    the days before today of this month and of the trailing ``TRAILING_DAYS`` days (those two
    are kept in ``past`` between calls when given)."""
    budgets = config.budgets
    if not budgets:
        return ()
    when = _as_datetime(now)
    end = when.timestamp()
    midnight = day_start(when)
    today_lo = midnight.timestamp()
    month_lo = month_start(when).timestamp()
    pace_lo = max(today_lo, end - PACE_S)
    span = store.time_range()
    first = span[0] if span is not None else end
    # The whole days before today (as many as there are, for a new install), and today.
    trailing_lo = max((midnight - timedelta(days=TRAILING_DAYS)).timestamp(), first)
    days_observed = max(0.0, end - trailing_lo) / 86400.0
    past = past if past is not None else PastSpending()
    past.check(config, (today_lo, month_lo, trailing_lo))
    currency = config.pricing().currency  # what the chargeback prices in
    today: dict[str, Mapping[str, float]] = {}
    pace: dict[str, Mapping[str, float]] = {}
    for by in dict.fromkeys(b.by for b in budgets):  # distinct, in order
        if by not in past.month:
            month_report = _report(store, config, month_lo, today_lo, by)
            past.month[by] = _costs_by_key(month_report, by)
            past.trailing[by] = _costs_by_key(_report(store, config, trailing_lo, today_lo, by), by)
            if _older_than_raw(month_report):
                past.notes[by] = [
                    "part of this month is older than the per-process samples, so the owner's "
                    "figure counts only the rest"
                ]
        today_report = _report(store, config, today_lo, end, by)
        today[by] = _costs_by_key(today_report, by)
        pace[by] = _costs_by_key(_report(store, config, pace_lo, end, by), by)
    out = []
    pace_h = (end - pace_lo) / 3600.0
    for b in budgets:
        spent_today = today[b.by].get(b.key, 0.0)
        per_hour = pace[b.by].get(b.key, 0.0) / pace_h if pace_h > 0 else 0.0
        month_to_date = past.month[b.by].get(b.key, 0.0) + spent_today
        trailing = past.trailing[b.by].get(b.key, 0.0) + spent_today
        out.append(
            BudgetStatus(
                budget=b,
                currency=currency,
                day_start=today_lo,
                now=end,
                spent_today=spent_today,
                per_hour=per_hour,
                projection=project_month_end(when, month_to_date, trailing, days_observed),
                notes=tuple(past.notes.get(b.by, ())),
            )
        )
    return tuple(out)


def over_budgets(statuses: Sequence[BudgetStatus]) -> list[BudgetStatus]:
    """The statuses whose daily or monthly budget is passed."""
    return [s for s in statuses if s.daily_over or s.monthly_over]


def describe_over(status: BudgetStatus, money: Callable[[float, str], str]) -> list[str]:
    """``["project vision: $52.10 of $50.00 today", ...]``: each budget of ``status`` passed."""
    cur = status.currency
    out = []
    if status.daily_over and status.budget.daily is not None:
        out.append(
            f"{status.label}: {money(status.spent_today, cur)} of "
            f"{money(status.budget.daily, cur)} today"
        )
    if status.monthly_over and status.budget.monthly is not None:
        out.append(
            f"{status.label}: {money(status.month_to_date, cur)} of "
            f"{money(status.budget.monthly, cur)} this month"
        )
    return out


def _as_datetime(now: datetime | float | None) -> datetime:
    if now is None:
        return datetime.now().astimezone()
    if isinstance(now, datetime):
        return now if now.tzinfo is not None else now.astimezone()
    return datetime.fromtimestamp(now).astimezone()


def _report(store: Store, config: Config, lo: float, hi: float, by: str) -> ChargebackReport | None:
    if hi <= lo:
        return None
    return chargeback(store, config, lo, hi, (by,))


def _costs_by_key(report: ChargebackReport | None, by: str) -> dict[str, float]:
    if report is None:
        return {}
    out: dict[str, float] = {}
    for group in report.groups:
        key = group.key.get(by)
        if key is not None:
            out[key] = out.get(key, 0.0) + group.amounts.cost
    return out


def _older_than_raw(report: ChargebackReport | None) -> bool:
    if report is None:
        return False
    return any(why.startswith(_OLDER) and cost > 0 for why, cost in report.unattributed_why.items())
