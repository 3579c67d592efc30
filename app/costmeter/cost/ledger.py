"""What devices and hosts cost over a period: usage and prices in, numbers out.

A GPU costs its hourly price for every hour it was attached, plus its electricity unless the price
already includes it (a cloud rental: charging the energy again would count it twice). Its idle cost
(OpenCost's idea) is what was paid for but not used: the idle hours at the hourly price plus the
energy drawn while idle. A host's CPUs cost a price per core-hour; their idle cost is the unused
core-hours. Amounts stay unrounded floats until ``format_money`` presents them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from costmeter.core.model import DeviceUsage, HostUsage
from costmeter.cost.pricing import Pricing

J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class DeviceCost:
    host: str
    index: int
    uuid: str
    name: str
    hours: float
    idle_hours: float
    #: Percent, or None when utilisation was never known.
    avg_util: float | None
    lost: bool
    hourly_price: float
    price_source: str
    #: False when no price row matched the device's name (its hourly price is the fallback).
    price_known: bool
    asset_cost: float
    energy_kwh: float
    #: "measured", "estimated" or "none" (see ``DeviceUsage.energy_source``).
    energy_source: str
    #: What the energy costs at the tariff; part of ``cost`` only when not ``energy_in_price``.
    energy_cost: float
    #: The hourly price already pays for the electricity (cloud rental prices do).
    energy_in_price: bool
    idle_energy_kwh: float
    idle_cost: float
    carbon_kg: float

    @property
    def cost(self) -> float:
        return self.asset_cost + (0.0 if self.energy_in_price else self.energy_cost)


@dataclass(frozen=True, slots=True)
class HostCost:
    host: str
    cpu_count: int
    hours: float
    core_hours: float
    used_core_hours: float
    cpu_energy_kwh: float
    energy_source: str
    core_cost: float
    energy_cost: float
    idle_cost: float
    carbon_kg: float

    @property
    def cost(self) -> float:
        return self.core_cost + self.energy_cost


@dataclass(frozen=True, slots=True)
class Totals:
    cost: float
    energy_kwh: float
    idle_cost: float
    carbon_kg: float


@dataclass(frozen=True, slots=True)
class CostReport:
    #: Unix timestamps (seconds) bounding the period.
    start: float
    end: float
    currency: str
    devices: tuple[DeviceCost, ...]
    hosts: tuple[HostCost, ...]
    total: Totals

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of a report; times are ISO 8601 in UTC, amounts unrounded."""
        return {
            "devices": [
                {
                    "host": d.host,
                    "index": d.index,
                    "name": d.name,
                    "uuid": d.uuid,
                    "hours": d.hours,
                    "avg_util": d.avg_util,
                    "energy_kwh": d.energy_kwh,
                    "energy_source": d.energy_source,
                    "energy_cost": d.energy_cost,
                    "energy_in_price": d.energy_in_price,
                    "cost": d.cost,
                    "idle_cost": d.idle_cost,
                    "carbon_kg": d.carbon_kg,
                    "hourly_price": d.hourly_price,
                    "price_source": d.price_source,
                    "lost": d.lost,
                }
                for d in self.devices
            ],
            "hosts": [
                {
                    "host": h.host,
                    "cpu_count": h.cpu_count,
                    "hours": h.hours,
                    "cpu_energy_kwh": h.cpu_energy_kwh,
                    "energy_source": h.energy_source,
                    "cost": h.cost,
                    "idle_cost": h.idle_cost,
                    "carbon_kg": h.carbon_kg,
                }
                for h in self.hosts
            ],
            "total": {
                "cost": self.total.cost,
                "energy_kwh": self.total.energy_kwh,
                "idle_cost": self.total.idle_cost,
                "carbon_kg": self.total.carbon_kg,
            },
            "currency": self.currency,
            "start": _iso(self.start),
            "end": _iso(self.end),
        }


