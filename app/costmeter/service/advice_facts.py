"""Gather what the advice rules read (``costmeter.advice.facts``) from a Store and the config.

A GPU held by a run during the window is described by that run (its series cut to the run's
lifetime); a GPU no run held is described over the whole window. Series come from the store's
chart queries (raw samples, else 1-minute, else 1-hour rollups), at most ``MAX_POINTS`` each.
Every device window is worked out first and read from the store in one call
(``store.device_windows``); energy comes from ``device_usage`` once per window, summed from the
rollups where whole minutes allow (the same totals). Gathering only reads.
"""

from __future__ import annotations

from datetime import datetime

from costmeter.advice.facts import AdviceFacts, DayBudget, DeviceFacts, GpuOption, RunFacts, Series
from costmeter.advice.gpu_memory import memory_gb_for
from costmeter.config import Config
from costmeter.core.model import DeviceUsage
from costmeter.cost.forecast import day_start
from costmeter.cost.ledger import J_PER_KWH, price_usage
from costmeter.cost.pricing import Pricing
from costmeter.service.advice_whatif import with_whatif
from costmeter.service.budgets import budget_status
from costmeter.service.checkpoint_files import gather_checkpoints
from costmeter.service.run_costs import live_figures
from costmeter.service.scaling import sweep_scaling
from costmeter.store import DeviceWindow, Store, device_windows
from costmeter.store.queries import Series as StoredSeries
from costmeter.store.runs import RunRow
from costmeter.store.store import DeviceRecord

#: Points per series read for the rules (the cards draw at most ~300 of them).
MAX_POINTS = 2000
#: Runs looked at, newest first (a window with more is summarised by its newest runs).
MAX_RUNS = 500


def gather_facts(
    store: Store, config: Config, start: float, end: float
) -> tuple[AdviceFacts, list[str]]:
    """The facts over ``[start, end]`` and sentences about what could not be gathered."""
    pricing = config.pricing()
    notes: list[str] = []
    span = store.time_range()
    if span is not None:  # the window, cut to the recorded history
        start, end = max(start, span[0]), min(end, span[1])
    records = {(d.host, d.index): d for d in store.devices()}
    held: dict[tuple[str, int], list[tuple[float, float]]] = {}
    run_store = store.runs()
    usage = _Usage(store)
    # First where each GPU is looked at (runs' stretches, then each GPU's longest free one)...
    plans: list[tuple[RunRow, float, float, tuple[int, ...]]] = []
    for row in run_store.list_runs(MAX_RUNS):
        lo = row.started
        if lo is None or lo >= end or (row.ended is not None and row.ended <= start):
            continue
        lo = max(lo, start)
        hi = min(end, row.ended) if row.ended is not None else end
        gpus = tuple(row.gpus)
        if not gpus:  # placed on none: the GPUs its processes showed up on
            gpus = tuple(d.index for d in run_store.samples(row, hi).devices)
        plans.append((row, lo, hi, gpus))
        for i in gpus:
            held.setdefault((row.node or row.host or "", i), []).append((lo, row.ended or end))
    free: list[tuple[DeviceRecord, float, float]] = []
    for key, rec in records.items():
        if rec.last_seen is not None and rec.last_seen < start:
            continue
        lo, hi = longest_gap(start, end, held.get(key, []))
        free.append((rec, lo, hi))
    wanted = [(r.id, lo, hi) for r, lo, hi in free if hi > lo]
    for row, lo, hi, gpus in plans:
        host = row.node or row.host or ""
        wanted += [(records[(host, i)].id, lo, hi) for i in gpus if (host, i) in records]
    # ... then everything read in one call.
    stored = device_windows(store, wanted, max_points=MAX_POINTS)
    runs = [
        _run_facts(store, row, records, pricing, lo, hi, gpus, end, usage, stored)
        for row, lo, hi, gpus in plans
    ]
    devices = []
    unpriced = set()
    for rec, lo, hi in free:
        dev = device_facts(rec, pricing, lo, hi, usage, stored.get((rec.id, lo, hi)))
        if dev is not None and len(dev.gpu_util):
            devices.append(dev)
            if not dev.price_known:
                unpriced.add(rec.name)
    for name in sorted(unpriced):
        notes.append(
            f"No price row matches '{name}', so its savings count at "
            f"{pricing.unknown_gpu_hourly:g} {pricing.currency}/h: add a [[cost.gpu]] row."
        )
    return (
        AdviceFacts(
            start=start,
            end=max(start, end),
            currency=pricing.currency,
            tariff_per_kwh=pricing.tariff_per_kwh,
            devices=tuple(devices),
            runs=tuple(runs),
            catalog=catalog(pricing),
            day_budget=_day_budget(store, config, pricing, end),
            # Each [[budgets]] owner today and this month (one chargeback per period and by).
            owner_budgets=tuple(s.facts() for s in budget_status(store, config, now=end)),
            # Runs' output folders: their last measured size and a bounded listing of their
            # checkpoint files (not a walk of the whole tree on every pass).
            checkpoints=gather_checkpoints(run_store.list_runs(MAX_RUNS)),
            storage_gb_month=pricing.storage_gb_month,
            # Sweeps over --nproc-per-node: cost per unit of work per N (service/scaling.py).
            scaling=tuple(sweep_scaling(run_store.list_runs(MAX_RUNS))),
        ),
        notes,
    )


