"""``costmeter report``: energy, cost, idle cost and carbon per device and host, with totals."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import time
from collections.abc import Iterator
from typing import Any

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.cli.table import render
from costmeter.config import Config
from costmeter.core.units import format_duration, format_energy_kwh, parse_duration
from costmeter.cost.chargeback import Amounts, ChargebackReport, parse_by
from costmeter.cost.ledger import CostReport, format_money
from costmeter.cost.run_cost import format_cost
from costmeter.cost.storage import GB, StorageCharge, monthly_cost
from costmeter.service.chargeback import chargeback
from costmeter.service.remote import HostStatus, read_statuses
from costmeter.service.storage_costs import storage_charge
from costmeter.service.summary import report_between
from costmeter.store import Store
from costmeter.store.lock import is_locked

CSV_FIELDS = (
    "kind",
    "host",
    "index",
    "name",
    "hours",
    "avg_util",
    "energy_kwh",
    "energy_source",
    "cost",
    "idle_cost",
    "carbon_kg",
)


@contextlib.contextmanager
def _window_store(
    args: argparse.Namespace, now: float | None
) -> Iterator[tuple[Config, Store | None, float, float]]:
    """The configuration, the open store (None, having said why, when there is no database yet)
    and the ``--since`` window ending now; the store is closed on the way out."""
    config = load_config_from(args)
    since = parse_duration(args.since)
    end = time.time() if now is None else now
    db = resolve_db(args, config)
    if not db.exists():
        say(f"there is no database at {db} yet. Record first: costmeter record --db {db}")
        yield config, None, end - since, end
        return
    store = Store.open(db)
    try:
        if store.notice:
            say(store.notice)
        yield config, store, end - since, end
    finally:
        store.close()


def build_report(args: argparse.Namespace, now: float | None = None) -> CostReport | None:
    with _window_store(args, now) as (config, store, start, end):
        return None if store is None else report_between(store, config.pricing(), start, end)


def build_storage(args: argparse.Namespace, now: float | None = None) -> StorageCharge | None:
    """Runs' outputs kept in the window, priced per GB-month (None when none were measured)."""
    with _window_store(args, now) as (config, store, start, end):
        return None if store is None else storage_charge(store, config.pricing(), start, end)


def build_chargeback(args: argparse.Namespace, now: float | None = None) -> ChargebackReport | None:
    """``report --by``: the same window and prices as the plain report, split over owners."""
    with _window_store(args, now) as (config, store, start, end):
        if store is None:
            return None
        by = parse_by(args.by)
        return chargeback(store, config, start, end, by, share_idle=args.share_idle)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "by", None):
        return _run_chargeback(args)
    if getattr(args, "share_idle", None) is not None:
        say(
            "--share-idle and --no-share-idle split idle over owners: give them with --by "
            "(e.g. --by user)."
        )
        return 2
    try:
        report = build_report(args)
    except ValueError as exc:
        say(str(exc))
        return 2
    if report is None:
        return 1
    remote = _remote_statuses(args)
    storage = build_storage(args)
    if args.format == "json":
        data = report.to_dict()
        data["remote_hosts"] = [_status_dict(s) for s in remote]
        # Not in "total" (compute): storage recurs while the outputs are kept.
        data["storage"] = None if storage is None else storage.to_dict()
        print(json.dumps(data, indent=2))
    elif args.format == "csv":
        print(_csv(report.to_dict(), storage), end="")
    else:
        print(_table(report, args.since))
        if storage is not None:
            print(storage_line(storage, report.total.cost))
        if remote:
            live = is_locked(resolve_db(args, load_config_from(args)))
            print(_hosts_section(remote, live))
    return 0


def _run_chargeback(args: argparse.Namespace) -> int:
    try:
        report = build_chargeback(args)
    except ValueError as exc:
        say(str(exc))
        return 2
    if report is None:
        return 1
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif args.format == "csv":
        print(chargeback_csv(report), end="")
    else:
        print(chargeback_table(report, args.since))
    return 0


# -- remote hosts (written by the recorder that collects from them) ---------------------------
def _remote_statuses(args: argparse.Namespace) -> list[HostStatus]:
    db = resolve_db(args, load_config_from(args))
    return read_statuses(db) if db.exists() else []


