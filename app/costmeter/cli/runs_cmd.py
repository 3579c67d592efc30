"""``costmeter runs``: the runs Costmeter launched, newest first, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from costmeter.advice.rules.storage import size_text
from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.cli.run_cmd import energy_text, seconds_text
from costmeter.cli.table import render
from costmeter.core.tags import format_tags
from costmeter.cost.run_cost import format_cost
from costmeter.service.run_costs import reprice_estimated
from costmeter.service.run_prediction import calibration_of
from costmeter.service.run_reconcile import reconcile_stale_runs
from costmeter.store.runs import ESTIMATED, MEASURED, RunRow, RunStore


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        say(f"--limit must be at least 1, not {args.limit}.")
        return 2
    config = load_config_from(args)
    db = resolve_db(args, config)
    if not db.exists():
        if getattr(args, "calibration", False):
            return _print_calibration(args, [])
        if args.format == "json":
            print("[]")
        else:
            say(f"there is no database at {db} yet, so no runs. Start one: costmeter run -- CMD")
        return 0
    with RunStore.open(db) as store:
        lost = reconcile_stale_runs(store)
        # Estimated job costs whose node's samples have arrived since (a late agent): measured.
        repriced = reprice_estimated(store, config.pricing())
        rows = store.list_runs(args.limit)
    if repriced:
        say(
            f"run(s) {', '.join(map(str, repriced))}: samples of their node arrived, so their "
            "estimated cost is now the measured one."
        )
    if lost:
        say(
            f"run(s) {', '.join(map(str, lost))} had no process left after Costmeter stopped: "
            "marked lost."
        )
    if getattr(args, "calibration", False):
        return _print_calibration(args, rows)
    if args.format == "json":
        print(json.dumps([as_json(r) for r in rows], indent=2))
        return 0
    if not rows:
        say(f"no runs in {db} yet. Start one: costmeter run -- CMD")
        return 0
    currency = config.pricing().currency
    print(table(rows, currency))
    return 0


def _print_calibration(args: argparse.Namespace, rows: list[RunRow]) -> int:
    """``--calibration``: how the predictions of these runs fared."""
    found = calibration_of(rows)
    if args.format == "json":
        print(json.dumps(found.to_json(), indent=2))
    else:
        print(found.describe())
    return 0


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def as_json(r: RunRow) -> dict[str, Any]:
    """One run; times are ISO 8601 in UTC, money in ``currency``, unrounded."""
    return {
        "id": r.id,
        "name": r.name,
        "backend": r.backend,
        "status": r.status,
        "exit_code": r.exit_code,
        "started": _iso(r.started),
        "ended": _iso(r.ended),
        "created": _iso(r.created),
        "duration_s": r.duration_s,
        "host": r.host,
        "node": r.node,
        "gpus": r.gpus,
        "pids": r.pids,
        "gpu_hours": None if r.gpu_seconds is None else r.gpu_seconds / 3600,
        "cpu_seconds": r.cpu_seconds,
        "energy_kwh": r.energy_kwh,
        "cost": r.cost,
        "currency": r.currency,
        "cost_basis": cost_basis(r),
        "cost_note": r.cost_note or None,
        "job": r.job,
        "allocated_gpus": r.allocated_gpus,
        "estimate": r.estimate,
        "estimate_runs": r.estimate_runs,
        "predicted_duration_s": r.predicted_duration_s,
        "predicted_cost": r.predicted_cost,
        "predicted_low": r.predicted_low,
        "predicted_high": r.predicted_high,
        "prediction_basis": r.prediction_basis,
        "sweep": r.sweep,
        "tags": dict(r.tags),
        "argv": r.spec.get("argv", []),
        "message": r.message,
        # Its output folders as last measured; what keeping them costs per month (apart from
        # "cost", which is compute and paid once: docs/STORAGE.md).
        "storage_bytes": r.storage_bytes,
        "storage_files": r.storage_files,
        "storage_cost_per_month": r.storage_cost,
    }


def table(rows: list[RunRow], currency: str) -> str:
    """One line per run; a tags column when one of the runs has tags."""
    tagged = any(r.tags for r in rows)
    stored = any(r.storage_bytes is not None for r in rows)
    headers = [
        "id",
        "name",
        "backend",
        "status",
        "exit",
        "started",
        "duration",
        "on GPUs",
        "energy",
        "cost",
    ]
    if stored:
        headers.append("stored")
    if tagged:
        headers.append("tags")
    body = []
    for r in rows:
        started = (
            datetime.fromtimestamp(r.started).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            if r.started is not None
            else "-"
        )
        cells = [
            str(r.id),
            r.name,
            r.backend,
            r.status,
            "" if r.exit_code is None else str(r.exit_code),
            started,
            "" if r.duration_s is None else seconds_text(r.duration_s),
            ",".join(f"#{i}" for i in r.gpus) or "-",
            "" if r.energy_kwh is None else energy_text(r.energy_kwh),
            cost_text(r, currency),
        ]
        if stored:
            cells.append(stored_text(r, currency))
        if tagged:
            cells.append(tags_text(r.tags))
        body.append(tuple(cells))
    return render(headers, body, numeric={0, 4, 6, 8, 9})


def cost_basis(r: RunRow) -> str | None:
    """``measured`` or ``estimated`` for a priced run, None before it is priced."""
    if r.cost is None:
        return None
    return ESTIMATED if r.estimated else MEASURED


def cost_text(r: RunRow, currency: str) -> str:
    """The cost cell: ``$1.23``, or ``~$1.23 est.`` when no sample covered the run."""
    if r.cost is None:
        return ""
    money = format_cost(r.cost, r.currency or currency)
    return f"~{money} est." if r.estimated else money


def stored_text(r: RunRow, currency: str) -> str:
    """The stored cell: "5.3 MB, $0.00042/mo" (its outputs, and keeping them a month)."""
    if r.storage_bytes is None:
        return ""
    text = size_text(r.storage_bytes)
    if r.storage_cost is not None:
        text += f", {format_cost(r.storage_cost, r.currency or currency)}/mo"
    return text


#: The tags column is cut here (``runs --format json`` has them whole).
TAGS_WIDTH = 40


def tags_text(tags: Mapping[str, str]) -> str:
    text = format_tags(tags)
    return text if len(text) <= TAGS_WIDTH else text[: TAGS_WIDTH - 1] + "…"
