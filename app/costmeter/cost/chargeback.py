"""Who pays: a window's cost split over owners (users, jobs, containers, runs, tags...).

Pure: it takes the store's ``Attribution`` (process shares of each GPU, GPUs with nobody on them,
processes' CPU time) and the ``CostReport`` of the same window (each device's hourly price, the
tariff, whether the price includes energy, and the totals), and returns a ``ChargebackReport``.

- A process's share of a GPU is priced like the GPU itself: hours x hourly price, plus energy x
  tariff unless the price includes energy. Its busy and held-idle time go to its owner's cost;
  the held-idle part is also the owner's ``idle_cost`` (allocated, running nothing).
- A GPU with no process on it is charged to the Costmeter run placed on it (as idle) when there
  is one, else it is machine ``idle`` (OpenCost's idle: asset cost - workload cost).
- CPU: a tracked process's core-seconds at the core-hour price plus its share of the host's CPU
  energy (share of busy core-seconds, as for runs); busy core time nobody tracked is
  ``unattributed``; unused core time is ``idle``.
- A process whose owner could not be read at all is ``unattributed``, with the reason.
- ``share_idle`` (OpenCost's shareIdle): machine idle is spread over the owners, per resource
  (idle GPU cost by their GPU cost, idle CPU cost by their CPU cost), and the report says so.
- Whatever of the report's total the samples do not cover is not hidden: GPU time before the
  oldest per-process minute and CPU time before the oldest raw sample are ``unattributed`` (each
  with its reason), the rest shows as the ``gap``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from costmeter.core.owner import Owner
from costmeter.cost.chargeback_report import (
    ZERO,
    Amounts,
    ChargebackReport,
    OwnerGroup,
    SeriesPoint,
    total_of,
)
from costmeter.cost.ledger import J_PER_KWH, CostReport, DeviceCost, HostCost
from costmeter.cost.owner_keys import (
    CPU_MODEL,
    DIMENSIONS,
    TAG_PREFIX,
    AttributionRule,
    Who,
    check_dimension,
    owner_key,
    parse_by,
    project_of,
    unreadable_why,
)
from costmeter.cost.pricing import Pricing

__all__ = [
    "CPU_MODEL",
    "DIMENSIONS",
    "TAG_PREFIX",
    "WHY_UNTRACKED_CPU",
    "Amounts",
    "AttributionData",
    "AttributionRule",
    "ChargebackReport",
    "OwnerGroup",
    "SeriesPoint",
    "Who",
    "check_dimension",
    "compute_chargeback",
    "owner_key",
    "parse_by",
    "project_of",
]

#: Resources, each with its own idle (shared over its own users with share_idle).
GPU, CPU = "gpu", "cpu"
#: Reasons in ``unattributed_why``.
WHY_UNTRACKED_CPU = "CPU used by processes Costmeter did not track"
WHY_UNKNOWN_DEVICE = "GPU missing from the cost report"


# -- what the store hands over (costmeter.store.attribution); structural, so cost needs no store --
class _Share(Protocol):
    @property
    def uuid(self) -> str: ...
    @property
    def proc_id(self) -> int: ...
    @property
    def bucket(self) -> float | None: ...
    @property
    def busy_s(self) -> float: ...
    @property
    def held_idle_s(self) -> float: ...
    @property
    def energy_j(self) -> float: ...
    @property
    def idle_energy_j(self) -> float: ...


class _Free(Protocol):
    @property
    def uuid(self) -> str: ...
    @property
    def bucket(self) -> float | None: ...
    @property
    def seconds(self) -> float: ...
    @property
    def energy_j(self) -> float: ...
    @property
    def run_id(self) -> int | None: ...


class _Cpu(Protocol):
    @property
    def proc_id(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def bucket(self) -> float | None: ...
    @property
    def core_s(self) -> float: ...


class _Process(Protocol):
    @property
    def proc_id(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def owner(self) -> Owner: ...
    @property
    def run_id(self) -> int | None: ...


class AttributionData(Protocol):
    """The shape of ``costmeter.store.Attribution``."""

    @property
    def shares(self) -> Sequence[_Share]: ...
    @property
    def free(self) -> Sequence[_Free]: ...
    @property
    def cpu(self) -> Sequence[_Cpu]: ...
    @property
    def processes(self) -> Mapping[int, _Process]: ...
    @property
    def run_tags(self) -> Mapping[int, Mapping[str, str]]: ...
    @property
    def covered_from(self) -> float | None: ...
    @property
    def cpu_covered_from(self) -> float | None: ...


# -- the engine ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Ledger:
    """Amounts gathered per group key, per reason, per bucket while the engine walks the data."""

    #: key -> resource ("gpu" or "cpu") -> amounts.
    groups: dict[tuple[str | None, ...], dict[str, list[Amounts]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    unattributed: dict[str, list[Amounts]] = field(default_factory=lambda: defaultdict(list))
    #: resource -> amounts.
    idle: dict[str, list[Amounts]] = field(default_factory=lambda: defaultdict(list))
    series: dict[tuple[float, tuple[str | None, ...]], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    #: bucket -> GPU cost whose owner could not be read.
    unattributed_series: dict[float, float] = field(default_factory=lambda: defaultdict(float))

    def to_group(
        self, key: tuple[str | None, ...], resource: str, amounts: Amounts, bucket: float | None
    ) -> None:
        self.groups[key][resource].append(amounts)
        if bucket is not None:
            self.series[(bucket, key)] += amounts.cost

    def to_unattributed(self, why: str, amounts: Amounts, bucket: float | None) -> None:
        self.unattributed[why].append(amounts)
        if bucket is not None:
            self.unattributed_series[bucket] += amounts.cost

    def to_idle(self, resource: str, amounts: Amounts, bucket: float | None) -> None:
        self.idle[resource].append(amounts)
        if bucket is not None:
            self.series[(bucket, ())] += amounts.cost


class _Prices:
    def __init__(self, costs: CostReport, pricing: Pricing) -> None:
        self.devices: dict[str, DeviceCost] = {d.uuid: d for d in costs.devices}
        self.pricing = pricing

    def gpu(self, device: DeviceCost, seconds: float, energy_j: float, idle: bool) -> Amounts:
        """``seconds`` of ``device`` that drew ``energy_j``, priced as the ledger prices it."""
        hours = seconds / 3600.0
        kwh = energy_j / J_PER_KWH
        tariff = 0.0 if device.energy_in_price else self.pricing.tariff_per_kwh
        cost = hours * device.hourly_price + kwh * tariff
        return Amounts(
            gpu_hours=hours,
            energy_kwh=kwh,
            cost=cost,
            idle_cost=cost if idle else 0.0,
            carbon_kg=kwh * self.pricing.carbon_g_per_kwh / 1000.0,
        )

    def cpu(self, core_s: float, energy_j: float, idle: bool = False) -> Amounts:
        kwh = energy_j / J_PER_KWH
        cost = core_s / 3600.0 * self.pricing.cpu_core_hour + kwh * self.pricing.tariff_per_kwh
        return Amounts(
            energy_kwh=kwh,
            cost=cost,
            idle_cost=cost if idle else 0.0,
            carbon_kg=kwh * self.pricing.carbon_g_per_kwh / 1000.0,
        )


def compute_chargeback(
    attribution: AttributionData,
    costs: CostReport,
    pricing: Pricing,
    by: Sequence[str],
    *,
    rules: Sequence[AttributionRule] = (),
    share_idle: bool = False,
    raw_days: float | None = None,
    minute_days: float | None = None,
    older_gpu: CostReport | None = None,
    older_cpu: CostReport | None = None,
) -> ChargebackReport:
    """Split ``costs`` (the ``CostReport`` of the window) over owners by ``by``.

    ``minute_days`` and ``raw_days`` are how long the per-process minutes and the raw samples
    are kept (named when part of the window is older). ``older_gpu`` is the cost of the devices
    before ``attribution.covered_from`` (no process shares there), ``older_cpu`` that of the
    hosts before ``attribution.cpu_covered_from`` (no process samples there): each is
    unattributed as such (only its devices, resp. its hosts, are read). Without ``older_gpu``,
    when the window starts before ``covered_from``, whatever the samples do not cover is taken
    for the GPUs' older part.
    """
    by = tuple(check_dimension(d) for d in by)
    if not by:
        raise ValueError("give at least one dimension")
    prices = _Prices(costs, pricing)
    ledger = _Ledger()
    notes: list[str] = []
    procs = attribution.processes
    tags = attribution.run_tags

    runs_first_process = _first_process_of_runs(procs)

    def who_of(record: _Process, model: str) -> Who:
        run_tags = tags.get(record.run_id, {}) if record.run_id is not None else {}
        owner = record.owner
        if not owner.known and record.run_id is not None:
            # A row written without its owner (a GPU process seen once its CPU side had gone,
            # as a run's process exits): another process of the same run names the owner.
            first = runs_first_process.get(record.run_id)
            owner = first.owner if first is not None else owner
        return Who(owner, record.run_id, run_tags, record.host, model)

    missing: set[str] = set()
    for s in attribution.shares:
        device = prices.devices.get(s.uuid)
        record = procs.get(s.proc_id)
        if device is None:
            missing.add(s.uuid)
            continue
        busy = prices.gpu(device, s.busy_s, s.energy_j - s.idle_energy_j, idle=False)
        held = prices.gpu(device, s.held_idle_s, s.idle_energy_j, idle=True)
        amounts = busy + held
        if record is None or not (record.owner.known or record.run_id is not None):
            why = "owner not recorded" if record is None else unreadable_why(record.owner)
            ledger.to_unattributed(why, amounts, s.bucket)
            continue
        key = owner_key(who_of(record, device.name), by, rules)
        ledger.to_group(key, GPU, amounts, s.bucket)

    for f in attribution.free:
        device = prices.devices.get(f.uuid)
        if device is None:
            missing.add(f.uuid)
            continue
        amounts = prices.gpu(device, f.seconds, f.energy_j, idle=True)
        if f.run_id is None:
            ledger.to_idle(GPU, amounts, f.bucket)
            continue
        record = runs_first_process.get(f.run_id)
        owner = record.owner if record is not None else Owner()
        who = Who(owner, f.run_id, tags.get(f.run_id, {}), device.host, device.name)
        ledger.to_group(owner_key(who, by, rules), GPU, amounts, f.bucket)
    if missing:
        notes.append(
            f"{len(missing)} GPU(s) with samples but no cost in the report's window were left out: "
            + ", ".join(sorted(missing))
        )

    hosts = _covered_hosts(costs.hosts, older_cpu.hosts) if older_cpu is not None else costs.hosts
    _split_cpu(attribution, hosts, prices, by, rules, ledger, who_of)

    total = Amounts(
        gpu_hours=math.fsum(d.hours for d in costs.devices),
        energy_kwh=costs.total.energy_kwh,
        cost=costs.total.cost,
        idle_cost=0.0,  # set below: the sum of the parts' idle costs
        carbon_kg=costs.total.carbon_kg,
    )
    by_resource = {
        k: {res: total_of(items) for res, items in parts.items()}
        for k, parts in ledger.groups.items()
    }
    idle_by_resource = {res: total_of(items) for res, items in ledger.idle.items()}
    groups = {k: total_of(parts.values()) for k, parts in by_resource.items()}
    unattributed_parts = {why: total_of(v) for why, v in ledger.unattributed.items()}
    idle = total_of(idle_by_resource.values())

    gap = total - total_of([*groups.values(), *unattributed_parts.values(), idle])
    start, end = costs.start, costs.end
    covered = attribution.covered_from
    why_gpu = f"older than the per-process minutes ({_kept(minute_days)})"
    why_cpu = f"CPU older than the raw samples ({_kept(raw_days)})"
    if older_gpu is not None:
        if any(d.hours > 0 or d.cost > 0 for d in older_gpu.devices):
            unattributed_parts[why_gpu] = Amounts(
                gpu_hours=math.fsum(d.hours for d in older_gpu.devices),
                energy_kwh=math.fsum(d.energy_kwh for d in older_gpu.devices),
                cost=math.fsum(d.cost for d in older_gpu.devices),
                carbon_kg=math.fsum(d.carbon_kg for d in older_gpu.devices),
            )
    elif covered is not None and start < covered - 1.0 and gap.cost > 0:
        unattributed_parts[why_gpu] = Amounts(
            gpu_hours=max(0.0, gap.gpu_hours),
            energy_kwh=max(0.0, gap.energy_kwh),
            cost=gap.cost,
            carbon_kg=max(0.0, gap.carbon_kg),
        )
    if older_cpu is not None and any(h.hours > 0 or h.cost > 0 for h in older_cpu.hosts):
        unattributed_parts[why_cpu] = Amounts(
            energy_kwh=math.fsum(h.cpu_energy_kwh for h in older_cpu.hosts),
            cost=math.fsum(h.cost for h in older_cpu.hosts),
            carbon_kg=math.fsum(h.carbon_kg for h in older_cpu.hosts),
        )
    unattributed = total_of(unattributed_parts.values())

    series = dict(ledger.series)
    if share_idle:
        groups, idle, series = _share_idle(
            by_resource, idle_by_resource, series, notes, pricing.currency
        )
    total = replace(
        total,
        idle_cost=math.fsum(
            [*(g.idle_cost for g in groups.values()), unattributed.idle_cost, idle.idle_cost]
        ),
    )
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].cost, _sort_key(kv[0])))
    report = ChargebackReport(
        by=by,
        start=start,
        end=end,
        currency=costs.currency,
        share_idle=share_idle,
        groups=tuple(
            OwnerGroup(
                key=dict(zip(by, key, strict=True)),
                amounts=a,
                share=a.cost / total.cost if total.cost else 0.0,
            )
            for key, a in ordered
        ),
        unattributed=unattributed,
        unattributed_why={why: a.cost for why, a in unattributed_parts.items()},
        idle=idle,
        total=total,
        series=_series_points(series, ledger.unattributed_series),
        notes=tuple(notes),
    )
    gap_cost = report.gap.cost
    if total.cost and abs(gap_cost) > 1e-9 * max(1.0, total.cost):
        pct = 100.0 * gap_cost / total.cost
        report = replace(
            report,
            notes=(
                *report.notes,
                f"gap: {pct:+.2f}% of the total ({gap_cost:.6g} {costs.currency}) is in the "
                "devices' and hosts' totals but in no sample a process or an idle GPU accounts "
                "for (sampling edges, rounding).",
            ),
        )
    return report


def _kept(days: float | None) -> str:
    return f"kept {days:g} days" if days is not None else "no longer kept"


def _sort_key(key: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((k is None, k or "") for k in key)


def _first_process_of_runs(procs: Mapping[int, _Process]) -> dict[int, _Process]:
    """For a run placed on a GPU with nobody on it: a process of the run, to name its owner."""
    found: dict[int, _Process] = {}
    for proc_id in sorted(procs):
        record = procs[proc_id]
        if record.run_id is not None and record.run_id not in found and record.owner.known:
            found[record.run_id] = record
    return found


def _covered_hosts(hosts: Sequence[HostCost], older: Sequence[HostCost]) -> list[HostCost]:
    """The hosts' CPU over the part of the window the raw samples cover (the window less its
    older part), so processes' CPU time is split against that part only."""
    before = {h.host: h for h in older}
    out = []
    for h in hosts:
        o = before.get(h.host)
        if o is None:
            out.append(h)
            continue
        out.append(
            replace(
                h,
                core_hours=max(0.0, h.core_hours - o.core_hours),
                used_core_hours=max(0.0, h.used_core_hours - o.used_core_hours),
                cpu_energy_kwh=max(0.0, h.cpu_energy_kwh - o.cpu_energy_kwh),
            )
        )
    return out


