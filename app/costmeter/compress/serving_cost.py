"""What serving a model costs on the hardware it was measured on: seconds per inference times
the hourly price of what ran it (``threads`` CPU cores at the price table's core-hour price;
``costmeter compress`` measures on the CPU only, so a GPU-hour price never applies here).

The compress package does not read the price table itself (it sits beside costmeter.cost, not
above it): the CLI and the app pass the price in as a ``ServingPrice``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0
#: Inferences the cost is quoted for.
PER = 1_000_000


@dataclass(frozen=True)
class ServingPrice:
    """The price of one CPU core (logical CPU) for one hour, and where it comes from."""

    core_hour: float
    currency: str = "USD"
    source: str = ""

    def per_hour(self, threads: int) -> float:
        return self.core_hour * threads


def cost_per_million(seconds: float, batch: int, per_hour: float) -> float:
    """Cost of ``PER`` inferences when one forward pass of ``batch`` rows takes ``seconds``."""
    return seconds / batch * PER / SECONDS_PER_HOUR * per_hour


def format_money(amount: float, currency: str) -> str:
    """Three significant digits: serving a small model costs fractions of a cent."""
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency.upper())
    if amount <= 0:
        number = "0"
    elif amount < 100:
        number = f"{amount:.{max(2, 2 - math.floor(math.log10(amount)))}f}"
    else:
        number = f"{amount:,.0f}"
    return f"{symbol}{number}" if symbol else f"{number} {currency}"
