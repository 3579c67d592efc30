"""What the rules read: plain, already-gathered facts (no database, no prices to look up).

``costmeter.service.advice`` builds these from the store, the runs and the price table; tests
build them by hand or from simulated histories. Series are tuples of (time, value) columns.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from costmeter.advice.checkpoints import RunCheckpoints

T = TypeVar("T")

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class Series:
    """Samples of one metric, oldest first; ``values`` may hold NaN for unknown."""

    ts: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    #: Figures worked out from this (immutable) series, by name: the rules ask for the same
    #: percentiles and stretches of one GPU many times. Not part of equality.
    memo: dict[Hashable, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def known(self) -> list[float]:
        return list(self.cached("known", self._known))

    def _known(self) -> tuple[float, ...]:
        return tuple([v for v in self.values if v == v])  # NaN is the one value unequal to itself

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, worked out once per series and ``key``."""
        try:
            return cast(T, self.memo[key])
        except KeyError:
            value = self.memo[key] = compute()
            return value

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, slots=True)
class GpuOption:
    """A GPU model in the price table, with the memory it has (for "a smaller GPU fits")."""

    model: str
    hourly: float
    memory_gb: float


@dataclass(frozen=True, slots=True)
class GpuAlternative:
    """Another priced model's estimate for a GPU's measured work (``costmeter.cost.whatif``):
    it fits the peak memory with the margin, and costs less."""

    model: str
    hourly: float
    memory_gb: float
    duration_s: float
    cost: float
    #: Throughput here / there (dense TFLOPS at the precision, memory bandwidth).
    compute_ratio: float
    bandwidth_ratio: float
    #: The table's figures it stands on ("BF16 312 -> 362.05 TFLOPS, 2039 -> 864 GB/s").
    basis: str