def _split_cpu(
    attribution: AttributionData,
    hosts: Sequence[HostCost],
    prices: _Prices,
    by: Sequence[str],
    rules: Sequence[AttributionRule],
    ledger: _Ledger,
    who_of: Callable[[_Process, str], Who],
) -> None:
    """Each host's CPU cost: tracked processes' core time, untracked busy time, idle time."""
    uses: dict[str, list[_Cpu]] = defaultdict(list)
    for use in attribution.cpu:
        uses[use.host].append(use)
    for host in hosts:
        capacity_s = host.core_hours * 3600.0
        busy_s = host.used_core_hours * 3600.0
        host_uses = [u for u in uses.pop(host.host, []) if u.core_s > 0]
        tracked_s = math.fsum(u.core_s for u in host_uses)
        # Processes' CPU times and the host's CPU percent are two measurements: when the
        # processes add up to more than the whole machine, they are scaled down to it.
        scale = min(1.0, capacity_s / tracked_s) if tracked_s > 0 else 0.0
        tracked_s *= scale
        untracked_s = max(0.0, busy_s - tracked_s)
        idle_s = max(0.0, capacity_s - tracked_s - untracked_s)
        energy_j = host.cpu_energy_kwh * J_PER_KWH
        used_s = tracked_s + untracked_s
        per_busy_s = energy_j / used_s if used_s > 0 else 0.0
        for u in host_uses:
            core_s = u.core_s * scale
            amounts = prices.cpu(core_s, core_s * per_busy_s)
            record = attribution.processes.get(u.proc_id)
            if record is None or not (record.owner.known or record.run_id is not None):
                why = "owner not recorded" if record is None else unreadable_why(record.owner)
                ledger.unattributed[why].append(amounts)
                continue
            key = owner_key(who_of(record, CPU_MODEL), by, rules)
            ledger.to_group(key, CPU, amounts, u.bucket)
        if untracked_s > 0:
            ledger.unattributed[WHY_UNTRACKED_CPU].append(
                prices.cpu(untracked_s, untracked_s * per_busy_s)
            )
        idle_energy = energy_j if used_s <= 0 else 0.0
        if idle_s > 0 or idle_energy > 0:
            ledger.to_idle(CPU, prices.cpu(idle_s, idle_energy, idle=True), None)


