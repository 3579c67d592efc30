"""What the Who pays page shows, worked out without Qt: periods, table rows, the stacked series.

The page asks ``costmeter.service.chargeback.chargeback`` on the reader thread and turns its
``ChargebackReport`` into the rows and curves below, so these functions are tested on
hand-made reports as well as on real ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from costmeter.config import Config
from costmeter.cost.chargeback import CPU_MODEL, Amounts, ChargebackReport, Who, owner_key
from costmeter.service.reading import Store

#: The dimensions the picker offers (``tag:`` takes its key from a text field).
DIMENSION_CHOICES: tuple[tuple[str, str], ...] = (
    ("user", "User"),
    ("job", "Slurm job"),
    ("account", "Slurm account"),
    ("container", "Container"),
    ("pod", "Pod"),
    ("namespace", "Namespace"),
    ("run", "Costmeter run"),
    ("project", "Project"),
    ("host", "Host"),
    ("gpu-model", "GPU model"),
    ("tag:", "Tag…"),
)
#: Periods: key, label. "today" and "month" start at local midnight / the 1st.
PERIODS: tuple[tuple[str, str], ...] = (
    ("today", "Today"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("month", "This month"),
)
HOUR_S = 3600.0
DAY_S = 86400.0
#: Owners drawn one by one in the chart; the rest are summed as "others".
TOP_OWNERS = 6
OTHERS = "others"
IDLE = "Idle (held by nobody)"
UNATTRIBUTED = "Unattributed"
TOTAL = "Total"
#: How an owner with no value for a dimension is shown.
NONE_LABEL = "(none)"


def period_range(period: str, now: float | None = None) -> tuple[float, float]:
    """``(start, end)`` in Unix seconds for a period key, ending now."""
    end = time.time() if now is None else now
    local = datetime.fromtimestamp(end)
    if period == "today":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    elif period == "month":
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    elif period == "24h":
        start = end - DAY_S
    elif period == "7d":
        start = end - 7 * DAY_S
    elif period == "30d":
        start = end - 30 * DAY_S
    else:
        raise ValueError(f"unknown period {period!r}: one of {', '.join(k for k, _ in PERIODS)}")
    return start, end


def bucket_for(start: float, end: float) -> float:
    """Hourly buckets up to 7 days, daily beyond (a few hundred bars at most)."""
    return HOUR_S if end - start <= 7 * DAY_S + 1 else DAY_S


def dimension_name(choice: str, tag_key: str) -> str | None:
    """The dimension for a picker choice; None for "tag:" without a key yet."""
    if choice != "tag:":
        return choice
    key = tag_key.strip()
    return f"tag:{key}" if key else None


def key_text(key: Mapping[str, str | None], by: Sequence[str]) -> str:
    """``alice`` or ``vision / alice``: the owner as one line of text."""
    return " / ".join(key.get(d) or NONE_LABEL for d in by)


@dataclass(frozen=True, slots=True)
class TableRow:
    """One line of the table: an owner, or Unattributed, Idle, Total."""

    kind: str  # "group", "unattributed", "idle" or "total"
    #: One cell per dimension ("" in the extra cells of the summary rows).
    cells: tuple[str, ...]
    amounts: Amounts
    #: Of the total cost (0..1); None on the Total row.
    share: float | None
    #: The owner's key (empty for the summary rows).
    key: Mapping[str, str | None]
    tooltip: str = ""


def table_rows(report: ChargebackReport) -> list[TableRow]:
    """The groups (cost descending), then Unattributed, Idle and Total."""
    by = report.by
    rows = [
        TableRow(
            "group",
            tuple(g.key.get(d) or NONE_LABEL for d in by),
            g.amounts,
            g.share,
            dict(g.key),
        )
        for g in report.groups
    ]
    total = report.total.cost
    pad = ("",) * (len(by) - 1)

    def share(cost: float) -> float:
        return cost / total if total else 0.0

    why = "\n".join(
        f"{reason}: {cost:.4g} {report.currency}"
        for reason, cost in sorted(report.unattributed_why.items(), key=lambda kv: -kv[1])
    )
    rows.append(
        TableRow(
            "unattributed",
            (UNATTRIBUTED, *pad),
            report.unattributed,
            share(report.unattributed.cost),
            {},
            why or "Use whose owner could not be read",
        )
    )
    idle_tip = (
        "Machine idle, shared out over the owners by their cost (share idle is on)"
        if report.share_idle
        else "GPU and CPU time nobody held (OpenCost's idle: asset cost - workload cost)"
    )
    rows.append(TableRow("idle", (IDLE, *pad), report.idle, share(report.idle.cost), {}, idle_tip))
    rows.append(TableRow("total", (TOTAL, *pad), report.total, None, {}, "\n".join(report.notes)))
    return rows


@dataclass(frozen=True, slots=True)
class StackedSeries:
    """Bucket starts and, per layer (bottom first), the cost in each bucket."""

    buckets: tuple[float, ...]
    #: (label, costs per bucket); idle first (at the bottom), unattributed, then owners, then
    #: "others".
    layers: tuple[tuple[str, tuple[float, ...]], ...]


def stacked_series(
    report: ChargebackReport, *, top: int = TOP_OWNERS, bucket_s: float | None = None
) -> StackedSeries:
    """The report's series as stacked layers: idle, unattributed, the ``top`` owners by cost,
    then others. (CPU idle and untracked CPU time have no buckets: they are in the table only.)

    Buckets with nothing in them are filled with zeros when ``bucket_s`` is given, so that the
    bars stand at their real times.
    """
    points = report.series
    seen = sorted({p.bucket for p in points})
    if bucket_s and seen:
        first = math.floor(report.start / bucket_s) * bucket_s
        count = math.ceil((report.end - first) / bucket_s)
        grid = {first + i * bucket_s for i in range(max(count, 0))}
        buckets = sorted(grid | set(seen))
    else:
        buckets = seen
    where = {b: i for i, b in enumerate(buckets)}
    order = [tuple(g.key.get(d) for d in report.by) for g in report.groups]
    leading = set(order[:top])
    costs: dict[str, list[float]] = {}
    labels: list[str] = []

    def layer(label: str) -> list[float]:
        if label not in costs:
            costs[label] = [0.0] * len(buckets)
            labels.append(label)
        return costs[label]

    idle = layer(IDLE)
    unreadable = layer(UNATTRIBUTED)
    for key in order[:top]:
        layer(" / ".join(v or NONE_LABEL for v in key))
    for p in points:
        i = where[p.bucket]
        key = tuple(p.key) if p.key is not None else ()
        if p.kind == "unattributed":
            unreadable[i] += p.cost
        elif not key:
            idle[i] += p.cost
        elif key in leading:
            layer(" / ".join(v or NONE_LABEL for v in key))[i] += p.cost
        else:
            layer(OTHERS)[i] += p.cost
    layers = tuple((label, tuple(costs[label])) for label in labels if any(costs[label]))
    return StackedSeries(tuple(buckets), layers)


def empty_text(start: float, end: float) -> str:
    """What the page says when no process was seen on a GPU in the period."""
    fmt = "%Y-%m-%d %H:%M"
    return (
        f"No process was seen on a GPU between {time.strftime(fmt, time.localtime(start))} and "
        f"{time.strftime(fmt, time.localtime(end))}.\n"
        "Record with `costmeter record` (or keep this window open), launch work with "
        "`costmeter run --tag team=NAME -- CMD`, or try `costmeter simulate`."
    )


def is_empty(report: ChargebackReport) -> bool:
    """No owner was charged and no GPU time went unattributed: no process was seen on a GPU
    (what is left is idle, and CPU time of processes Costmeter did not track)."""
    return not report.groups and report.unattributed.gpu_hours == 0


@dataclass(frozen=True, slots=True)
class OwnerFootprint:
    """Where an owner's GPU time went in a period: the pages filter on it."""

    key: Mapping[str, str | None]
    start: float
    end: float
    uuids: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    run_ids: frozenset[int] = frozenset()
    #: (host, pid) of the owner's processes.
    pids: frozenset[tuple[str, int]] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.uuids or self.hosts or self.run_ids)