def longest_gap(start: float, end: float, busy: list[tuple[float, float]]) -> tuple[float, float]:
    """The longest part of ``[start, end]`` outside every ``busy`` interval (runs holding the
    GPU): a GPU is described alone there, and by its runs during them."""
    best = (start, start)
    at = start
    for lo, hi in sorted(busy):
        if lo > at and lo - at > best[1] - best[0]:
            best = (at, min(lo, end))
        at = max(at, hi)
    if end - at > best[1] - best[0]:
        best = (at, end)
    return best


def catalog(pricing: Pricing) -> tuple[GpuOption, ...]:
    """Every priced GPU model whose memory is known, cheapest first."""
    out = []
    for row in pricing.gpu_rows:
        mem = memory_gb_for(row.model)
        if mem is not None and row.hourly > 0:
            out.append(GpuOption(row.model, row.hourly, mem))
    return tuple(sorted(out, key=lambda o: (o.hourly, o.memory_gb)))


def _series(stored: StoredSeries, peak: bool) -> Series:
    values = stored.max if peak and stored.resolution != "raw" else stored.avg
    return Series(tuple(stored.ts), tuple(values))  # the store's values are floats already


def _pairs(rows: tuple[tuple[float, float], ...]) -> Series:
    return Series(tuple(r[0] for r in rows), tuple(r[1] for r in rows))


def device_facts(
    rec: DeviceRecord,
    pricing: Pricing,
    lo: float,
    hi: float,
    usage_of: _Usage,
    stored: DeviceWindow | None,
) -> DeviceFacts | None:
    """``rec`` over ``[lo, hi)`` from what ``device_windows`` read for that window."""
    if hi <= lo or stored is None:
        return None
    price = pricing.gpu_price(rec.name)
    usage = [u for u in usage_of.get(lo, hi) if u.uuid == rec.uuid]
    series = stored.series
    gpu_util = _series(series["gpu_util"], peak=False)
    n = len(gpu_util)
    first = gpu_util.ts[0] if n else lo
    step = (gpu_util.ts[-1] - first) / (n - 1) if n > 1 else 0.0
    facts = DeviceFacts(
        host=rec.host,
        index=rec.index,
        uuid=rec.uuid,
        name=rec.name,
        memory_total=rec.memory_total,
        power_limit_w=rec.power_limit_w,
        hourly_price=price.hourly,
        price_known=price.known,
        price_model=price.row.model if price.row is not None else None,
        energy_in_price=price.row is not None and price.row.includes_energy,
        start=first,
        end=first + step * n,  # each point stands for one step of time
        gpu_util=gpu_util,
        mem_util=_series(series["mem_util"], peak=False),
        mem_used=_series(series["mem_used"], peak=True),
        power_w=_series(series["power_w"], peak=False),
        # Memory held by the GPU's processes and the CPU they use, averaged per bucket.
        held_mem=_pairs(stored.held_mem),
        proc_cpu=_pairs(stored.proc_cpu),
        energy_kwh=usage[0].energy_j / J_PER_KWH if usage else 0.0,
    )
    # The cheaper-gpu rule's estimate on the other models, from the same series.
    return with_whatif(facts, pricing)


class _Usage:
    """``store.device_usage`` (every device at once) once per window, not once per device;
    whole minutes and hours summed from the rollups (``coarse``: the same totals)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.windows: dict[tuple[float, float], list[DeviceUsage]] = {}

    def get(self, lo: float, hi: float) -> list[DeviceUsage]:
        if (lo, hi) not in self.windows:
            self.windows[(lo, hi)] = self.store.device_usage(lo, hi, coarse=True)
        return self.windows[(lo, hi)]


def _run_facts(
    store: Store,
    row: RunRow,
    records: dict[tuple[str, int], DeviceRecord],
    pricing: Pricing,
    lo: float,
    hi: float,
    gpus: tuple[int, ...],
    end: float,
    usage: _Usage,
    stored: dict[tuple[int, float, float], DeviceWindow],
) -> RunFacts:
    host = row.node or row.host or ""
    devices = []
    for idx in gpus:
        rec = records.get((host, idx))
        if rec is None:
            continue
        dev = device_facts(rec, pricing, lo, hi, usage, stored.get((rec.id, lo, hi)))
        if dev is not None:
            devices.append(dev)
    budget = row.spec.get("budget")
    cost = forecast = fraction = None
    if isinstance(budget, int | float) and row.ended is None:
        live = live_figures(store.runs(), row, pricing, now=end)
        cost, forecast, fraction = live.cost.cost, live.forecast, live.fraction
    return RunFacts(
        id=row.id,
        name=row.name,
        host=host,
        status=row.status,
        started=row.started or lo,
        ended=row.ended,
        gpus=gpus,
        devices=tuple(devices),
        sweep=row.sweep,
        exit_code=row.exit_code,
        message=row.message,
        budget=float(budget) if isinstance(budget, int | float) else None,
        cost=cost if cost is not None else row.cost,
        forecast=forecast,
        fraction=fraction,
    )


def _day_budget(store: Store, config: Config, pricing: Pricing, now: float) -> DayBudget | None:
    budget = config.alerts.daily_budget
    if budget is None:
        return None
    start = day_start(datetime.fromtimestamp(now)).timestamp()

    def cost(lo: float) -> float:
        if now <= lo:
            return 0.0
        report = price_usage(
            store.device_usage(lo, now), store.host_usage(lo, now), pricing, lo, now
        )
        return report.total.cost

    spent = cost(start)
    hour_lo = max(start, now - 3600.0)
    per_hour = cost(hour_lo) / max(1e-9, (now - hour_lo) / 3600.0) if now > hour_lo else 0.0
    return DayBudget(budget=budget, day_start=start, now=now, spent=spent, per_hour=per_hour)
