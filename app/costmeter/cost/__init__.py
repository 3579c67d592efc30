"""Prices, energy accounting and the cost of devices and hosts over a period."""

from costmeter.cost.energy import EnergyTracker, counter_delta, trapezoid_j
from costmeter.cost.ledger import (
    CostReport,
    DeviceCost,
    HostCost,
    Totals,
    format_money,
    price_device,
    price_host,
    price_usage,
)
from costmeter.cost.pricing import PriceMatch, PriceRow, Pricing, load_default_pricing

__all__ = [
    "CostReport",
    "DeviceCost",
    "EnergyTracker",
    "HostCost",
    "PriceMatch",
    "PriceRow",
    "Pricing",
    "Totals",
    "counter_delta",
    "format_money",
    "load_default_pricing",
    "price_device",
    "price_host",
    "price_usage",
    "trapezoid_j",
]