def price_device(usage: DeviceUsage, pricing: Pricing) -> DeviceCost:
    price = pricing.gpu_price(usage.name)
    hours = usage.seconds / 3600.0
    idle_hours = min(usage.idle_seconds, usage.seconds) / 3600.0
    energy_kwh = usage.energy_j / J_PER_KWH
    idle_energy_kwh = usage.idle_energy_j / J_PER_KWH
    in_price = price.row is not None and price.row.includes_energy
    tariff = 0.0 if in_price else pricing.tariff_per_kwh
    return DeviceCost(
        host=usage.host,
        index=usage.index,
        uuid=usage.uuid,
        name=usage.name,
        hours=hours,
        idle_hours=idle_hours,
        avg_util=usage.avg_util,
        lost=usage.lost,
        hourly_price=price.hourly,
        price_source=price.source,
        price_known=price.known,
        asset_cost=hours * price.hourly,
        energy_kwh=energy_kwh,
        energy_source=usage.energy_source,
        energy_cost=energy_kwh * pricing.tariff_per_kwh,
        energy_in_price=in_price,
        idle_energy_kwh=idle_energy_kwh,
        idle_cost=idle_hours * price.hourly + idle_energy_kwh * tariff,
        carbon_kg=energy_kwh * pricing.carbon_g_per_kwh / 1000.0,
    )


def price_host(usage: HostUsage, pricing: Pricing) -> HostCost:
    hours = usage.seconds / 3600.0
    core_hours = usage.cpu_count * hours
    used_core_hours = min(usage.busy_core_seconds / 3600.0, core_hours)
    energy_kwh = usage.cpu_energy_j / J_PER_KWH
    return HostCost(
        host=usage.host,
        cpu_count=usage.cpu_count,
        hours=hours,
        core_hours=core_hours,
        used_core_hours=used_core_hours,
        cpu_energy_kwh=energy_kwh,
        energy_source=usage.energy_source,
        core_cost=core_hours * pricing.cpu_core_hour,
        energy_cost=energy_kwh * pricing.tariff_per_kwh,
        idle_cost=(core_hours - used_core_hours) * pricing.cpu_core_hour,
        carbon_kg=energy_kwh * pricing.carbon_g_per_kwh / 1000.0,
    )


def price_usage(
    device_usages: Iterable[DeviceUsage],
    host_usages: Iterable[HostUsage],
    pricing: Pricing,
    start: float,
    end: float,
) -> CostReport:
    """Price every device and host over ``[start, end]`` and add them up."""
    devices = tuple(price_device(u, pricing) for u in device_usages)
    hosts = tuple(price_host(u, pricing) for u in host_usages)
    total = Totals(
        cost=math.fsum([d.cost for d in devices] + [h.cost for h in hosts]),
        energy_kwh=math.fsum([d.energy_kwh for d in devices] + [h.cpu_energy_kwh for h in hosts]),
        idle_cost=math.fsum([d.idle_cost for d in devices] + [h.idle_cost for h in hosts]),
        carbon_kg=math.fsum([d.carbon_kg for d in devices] + [h.carbon_kg for h in hosts]),
    )
    return CostReport(start, end, pricing.currency, devices, hosts, total)


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def format_money(value: float, currency: str, *, digits: int = 2) -> str:
    """``$4.30``, ``€1,234.50``, ``12.00 CHF``; a non-zero amount that rounds to 0 is ``<$0.01``."""
    code = currency.upper()
    symbol = _SYMBOLS.get(code)
    sign = "-" if value < 0 else ""
    amount = abs(value)
    smallest = 10.0**-digits
    if 0 < amount < smallest / 2:
        text = f"{smallest:.{digits}f}"
        return f"<{sign}{symbol}{text}" if symbol else f"<{sign}{text} {code}"
    text = f"{amount:,.{digits}f}"
    if text.strip("0.,") == "":
        sign = ""  # no "-$0.00"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {code}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