@dataclass(frozen=True, slots=True)
class WhatIfFacts:
    """A GPU's measured work estimated on the other priced models (the service works it out
    from the same series the rules read)."""

    model: str
    precision: str
    #: What the measured stretch costs in GPU-hours at its own price (the like-for-like side).
    cost: float
    busy_share: float
    memory_share: float
    memory_known: bool
    peak_gib: float
    margin_gib: float
    #: One sentence: what the estimate stands on.
    stands_on: str
    #: Cheaper models that fit, cheapest first.
    alternatives: tuple[GpuAlternative, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """One GPU over a stretch of time: the whole window, or the part a run held it."""

    host: str
    index: int
    uuid: str
    name: str
    #: Bytes of memory on the board; None when unknown.
    memory_total: int | None
    power_limit_w: float | None
    #: The hourly price that applies to this GPU, and whether a price row matched its name.
    hourly_price: float
    price_known: bool
    #: The price row's model name (to compare with cheaper options); None when unknown.
    price_model: str | None
    #: The hourly price already pays for electricity (then kWh saved saves no money apart).
    energy_in_price: bool
    start: float
    end: float
    gpu_util: Series
    mem_util: Series
    #: Bytes used on the board.
    mem_used: Series
    power_w: Series
    #: Bytes held by processes at each process sample (their sum); empty when not sampled.
    held_mem: Series = field(default_factory=Series)
    #: CPU % of one core used by the processes on this GPU (their sum) at each sample.
    proc_cpu: Series = field(default_factory=Series)
    #: Energy over the stretch in kWh (measured or integrated from power).
    energy_kwh: float = 0.0
    #: Bytes the driver reserves on the board (NVML v2 memory info), when a source reports it;
    #: without a process view "held" is memory used minus this (or an estimate of it).
    memory_reserved: int | None = None
    #: Its work estimated on the other priced models; None when it cannot be (no table row,
    #: no utilisation measured, unpriced).
    whatif: WhatIfFacts | None = None

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def memory_gb(self) -> float | None:
        return None if self.memory_total is None else self.memory_total / GIB


@dataclass(frozen=True, slots=True)
class RunFacts:
    """One run that overlapped the window, with each GPU it held cut to its lifetime."""

    id: int
    name: str
    host: str
    status: str
    started: float
    ended: float | None
    #: GPU indices the run asked for and was placed on.
    gpus: tuple[int, ...]
    devices: tuple[DeviceFacts, ...]
    sweep: str | None = None
    exit_code: int | None = None
    message: str = ""
    #: The run's budget (money), from its spec; None without one.
    budget: float | None = None
    #: Its cost so far and, with progress reports, the forecast of its total.
    cost: float | None = None
    forecast: float | None = None
    #: Share done (0..1) from its progress reports.
    fraction: float | None = None

    @property
    def oom(self) -> bool:
        """The run ended with an out-of-memory error (by its message or exit)."""
        text = self.message.lower()
        return "out of memory" in text or "outofmemory" in text or "oom" in text.split()


@dataclass(frozen=True, slots=True)
class DayBudget:
    """Today's spending against ``[alerts] daily_budget``."""

    budget: float
    day_start: float
    now: float
    spent: float
    #: Cost per hour at the current pace (the last hour's spending, or the day's average).
    per_hour: float

    @property
    def forecast(self) -> float:
        return day_forecast(self.spent, self.per_hour, self.day_start, self.now)


def day_forecast(spent: float, per_hour: float, day_start: float, now: float) -> float:
    """What the day ends at: ``spent`` plus ``per_hour`` until midnight."""
    left_h = max(0.0, (day_start + 86400.0 - now) / 3600.0)
    return spent + per_hour * left_h


@dataclass(frozen=True, slots=True)
class OwnerBudget:
    """One ``[[budgets]]`` entry: an owner's spending against its daily and monthly budget."""

    #: The dimension and the owner's key on it ("project", "vision").
    by: str
    key: str
    #: How to name the owner in a sentence ("project vision").
    label: str
    daily: float | None
    monthly: float | None
    day_start: float
    now: float
    spent_today: float
    #: The owner's cost per hour over the last hour of today.
    per_hour: float
    month_to_date: float
    #: Month-to-date plus the trailing days' average per day for the rest of the month.
    month_end: float
    #: Days of history the month-end projection stands on.
    days_observed: float

    @property
    def day_forecast(self) -> float:
        return day_forecast(self.spent_today, self.per_hour, self.day_start, self.now)


@dataclass(frozen=True, slots=True)
class ScalePoint:
    """A sweep's finished runs with one number of processes per node (the ``scaling`` rule)."""

    nproc: int
    #: GPUs each run had (0: processes on the CPU).
    gpus: int
    runs: int
    #: Medians over those runs.
    duration_s: float
    cost: float
    #: Units of work one run does (its progress total) and their name ("epochs", or "run"
    #: when the runs reported no progress: one run is one unit).
    work: float
    unit: str

    @property
    def cost_per_unit(self) -> float:
        return self.cost / self.work if self.work > 0 else self.cost


@dataclass(frozen=True, slots=True)
class SweepScaling:
    """A sweep over the number of processes per node: one point per N, smallest N first."""

    sweep: str
    host: str
    start: float
    end: float
    points: tuple[ScalePoint, ...]
    #: The sweep's run with the dearest N (the recommendation's target).
    run_id: int | None = None


@dataclass(frozen=True, slots=True)
class AdviceFacts:
    start: float
    end: float
    currency: str
    tariff_per_kwh: float
    #: GPUs not held by any run during the window (their whole window).
    devices: tuple[DeviceFacts, ...] = ()
    runs: tuple[RunFacts, ...] = ()
    #: Known GPU models with price and memory, cheapest first.
    catalog: tuple[GpuOption, ...] = ()
    day_budget: DayBudget | None = None
    #: ``[[budgets]]`` per owner, in the config's order.
    owner_budgets: tuple[OwnerBudget, ...] = ()
    #: Runs' output folders with their checkpoint files (the ``checkpoints`` rule), and the
    #: storage price per GB-month they are priced at.
    checkpoints: tuple[RunCheckpoints, ...] = ()
    storage_gb_month: float = 0.0
    #: Sweeps over ``--nproc-per-node`` (the ``scaling`` rule).
    scaling: tuple[SweepScaling, ...] = ()