def owner_footprint(
    store: Store, config: Config, start: float, end: float, key: Mapping[str, str | None]
) -> OwnerFootprint:
    """The GPUs, hosts, runs and processes of the owner ``key`` in ``[start, end]``, keyed the
    way ``chargeback`` keys its groups (on the reader thread: one attribution query)."""
    by = tuple(key)
    wanted = tuple(key[d] for d in by)
    data = store.attribution(start, end)
    models = {d.uuid: d.name for d in store.devices()}
    rules = config.attribution.rules
    uuids: set[str] = set()
    hosts: set[str] = set()
    runs: set[int] = set()
    pids: set[tuple[str, int]] = set()

    def matches(proc_id: int, model: str) -> bool:
        record = data.processes.get(proc_id)
        if record is None:
            return False
        tags = data.run_tags.get(record.run_id, {}) if record.run_id is not None else {}
        who = Who(record.owner, record.run_id, tags, record.host, model)
        if owner_key(who, by, rules) != wanted:
            return False
        hosts.add(record.host)
        pids.add((record.host, record.pid))
        if record.run_id is not None:
            runs.add(record.run_id)
        return True

    for share in data.shares:
        if matches(share.proc_id, models.get(share.uuid, "")):
            uuids.add(share.uuid)
    for use in data.cpu:  # processes that only used the CPU: their hosts and runs
        matches(use.proc_id, CPU_MODEL)
    if by == ("run",) and wanted[0] is not None and wanted[0].isdigit():
        run_id = int(wanted[0])  # GPUs the run held with nothing on them are the run's too
        runs.add(run_id)
        uuids.update(f.uuid for f in data.free if f.run_id == run_id)
    return OwnerFootprint(
        dict(key), start, end, frozenset(uuids), frozenset(hosts), frozenset(runs), frozenset(pids)
    )