def _status_dict(s: HostStatus) -> dict[str, Any]:
    return {
        "name": s.name,
        "url": s.url,
        "kind": s.kind,
        "state": s.state,
        "last_contact": s.last_contact,
        "newest_sample": s.newest_sample,
        "lag_s": s.lag_s,
        "error": s.error,
    }


def _clock(ts: float | None) -> str:
    if ts is None:
        return "never"
    fmt = "%H:%M" if time.time() - ts < 86400 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(ts))


def _hosts_section(statuses: list[HostStatus], recording: bool) -> str:
    lines = ["", "Hosts" + ("" if recording else " (as last seen: no recorder is running now)")]
    for s in statuses:
        if s.state in ("disconnected", "error"):
            since = "never reached" if s.last_contact is None else f"since {_clock(s.last_contact)}"
            why = f" ({s.error})" if s.error else ""
            lines.append(f"{s.name}: {s.state} {since}{why}")
        else:
            newest = _clock(s.newest_sample)
            lines.append(f"{s.name}: {s.state}, newest sample {newest} ({s.kind}, {s.url})")
    return "\n".join(lines)


def storage_line(s: StorageCharge, compute: float) -> str:
    """The report's storage line: GB-months kept in the window x the price, and the total."""
    cur = s.currency
    return (
        f"Storage: run outputs kept {s.gb_months:.3g} GB-months in this window x "
        f"{s.price_gb_month:g} {cur}/GB-month = {format_cost(s.cost, cur)} "
        f"(compute and storage: {format_cost(compute + s.cost, cur)}); now "
        f"{s.bytes_at_end / GB:.3g} GB of {s.runs} run(s), "
        f"{format_cost(monthly_cost(s.bytes_at_end, s.price_gb_month), cur)}/month to keep."
    )