def _share_idle(
    groups: Mapping[tuple[str | None, ...], Mapping[str, Amounts]],
    idle: Mapping[str, Amounts],
    series: dict[tuple[float, tuple[str | None, ...]], float],
    notes: list[str],
    currency: str,
) -> tuple[
    dict[tuple[str | None, ...], Amounts],
    Amounts,
    dict[tuple[float, tuple[str | None, ...]], float],
]:
    """OpenCost's shareIdle, per resource: idle GPU cost is spread over the owners in
    proportion to their GPU cost, idle CPU cost in proportion to their CPU cost. Idle of a
    resource no owner used stays idle."""
    shared = {k: total_of(parts.values()) for k, parts in groups.items()}
    left: list[Amounts] = []
    weights_of: dict[str, dict[tuple[str | None, ...], float]] = {}
    for resource, amounts in idle.items():
        paying = math.fsum(max(0.0, p.get(resource, ZERO).cost) for p in groups.values())
        if paying <= 0:
            left.append(amounts)
            continue
        weights = {k: max(0.0, p.get(resource, ZERO).cost) / paying for k, p in groups.items()}
        weights_of[resource] = weights
        for k, w in weights.items():
            shared[k] = shared[k] + _as_idle(amounts).scaled(w)
    new_series: dict[tuple[float, tuple[str | None, ...]], float] = defaultdict(float)
    gpu_weights = weights_of.get(GPU)
    for (bucket, key), cost in series.items():
        if key == () and gpu_weights is not None:  # idle points in the series are GPUs
            for k, w in gpu_weights.items():
                new_series[(bucket, k)] += cost * w
        else:
            new_series[(bucket, key)] += cost
    spread = math.fsum(idle[r].cost for r in weights_of)
    if weights_of:
        notes.append(
            f"idle shared: the machine idle cost ({spread:.6g} {currency}) was spread over the "
            "owners in proportion to their GPU and CPU cost (OpenCost's shareIdle)."
        )
    if any(a.cost for a in left):
        notes.append("part of the idle could not be shared: no owner used that resource.")
    return shared, total_of(left), dict(new_series)


def _as_idle(idle: Amounts) -> Amounts:
    return replace(idle, idle_cost=idle.cost)


def _series_points(
    series: Mapping[tuple[float, tuple[str | None, ...]], float],
    unattributed: Mapping[float, float],
) -> tuple[SeriesPoint, ...]:
    points = [
        SeriesPoint(bucket=b, key=k, cost=c, kind="owner" if k else "idle")
        for (b, k), c in series.items()
    ]
    points += [
        SeriesPoint(bucket=b, key=(), cost=c, kind="unattributed") for b, c in unattributed.items()
    ]
    return tuple(
        sorted(points, key=lambda p: (p.bucket, p.kind != "idle", p.kind, _sort_key(p.key)))
    )
