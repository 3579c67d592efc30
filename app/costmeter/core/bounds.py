"""Sane bounds for every number a user gives Costmeter, kept as data, and the checks that use them.

A number from a person (a command-line option, a configuration key, a form field) must be finite,
inside its bound and whole where it counts things. Refusals name the value and the bound, e.g.
``--interval nan is not a number of seconds; give a value from 0.05 to 3600.``

The ceilings are not physical limits: they are far above any real figure (the dearest cloud GPU
lists at about 100 per hour, the dirtiest grid at about 1,200 g CO2e/kWh, retail electricity at
under 1 per kWh) and low enough that sums over years of samples stay finite. docs/RELIABILITY.md
lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from costmeter.core.errors import CostmeterError

_YEAR_S = 365.25 * 86400.0
_TEN_YEARS_S = 10 * _YEAR_S


class BoundError(CostmeterError, ValueError):
    """A number outside its bound; ``str(err)`` names the value and the bound."""


def show(value: object) -> str:
    """A number as it was given: ``nan``, ``1e-300``, ``3``, ``0.05`` (repr keeps every digit)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return repr(value) if isinstance(value, str) else str(value)


def clip(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters for a message (a pasted megabyte stays out of it)."""
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True, slots=True)
class Bound:
    """An allowed range: ``low`` (excluded when ``low_open``) to ``high``, both included."""

    #: What the number is, after "is not": "a number of seconds".
    what: str
    low: float
    high: float
    low_open: bool = False
    integer: bool = False
    #: How to write ``high`` for people when the bare number is hard to read ("3650d").
    high_text: str = ""

    def range_text(self) -> str:
        """ "a value from 0.05 to 3600", "a value above 0 and at most 87600", "a whole number…"."""
        noun = "a whole number" if self.integer else "a value"
        high = self.high_text or show(self.high)
        if self.low_open:
            return f"{noun} above {show(self.low)} and at most {high}"
        return f"{noun} from {show(self.low)} to {high}"

    def problem(self, value: float) -> str | None:
        """Why ``value`` is refused, or None when it is allowed."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "is not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "is not a finite number"
        if self.integer and not float(value).is_integer():
            return "is not a whole number"
        if value < self.low or (self.low_open and value == self.low):
            return "is too small"
        if value > self.high:
            return "is too large"
        return None

    def allows(self, value: float) -> bool:
        return self.problem(value) is None

    def message(self, label: str, shown: str) -> str:
        """``LABEL SHOWN is not WHAT; give RANGE.``"""
        return f"{label} {clip(shown)}".strip() + f" is not {self.what}; give {self.range_text()}."

    def check(self, value: float, label: str, shown: str | None = None) -> float:
        """``value`` if allowed, else BoundError naming ``label``, the value and the bound."""
        if self.problem(value) is not None:
            raise BoundError(self.message(label, show(value) if shown is None else shown))
        return float(value)

    def check_int(self, value: float, label: str, shown: str | None = None) -> int:
        return int(self.check(value, label, shown))

    def parse(self, text: str, label: str) -> float:
        """The number written in ``text`` (a user's string), checked; BoundError otherwise."""
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # refused below, in words
        if "_" in text:  # float() takes "1_000"; a person means something else
            value = math.nan
        return self.check(value, label, text.strip() or repr(text))


# -- the bounds ------------------------------------------------------------------------------
#: Seconds between samples: faster than 20 Hz costs more CPU than it tells; slower than an hour
#: misses every idle stretch the advice looks for.
INTERVAL_S = Bound("a number of seconds between samples", 0.05, 3600.0)
#: Seconds between full process scans (``[sampling] process_scan_interval_s``).
SCAN_INTERVAL_S = Bound("a number of seconds between process scans", 0.05, 86400.0)
#: A duration a command runs or waits for (--duration, --time-limit, --quit-after): up to 10 years.
DURATION_S = Bound("a duration", 0.0, _TEN_YEARS_S, low_open=True, high_text="10 years")
#: How far back a Prometheus source fills history (``backfill``, --backfill): 0 = follow only.
BACKFILL_S = Bound("a duration to fill back", 0.0, _TEN_YEARS_S, high_text="10 years")
#: A Prometheus source's query step: never coarser than a minute (the store's finest rollup).
QUERY_STEP_S = Bound("a query step in seconds", 1.0, 60.0)
#: How far back a report or the advice looks (--since): up to 10 years.
WINDOW_S = Bound("a duration to look back", 0.0, _TEN_YEARS_S, low_open=True, high_text="10 years")
#: A number of seconds to wait (gui --quit-after): from one tick to 10 years.
SECONDS = Bound("a number of seconds", 0.05, _TEN_YEARS_S, high_text="315576000 (10 years)")
#: Hours (simulate --hours, agent --buffer-hours): from 3.6 s to 10 years.
HOURS = Bound("a number of hours", 0.001, _TEN_YEARS_S / 3600.0)
#: Minutes (``[alerts] idle_allocated_minutes``): up to 10 years.
MINUTES = Bound("a number of minutes", 0.0, _TEN_YEARS_S / 60.0, low_open=True)
#: Days of history kept per resolution; longer than a century is "forever".
RETENTION_DAYS = Bound("a number of days", 0.0, 36525.0, low_open=True)

#: Money per kWh (``[cost] tariff_per_kwh``): retail electricity is under 1 anywhere.
PRICE_PER_KWH = Bound("a price per kWh", 0.0, 1e4)
#: Money per GPU-hour (``[[cost.gpu]] hourly``): the dearest cloud GPUs list near 100 per hour.
PRICE_PER_GPU_HOUR = Bound("a price per GPU-hour", 0.0, 1e5)
#: Money per CPU core-hour (``[cost] cpu_core_hour``).
PRICE_PER_CORE_HOUR = Bound("a price per core-hour", 0.0, 1e4)
#: Storage per GB-month: cloud block storage is cents, archival tapes less; 1000 is absurd.
PRICE_PER_GB_MONTH = Bound("a price per GB-month", 0.0, 1e3)
#: Grams of CO2e per kWh: the dirtiest grids are near 1,200.
CARBON_G_PER_KWH = Bound("a number of grams of CO2e per kWh", 0.0, 1e4)
#: A CPU's thermal design power in watts (server CPUs are under 600 W).
POWER_W = Bound("a power in watts", 0.0, 1e4, low_open=True)
#: A budget: a run's (--budget) or a day's (``[alerts] daily_budget``).
BUDGET = Bound("an amount of money", 0.0, 1e9, low_open=True)
#: Percentage points (compress --max-drop).
PERCENT_POINTS = Bound("a number of percentage points", 0.0, 100.0)

#: GPUs per run (--gpus); below 1 is explained by the run command, which records the refusal.
GPUS = Bound("a number of GPUs", 1, 4096, integer=True)
#: Processes per node of a data-parallel run (--nproc-per-node).
NPROC = Bound("a number of processes per node", 1, 1024, integer=True)
#: Runs at once (sweep --max-parallel, --per-gpu).
PARALLEL_RUNS = Bound("a number of runs at once", 1, 1024, integer=True)
#: Rows to list (runs --limit).
LIST_LIMIT = Bound("a number of runs to list", 1, 1_000_000, integer=True)
#: Seeds of simulated GPUs and examples (numpy and torch take 0 .. 2**32 - 1).
SEED = Bound("a seed", 0, 2**32 - 1, integer=True)
#: Batch sizes (compress --batch).
BATCH = Bound("a batch size", 1, 1_000_000, integer=True)
#: Repetitions or epochs (compress --repeat, example --epochs).
REPEATS = Bound("a number of repetitions", 1, 100_000, integer=True)
EPOCHS = Bound("a number of epochs", 1, 100_000, integer=True)
#: A run's id in the database (``checkpoints --run``).
RUN_ID = Bound("a run id", 1, 2**63 - 1, integer=True)
#: Checkpoints of one series a user keeps (``checkpoints --keep``).
CHECKPOINTS_KEPT = Bound("a number of checkpoints", 0, 100_000, integer=True)
#: The agent's connection limits (``[agent]`` max_connections, max_per_client; --max-connections).
CONNECTIONS = Bound("a number of connections", 1, 100_000, integer=True)
#: How long the agent waits for a request's head (``[agent]`` request_timeout_s).
REQUEST_TIMEOUT_S = Bound("a number of seconds", 0.1, 600.0)

#: ``[advice]`` thresholds, by the ending of their key (see costmeter.advice.thresholds).
ADVICE_BY_SUFFIX: dict[str, Bound] = {
    "_pct": Bound("a percentage", 0.0, 100.0),
    "_minutes": Bound("a number of minutes", 0.0, _TEN_YEARS_S / 60.0),
    "_mib": Bound("a number of MiB", 0.0, 1e9),
    "_cores": Bound("a number of CPU cores", 0.0, 100_000.0),
    "_share": Bound("a share between 0 and 1", 0.0, 1.0),
    "_slowdown": Bound("a share between 0 and 1", 0.0, 1.0),
    "_margin": Bound("a share", 0.0, 100.0),
    "_factor": Bound("a factor", 0.0, 100.0),
    "_runs": Bound("a number of runs", 0, 1_000_000, integer=True),
}
#: Any other ``[advice]`` number.
ADVICE_OTHER = Bound("a number", 0.0, 1e6)


def advice_bound(key: str) -> Bound:
    """The bound of the ``[advice]`` threshold ``key``."""
    for suffix, bound in ADVICE_BY_SUFFIX.items():
        if key.endswith(suffix):
            return bound
    return ADVICE_OTHER
