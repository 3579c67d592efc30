"""The store's advice queries: every window read in one call gives what the per-device queries
gave (series, the processes' memory and CPU per bucket), and advising only reads."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costmeter.advice.facts import Series
from costmeter.config import Config
from costmeter.service.advice import advise
from costmeter.service.advice_testing import History, write_history
from costmeter.service.run_reconcile import LOST_MESSAGE, reconcile_at_start
from costmeter.store import Store, advice_queries, device_windows
from costmeter.store.advice_queries import ADVICE_METRICS
from costmeter.store.runs import RunStore

# What service/advice_facts.py ran per device before the bulk query (issue 14): the reference.
OLD_HELD = (
    "SELECT t, sum(m) * 1.0 / count(DISTINCT ts) FROM (SELECT (ts / ?) * ? AS t, ts,"
    " gpu_mem AS m FROM gpu_process_samples WHERE device_id = ? AND ts >= ? AND ts < ?)"
    " GROUP BY t ORDER BY t"
)
OLD_CPU = (
    "SELECT t, sum(c) * 1.0 / count(DISTINCT ts) FROM (SELECT (p.ts / ?) * ? AS t, p.ts,"
    " p.cpu_pct AS c FROM process_samples p WHERE p.ts >= ? AND p.ts < ? AND p.proc_id IN"
    " (SELECT DISTINCT proc_id FROM gpu_process_samples WHERE device_id = ?"
    " AND ts >= ? AND ts < ?)) GROUP BY t ORDER BY t"
)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    db = tmp_path_factory.mktemp("advq") / "h.db"
    h = write_history(db, ["a100:train", "t4:input-bound", "h100:idle", "l4:free"], hours=0.5)
    # A second process on GPU 0 for part of the window, sampled at its own times, with some
    # memory unknown: sums over several processes and sample times, NULLs skipped.
    conn = sqlite3.connect(db)
    with conn:
        dev, host = conn.execute("SELECT id, host_id FROM devices ORDER BY idx").fetchone()
        conn.execute(
            "INSERT INTO processes (host_id, pid, create_time, name) VALUES (?, 999999, 0, 'x')",
            (host,),
        )
        proc = conn.execute("SELECT max(id) FROM processes").fetchone()[0]
        times = [int(h.start * 1000) + 7_300 * i for i in range(200)]
        conn.executemany(
            "INSERT INTO gpu_process_samples (device_id, ts, proc_id, gpu_mem, sm_util)"
            " VALUES (?, ?, ?, ?, 10)",
            [(dev, t, proc, None if i % 7 == 0 else 2**30 + i) for i, t in enumerate(times)],
        )
        conn.executemany(
            "INSERT INTO process_samples (proc_id, ts, cpu_pct, rss, cpu_time_s)"
            " VALUES (?, ?, ?, 0, 0)",
            [(proc, t, 12.5 + i % 3) for i, t in enumerate(times)],
        )
    conn.close()
    return h


@pytest.mark.parametrize("dense_from", [0, 4, 10**9])  # bucket by bucket, either, grouped
def test_one_call_gives_what_each_device_query_gave(
    history: History, dense_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(advice_queries, "DENSE_ROWS_PER_BUCKET", dense_from)
    with Store.open(history.db) as store:
        devices = store.devices()
        mid = (history.start + history.end) / 2
        windows = [(d.id, history.start, history.end) for d in devices]
        windows += [(devices[0].id, mid, history.end), (devices[1].id, history.start, mid)]
        for max_points in (2000, 50):  # raw samples, and buckets of several samples
            got = device_windows(store, windows, max_points=max_points)
            assert set(got) == set(windows)
            conn = sqlite3.connect(history.db)
            for key in windows:
                device_id, lo, hi = key
                for metric in ADVICE_METRICS:
                    assert got[key].series[metric] == store.query_series(
                        device_id, metric, lo, hi, max_points
                    )
                lo_ms, hi_ms = int(lo * 1000), -int(-hi * 1000)
                w = max(1, (hi_ms - lo_ms) // max_points)
                held = conn.execute(OLD_HELD, (w, w, device_id, lo_ms, hi_ms)).fetchall()
                cpu = conn.execute(OLD_CPU, (w, w, lo_ms, hi_ms, device_id, lo_ms, hi_ms))
                assert _none_for_nan(got[key].held_mem) == tuple((t / 1000, v) for t, v in held)
                want_cpu = tuple((t / 1000, v) for t, v in cpu.fetchall())
                assert [t for t, _ in got[key].proc_cpu] == [t for t, _ in want_cpu]
                assert [v for _, v in got[key].proc_cpu] == pytest.approx(
                    [v for _, v in want_cpu], rel=1e-12
                )
                if max_points == 2000 and key == windows[0]:
                    # Buckets holding only the second process's unknown memory: unknown
                    # (NaN), where the per-device query's None made advise raise TypeError.
                    assert any(v is None for _t, v in held)
            conn.close()
        assert got[windows[0]].held_mem and got[windows[1]].proc_cpu  # something was compared
        free = next(d.id for d in devices if d.index == 3)
        assert got[(free, history.start, history.end)].held_mem == ()  # no process: nothing


def _none_for_nan(rows: tuple[tuple[float, float], ...]) -> tuple[tuple[float, object], ...]:
    return tuple((t, None if math.isnan(v) else v) for t, v in rows)


def test_series_memo_is_not_part_of_equality() -> None:
    nan = float("nan")
    a, b = Series((1.0, 2.0), (3.0, nan)), Series((1.0, 2.0), (3.0, nan))
    assert a.known() == [3.0]
    assert a.cached("x", lambda: 1) == 1 and a.cached("x", lambda: 2) == 1
    assert a.memo and not b.memo
    assert a == b and hash(a) == hash(b)
    a.known().append(9.0)  # a caller's list is its own
    assert a.known() == [3.0]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _stale_run(db: Path, now: float) -> int:
    with RunStore.open(db) as runs:
        return runs.insert(
            name="left", backend="local", status="running", created=now - 600,
            started=now - 600, host=socket.gethostname(), pids=[_dead_pid()], gpus=[0],
            spec={},
        )  # fmt: skip


def _checkpointed_copy(src: Path, dst: Path) -> None:
    conn = sqlite3.connect(src)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copy(src, dst)


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_advise_changes_nothing_and_reconciling_is_left_to_run_management(
    history: History, tmp_path: Path
) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(history.db, tmp_path / "src.db")
    run_id = _stale_run(tmp_path / "src.db", history.end)
    _checkpointed_copy(tmp_path / "src.db", db)
    before = _digest(db)
    with Store.open(db) as store:
        res = advise(store, Config(), since_s=7200, now=history.end + 1)
    assert res.recommendations
    assert not any("marked lost" in m for m in res.messages)
    assert _digest(db) == before  # not a byte, not a timestamp
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    # Through a connection SQLite itself keeps from writing: any write would raise.
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
    again = advise(Store(ro, db), Config(), since_s=7200, now=history.end + 1)
    ro.close()
    assert [r.key for r in again.recommendations] == [r.key for r in res.recommendations]
    with RunStore.open(db) as runs:
        row = runs.get(run_id)
        assert row is not None and row.status == "running"
        said: list[str] = []
        # Where runs are managed (a run service starting) the abandoned run is marked lost.
        assert reconcile_at_start(runs, say=said.append) == [run_id]
        row = runs.get(run_id)
        assert row is not None and row.status == "lost" and row.message == LOST_MESSAGE
        assert said == [
            f"Run(s) {run_id} had no process left since Costmeter stopped: now marked lost."
        ]


def test_reconciling_at_start_reports_a_failure_and_does_not_raise(tmp_path: Path) -> None:
    runs = RunStore.open(tmp_path / "r.db")
    runs.close()  # a closed connection: every read fails
    said: list[str] = []
    assert reconcile_at_start(runs, say=said.append) == []
    assert len(said) == 1 and said[0].startswith("Runs left running by a Costmeter")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files anyway")
def test_advise_reads_a_read_only_file(history: History, tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    _checkpointed_copy(history.db, db)
    db.chmod(0o400)
    with Store.open(db, create=False) as store:
        assert advise(store, Config(), since_s=7200, now=history.end + 1).recommendations


def test_a_run_service_starting_marks_abandoned_runs_lost(tmp_path: Path) -> None:
    from costmeter.plugin_api import BackendConfig
    from costmeter.runs.local import LocalBackend
    from costmeter.service.runs import RunService, RunServiceOptions

    db = tmp_path / "runs.db"
    run_id = _stale_run(db, time.time())
    said: list[str] = []
    options = RunServiceOptions(db_path=db, pricing=Config().pricing(), on_message=said.append)
    service = RunService(LocalBackend(BackendConfig(state_dir=tmp_path)), options)
    try:
        assert service.reconciled == [run_id]
        row = service.store.get(run_id)
        assert row is not None and row.status == "lost"
        assert any(f"Run(s) {run_id}" in m for m in said)
    finally:
        service.close()
