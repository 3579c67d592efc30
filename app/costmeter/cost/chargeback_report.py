"""What ``report --by`` answers: amounts per owner, unattributed, idle and the total."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Amounts:
    gpu_hours: float = 0.0
    energy_kwh: float = 0.0
    cost: float = 0.0
    idle_cost: float = 0.0
    carbon_kg: float = 0.0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.gpu_hours + other.gpu_hours,
            self.energy_kwh + other.energy_kwh,
            self.cost + other.cost,
            self.idle_cost + other.idle_cost,
            self.carbon_kg + other.carbon_kg,
        )

    def __sub__(self, other: Amounts) -> Amounts:
        return self + other.scaled(-1.0)

    def scaled(self, factor: float) -> Amounts:
        return Amounts(
            self.gpu_hours * factor,
            self.energy_kwh * factor,
            self.cost * factor,
            self.idle_cost * factor,
            self.carbon_kg * factor,
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "gpu_hours": self.gpu_hours,
            "energy_kwh": self.energy_kwh,
            "cost": self.cost,
            "idle_cost": self.idle_cost,
            "carbon_kg": self.carbon_kg,
        }


ZERO = Amounts()


def total_of(amounts: Iterable[Amounts]) -> Amounts:
    items = list(amounts)
    return Amounts(*(math.fsum(getattr(a, f) for a in items) for f in _AMOUNT_FIELDS))


_AMOUNT_FIELDS = ("gpu_hours", "energy_kwh", "cost", "idle_cost", "carbon_kg")


@dataclass(frozen=True, slots=True)
class OwnerGroup:
    key: Mapping[str, str | None]
    amounts: Amounts
    #: Of the total cost (0..1).
    share: float


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    bucket: float
    #: The group's key values in ``by`` order; ``()`` for machine idle and for unattributed use.
    key: tuple[str | None, ...]
    cost: float
    #: "owner", "idle" or "unattributed" (GPU use whose owner could not be read). CPU idle and
    #: the CPU time of untracked processes have no buckets: they are in the totals only.
    kind: str = "owner"


@dataclass(frozen=True, slots=True)
class ChargebackReport:
    by: tuple[str, ...]
    start: float
    end: float
    currency: str
    share_idle: bool
    #: Cost descending.
    groups: tuple[OwnerGroup, ...]
    unattributed: Amounts
    #: Reason -> cost.
    unattributed_why: Mapping[str, float]
    idle: Amounts
    total: Amounts
    #: Empty unless buckets were asked for.
    series: tuple[SeriesPoint, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def gap(self) -> Amounts:
        """What the total holds that no part does (rounding, samples missing from a window)."""
        parts = total_of([*(g.amounts for g in self.groups), self.unattributed, self.idle])
        return self.total - parts

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (``costmeter report --by ... --format json``); amounts unrounded."""
        total_cost = self.total.cost

        def share(cost: float) -> float:
            return cost / total_cost if total_cost else 0.0

        return {
            "by": list(self.by),
            "groups": [
                {"key": dict(g.key), **g.amounts.to_dict(), "share": g.share} for g in self.groups
            ],
            "unattributed": {
                **self.unattributed.to_dict(),
                "share": share(self.unattributed.cost),
                "why": dict(self.unattributed_why),
            },
            "idle": {**self.idle.to_dict(), "share": share(self.idle.cost)},
            "total": self.total.to_dict(),
            "gap": self.gap.to_dict(),
            "currency": self.currency,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "share_idle": self.share_idle,
            "notes": list(self.notes),
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
