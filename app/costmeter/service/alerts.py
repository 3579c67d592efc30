"""Alerts the desktop app turns into notifications: GPUs idle but allocated, a budget crossed
(the global daily budget, or an owner's ``[[budgets]]`` entry).

Each watcher is fed ticks or totals and returns an ``Alert`` once per episode, so a GPU that stays
idle for hours is reported once, and again only after it did some work or was freed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from costmeter.core.model import DeviceSample
from costmeter.cost.rates import gpu_state
from costmeter.service.budgets import BudgetStatus


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # "idle-allocated" or "budget"
    title: str
    message: str
    key: str


class IdleAllocatedWatch:
    """A GPU whose processes hold memory but do no work for ``after_s`` seconds."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._since: dict[str, float] = {}
        self._told: set[str] = set()

    def update(
        self, ts: float, samples: Iterable[DeviceSample], names: dict[str, str]
    ) -> list[Alert]:
        alerts = []
        for s in samples:
            if gpu_state(s) != "idle-allocated":
                self._since.pop(s.uuid, None)
                self._told.discard(s.uuid)
                continue
            since = self._since.setdefault(s.uuid, ts)
            if ts - since >= self.after_s and s.uuid not in self._told:
                self._told.add(s.uuid)
                minutes = (ts - since) / 60.0
                pids = ", ".join(str(p.pid) for p in s.processes[:3])
                name = names.get(s.uuid, "GPU")
                alerts.append(
                    Alert(
                        "idle-allocated",
                        f"GPU {s.index} idle but allocated",
                        f"GPU {s.index} ({name}) has done no work for {minutes:.0f} min while "
                        f"process {pids} holds its memory. It is still being paid for.",
                        f"idle:{s.uuid}:{since:.0f}",
                    )
                )
        return alerts


class OncePer:
    """Remembers, per key, the period (a day, a month) it was last told about: an alert goes out
    once per key and period."""

    def __init__(self) -> None:
        self._told: dict[Hashable, str] = {}

    def first(self, key: Hashable, period: str) -> bool:
        """True the first time ``key`` is seen in ``period`` (and remembers it)."""
        if self._told.get(key) == period:
            return False
        self._told[key] = period
        return True


class BudgetWatch:
    """Today's cost crossing the daily budget (``[alerts] daily_budget``), once per day."""

    def __init__(self, budget: float | None) -> None:
        self.budget = budget
        self._once = OncePer()

    def update(self, day: str, cost_today: float, money: str, budget_text: str) -> Alert | None:
        if self.budget is None or cost_today < self.budget:
            return None
        if not self._once.first(("all", "day"), day):
            return None
        return Alert(
            "budget",
            "Daily budget crossed",
            f"Today's cost is {money}, over the daily budget of {budget_text}.",
            f"budget:{day}",
        )


class OwnerBudgetWatch:
    """Each ``[[budgets]]`` owner passing its daily budget (once per owner per day) or its
    monthly budget (once per owner per month): keyed by (by, key, period)."""

    def __init__(self) -> None:
        self._once = OncePer()

    def update(
        self, statuses: Sequence[BudgetStatus], money: Callable[[float, str], str]
    ) -> list[Alert]:
        """``money(amount, currency)`` formats an amount ("$52.10")."""
        alerts = []
        for s in statuses:
            b = s.budget
            name = s.label[:1].upper() + s.label[1:]
            day = datetime.fromtimestamp(s.day_start).strftime("%Y-%m-%d")
            for period, when, spent, limit, over in (
                ("daily", day, s.spent_today, b.daily, s.daily_over),
                ("monthly", day[:7], s.month_to_date, b.monthly, s.monthly_over),
            ):
                if limit is None or not over or not self._once.first((b.by, b.key, period), when):
                    continue
                figures = f"{money(spent, s.currency)} of {money(limit, s.currency)}"
                text = f"{name} passed its {period} budget: {figures}"
                alerts.append(
                    Alert("budget", f"{name} passed its {period} budget", text + ".",
                          f"budget:{b.by}:{b.key}:{period}:{when}")
                )  # fmt: skip
        return alerts
