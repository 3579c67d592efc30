"""History's cost card over 30 days of 1 Hz data: the reader job it runs, from rollups vs raw rows.

Run: .venv/bin/python bench/bench_history_cost.py [--days 30] [--devices 1] [--repeats 5]
The data are written as bench_history.py does (bulk raw rows, then a rollup rebuild). Timed: the
History page's cost job (``history_data.load_cost``: device and host usage, priced), which sums
whole hours and minutes from the rollups, against the same report summed from every raw row in
the range (the page's path before issue 14) on the same database in the same run. Both reports
must agree within 1 %. Target: at most 0.2 s for the 30-day card.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench_history import T0, generate
from costmeter.cost.ledger import price_usage
from costmeter.cost.pricing import load_default_pricing
from costmeter.gui.history_data import load_cost
from costmeter.store import Store


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    pricing = load_default_pricing()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "history.db"
        t = time.perf_counter()
        generate(db, args.days, args.devices)
        print(
            f"generated {args.days:g} days x {args.devices} GPUs at 1 Hz in "
            f"{time.perf_counter() - t:.1f} s; file {db.stat().st_size / 1e6:.0f} MB"
        )
        end = T0 + args.days * 86400 - 0.5
        start = end - 30 * 86400 + 7.25  # odd edges, as a panned view has
        with Store.open(db) as store:

            def raw():
                return price_usage(
                    store.device_usage(start, end),
                    store.host_usage(start, end),
                    pricing,
                    start,
                    end,
                )

            slow, report_raw = timed(raw, max(2, args.repeats // 2))
            fast, report = timed(lambda: load_cost(store, pricing, start, end), args.repeats)
    a, b = report.total.cost, report_raw.total.cost
    if abs(a - b) > 0.01 * abs(b):
        raise SystemExit(f"the reports disagree: rollups {a!r}, raw {b!r}")
    print(
        f"30-day cost: {report.total.cost:.2f} {report.currency} from rollups, "
        f"{report_raw.total.cost:.2f} from raw rows"
    )
    print(
        f"history 30-day cost card, median of {args.repeats}: {fast * 1000:.1f} ms from rollups, "
        f"{slow * 1000:.0f} ms from raw rows; ratio raw/rollups {slow / fast:.0f} "
        "(target <= 200 ms)"
    )


if __name__ == "__main__":
    main()
