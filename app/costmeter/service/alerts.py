"""Alerts the desktop app turns into notifications: GPUs idle but allocated, a budget crossed.

Each watcher is fed ticks or totals and returns an ``Alert`` once per episode, so a GPU that stays
idle for hours is reported once, and again only after it did some work or was freed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from costmeter.core.model import DeviceSample
from costmeter.cost.rates import gpu_state


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


class BudgetWatch:
    """Today's cost crossing the daily budget, once per day."""

    def __init__(self, budget: float | None) -> None:
        self.budget = budget
        self._told_day: str | None = None

    def update(self, day: str, cost_today: float, money: str, budget_text: str) -> Alert | None:
        if self.budget is None or cost_today < self.budget or self._told_day == day:
            return None
        self._told_day = day
        return Alert(
            "budget",
            "Daily budget crossed",
            f"Today's cost is {money}, over the daily budget of {budget_text}.",
            f"budget:{day}",
        )
