"""Retention deletes old CPU-side process rows process by process (an indexed range each), and
exactly those a scan by time would."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import ProcessSample
from costmeter.store import RetentionPolicy, Writer
from costmeter.store.retention import apply_retention
from costmeter.store.testing import device_infos, host_info, make_tick

T0 = 1_699_999_200.0
DAY = 86_400.0


def test_old_process_rows_go_and_recent_ones_stay(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    w = Writer(
        db,
        clock=SimulatedClock(T0),
        retention=RetentionPolicy(raw_days=None, minute_days=None, hour_days=None),
    )
    w.start()
    w.register(host_info("h"), device_infos("h", 2))
    for k in range(0, 3 * 24 * 60, 7):  # three days, a sample every 7 minutes
        tick = make_tick(T0 + 60 * k, host="h", with_processes=True)
        hs = tick.host_sample
        assert hs is not None
        # A process of its own every few hours besides the tick's usual ones.
        extra = ProcessSample(40_000 + k // 180, T0, "job", "job", "me", 5.0, 1 << 20, 1.0)
        w.submit(
            dataclasses.replace(
                tick, host_sample=dataclasses.replace(hs, processes=(*hs.processes, extra))
            )
        )
    w.flush()
    w.stop()
    con = sqlite3.connect(db, isolation_level=None)
    now = T0 + 3 * DAY
    cut_ms = round((now - DAY) * 1000) // 60_000 * 60_000
    total = con.execute("SELECT count(*) FROM process_samples").fetchone()[0]
    old = con.execute("SELECT count(*) FROM process_samples WHERE ts < ?", (cut_ms,)).fetchone()
    procs = con.execute("SELECT count(DISTINCT proc_id) FROM process_samples").fetchone()[0]
    assert old[0] and old[0] < total and procs > 10
    kept = con.execute(
        "SELECT * FROM process_samples WHERE ts >= ? ORDER BY 1, 2", (cut_ms,)
    ).fetchall()
    cutoffs = apply_retention(con, RetentionPolicy(raw_days=1, minute_days=None), now)
    assert cutoffs.raw == cut_ms
    assert con.execute("SELECT * FROM process_samples ORDER BY 1, 2").fetchall() == kept
    con.close()
