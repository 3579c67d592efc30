"""``costmeter whatif``: a finished run (or a GPU's recent work) estimated on every priced model."""

from __future__ import annotations

import argparse
import json
from typing import Any

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.cli.table import render
from costmeter.core.errors import StoreError
from costmeter.core.units import parse_duration
from costmeter.cost.whatif import WhatIf
from costmeter.cost.whatif_text import HEADERS, NUMERIC, cells, closing
from costmeter.service.whatif import whatif_device, whatif_run
from costmeter.store import Store

#: Exit status when the database is missing or unreadable (as ``advise``).
NO_DATABASE = 3


def run(args: argparse.Namespace) -> int:
    config = load_config_from(args)
    db = resolve_db(args, config)
    if not db.exists():
        say(f"there is no database at {db} yet. Record or run something first.")
        return NO_DATABASE
    try:
        # Never creates or moves a file: these only read.
        store = Store.open(db, create=False)
    except StoreError as exc:
        say(str(exc))
        return NO_DATABASE
    try:
        if args.run is not None:
            result = whatif_run(store, config, args.run, args.precision)
        else:
            since = parse_duration(args.since, label="--since")
            result = whatif_device(store, config, args.device, since, args.precision)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(as_json(result), indent=2))
        return 0
    for note in result.notes:
        say(note)
    print(table(result))
    print()
    print(closing(result))
    return 0


def table(result: WhatIf) -> str:
    rows = [cells(o, result.currency) for o in result.options]
    return render(HEADERS, rows, numeric=set(NUMERIC))


def as_json(result: WhatIf) -> dict[str, Any]:
    w = result.workload
    return {
        "workload": {
            "model": w.model or None,
            "device_name": w.device_name,
            "duration_s": w.duration_s,
            "gpu_count": w.gpu_count,
            "peak_mem_bytes": w.peak_mem_bytes,
            "peak_basis": w.peak_basis,
            "gpu_util_pct": w.gpu_util_pct,
            "mem_util_pct": w.mem_util_pct,
        },
        "precision": result.precision,
        "balance": None
        if result.balance is None
        else {
            "busy_share": result.balance.busy_share,
            "memory_share": result.balance.memory_share,
            "memory_known": result.balance.memory_known,
        },
        "currency": result.currency,
        "actual_cost": result.actual_cost,
        "options": [
            {
                "model": o.model,
                "current": o.current,
                "hourly": o.hourly,
                "memory_gib": o.memory_gib,
                "fits": o.fits,
                "duration_s": o.duration_s,
                "cost": o.cost,
                "saving": o.saving,
                "saving_share": o.saving_share,
                "compute_ratio": o.compute_ratio,
                "bandwidth_ratio": o.bandwidth_ratio,
                "reason": o.reason or None,
                "basis": o.basis or None,
            }
            for o in result.options
        ],
        "cheapest_fit": (best.model if (best := result.cheapest_fit()) is not None else None),
        "stands_on": result.stands_on(),
        "notes": list(result.notes),
    }