def _csv(data: dict[str, Any], storage: StorageCharge | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for d in data["devices"]:
        writer.writerow({"kind": "gpu", **d})
    for h in data["hosts"]:
        writer.writerow(
            {"kind": "cpu", "index": "", "name": "CPU", **h, "energy_kwh": h["cpu_energy_kwh"]}
        )
    writer.writerow({"kind": "total", **data["total"]})
    if storage is not None:
        writer.writerow({"kind": "storage", "name": "run outputs", "cost": storage.cost})
    return out.getvalue()


def _carbon(kg: float) -> str:
    return f"{kg:.2f} kg" if kg >= 1 else f"{kg * 1000:.0f} g"


def _table(report: CostReport, since: str) -> str:
    cur = report.currency

    def money(v: float) -> str:
        return format_money(v, cur)

    headers = ["HOST", "GPU", "NAME", "TIME", "UTIL", "ENERGY", "SOURCE", "RATE", "COST"]
    headers += ["IDLE COST", "CO2e"]
    rows = []
    notes: list[str] = []
    for d in report.devices:
        util = "n/a" if d.avg_util is None else f"{d.avg_util:.0f}%"
        name = d.name + (" (lost)" if d.lost else "")
        rate = f"{money(d.hourly_price)}/h" + ("" if d.price_known else "?")
        if not d.price_known:
            notes.append(f"? no price for '{d.name}': add a [[cost.gpu]] row to your config.")
        energy = format_energy_kwh(d.energy_kwh) + ("*" if d.energy_in_price else "")
        rows.append(
            [
                d.host,
                str(d.index),
                name,
                format_duration(d.hours * 3600),
                util,
                energy,
                d.energy_source,
                rate,
                money(d.cost),
                money(d.idle_cost),
                _carbon(d.carbon_kg),
            ]
        )
    if any(d.energy_in_price for d in report.devices):
        notes.append("* the hourly rate already pays for this energy: shown, not charged again.")
    for h in report.hosts:
        util = f"{100 * h.used_core_hours / h.core_hours:.0f}%" if h.core_hours else "n/a"
        rate = f"{money(h.core_cost / h.hours) if h.hours else money(0)}/h"
        rows.append(
            [
                h.host,
                "cpu",
                f"{h.cpu_count} CPUs",
                format_duration(h.hours * 3600),
                util,
                format_energy_kwh(h.cpu_energy_kwh),
                h.energy_source,
                rate,
                money(h.cost),
                money(h.idle_cost),
                _carbon(h.carbon_kg),
            ]
        )
    t = report.total
    rows.append(
        ["TOTAL", "", "", "", "", format_energy_kwh(t.energy_kwh), "", "", money(t.cost),
         money(t.idle_cost), _carbon(t.carbon_kg)]
    )  # fmt: skip
    span = format_duration(report.end - report.start)
    title = f"Cost over the last {since} ({span} window)"
    if not report.devices and not report.hosts:
        return title + "\nNo samples in this window. Record with: costmeter record"
    table = render(headers, rows, numeric={3, 4, 5, 7, 8, 9, 10})
    return "\n".join([title, table, *sorted(set(notes))])


# -- report --by: who pays ------------------------------------------------------------------------
#: Shown for a group whose owner has no value in the asked dimension (a process with no Slurm job).
NONE_KEY = "(none)"
CHARGEBACK_CSV_FIELDS = ("gpu_hours", "energy_kwh", "cost", "idle_cost", "carbon_kg", "share")


def _share(cost: float, total: float) -> str:
    return f"{100 * cost / total:.1f}%" if total else "n/a"


def _gpu_hours(hours: float) -> str:
    """Whole hours for big figures, two significant digits for a short window's fractions."""
    if hours >= 100:
        return f"{hours:,.0f}"
    if hours >= 0.01 or hours == 0:
        return f"{hours:.2f}"
    return f"{hours:.2g}"


def chargeback_table(report: ChargebackReport, since: str) -> str:
    cur = report.currency

    def cells(a: Amounts) -> list[str]:
        return [
            _gpu_hours(a.gpu_hours),
            format_energy_kwh(a.energy_kwh),
            format_cost(a.cost, cur),
            format_cost(a.idle_cost, cur),
            _carbon(a.carbon_kg),
            _share(a.cost, report.total.cost),
        ]

    headers = [d.upper() for d in report.by]
    headers += ["GPU-HOURS", "ENERGY", "COST", "IDLE COST", "CO2e", "SHARE"]
    pad = [""] * (len(report.by) - 1)
    rows = [[NONE_KEY if v is None else v for v in g.key.values()] + cells(g.amounts)
            for g in report.groups]  # fmt: skip
    rows.append(["UNATTRIBUTED", *pad, *cells(report.unattributed)])
    rows.append(["IDLE" + (" (shared)" if report.share_idle else ""), *pad, *cells(report.idle)])
    rows.append(["TOTAL", *pad, *cells(report.total)])
    span = format_duration(report.end - report.start)
    title = f"Who pays over the last {since} ({span} window), by {', '.join(report.by)}"
    if not report.groups and not report.total.cost and not report.total.gpu_hours:
        return title + "\nNo samples in this window. Record with: costmeter record"
    first = len(report.by)
    table = render(headers, rows, numeric=set(range(first, first + 6)))
    lines = [title, table]
    for why, cost in report.unattributed_why.items():
        lines.append(f"unattributed {format_cost(cost, cur)}: {why}")
    lines.extend(report.notes)
    return "\n".join(lines)


def chargeback_csv(report: ChargebackReport) -> str:
    """One row per group, then unattributed, idle and total (``kind`` says which)."""
    out = io.StringIO()
    fields = ["kind", *report.by, *CHARGEBACK_CSV_FIELDS]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    total = report.total.cost

    def row(kind: str, key: dict[str, str | None], a: Amounts) -> dict[str, Any]:
        share = a.cost / total if total else 0.0
        return {"kind": kind, **key, **a.to_dict(), "share": share}

    for g in report.groups:
        writer.writerow(row("group", {k: v or "" for k, v in g.key.items()}, g.amounts))
    writer.writerow(row("unattributed", {}, report.unattributed))
    writer.writerow(row("idle", {}, report.idle))
    writer.writerow(row("total", {}, report.total))
    return out.getvalue()
