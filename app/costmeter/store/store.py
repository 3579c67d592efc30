"""``Store``: reading history and small admin tasks. Readers never block the writer (WAL).

A reader never moves or replaces a file: a damaged, locked or unreadable database is a
``StoreError`` (see ``store.errors``) whose message names the cause; SQLite errors raised while
reading are translated the same way.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costmeter.core.model import DeviceUsage, HostUsage
from costmeter.store import queries, usage
from costmeter.store.attribution import Attribution, attribution
from costmeter.store.database import DEFAULT_BUSY_TIMEOUT, open_database
from costmeter.store.errors import classify, is_busy
from costmeter.store.holders import describe_holders
from costmeter.store.lock import lock_holder
from costmeter.store.retention import Cutoffs, RetentionPolicy, apply_retention, read_cutoffs
from costmeter.store.rollup import HOUR_MS, MINUTE_MS, rebuild_rollups
from costmeter.store.runs import RunStore
from costmeter.store.schema import schema_version
from costmeter.store.share_rollup import rebuild_shares


@dataclass(frozen=True, slots=True)
class HostRecord:
    id: int
    hostname: str
    cpu_count: int | None
    cpu_model: str | None
    memory_total: int | None
    physical_cores: int | None
    first_seen: float | None
    last_seen: float | None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: int
    host_id: int
    host: str
    index: int
    uuid: str
    name: str
    memory_total: int | None
    power_limit_w: float | None
    architecture: str | None
    compute_capability: tuple[int, int] | None
    unsupported: frozenset[str]
    first_seen: float | None
    last_seen: float | None
    lost_at: float | None


def _capability(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


class Store:
    """One open database for reading (and admin). Safe to share between threads."""

    def __init__(self, conn: sqlite3.Connection, path: Path, notice: str | None = None) -> None:
        self.path = path
        #: A message for the user from opening, or None (kept for callers; a reader opening
        #: never moves a file aside, so it is None unless a caller passes one).
        self.notice = notice
        self._conn = conn
        self._mutex = threading.RLock()
        self._runs: RunStore | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> Store:
        """Open for reading (create and migrate a missing file); never moves a file aside.

        Raises a ``StoreError`` subclass naming the cause: damaged, locked (and by whom),
        read-only, disk full, I/O error, or a path that cannot be a database.
        """
        conn, notice = open_database(path, create=create, busy_timeout=busy_timeout)
        return cls(conn, Path(path), notice)

    def close(self) -> None:
        with self._mutex:
            self._conn.close()

    @contextmanager
    def _using(self, doing: str = "read") -> Iterator[None]:
        """Hold the connection's lock; an SQLite error leaves as a ``StoreError`` with its cause."""
        with self._mutex:
            try:
                yield
            except sqlite3.Error as err:
                holder = describe_holders(self.path) if is_busy(err) else ""
                raise classify(err, self.path, doing=doing, holder=holder) from err

    def __enter__(self) -> Store:
        return self

    @property
    def _db(self) -> Any:
        """sqlite-utils over this connection, for the admin writes that use it; imported on
        first use (~0.2 s), so readers and the desktop app's start-up never pay for it."""
        import sqlite_utils

        return sqlite_utils.Database(self._conn, execute_plugins=False)

    def _dicts(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        cur = self._conn.execute(sql, tuple(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def runs(self) -> RunStore:
        """The run rows, read through this store's connection (and under its lock)."""
        with self._mutex:
            if self._runs is None:
                runs = RunStore(self._conn, self.path)
                runs._mutex = self._mutex  # one connection, one lock (same package)
                self._runs = runs
            return self._runs

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._using():
            return schema_version(self._conn)

    def _cutoffs(self) -> Cutoffs:
        return read_cutoffs(self._conn)

    # -- records ---------------------------------------------------------------------------

    def hosts(self) -> list[HostRecord]:
        with self._using():
            rows = self._dicts(
                "SELECT id, hostname, cpu_count, cpu_model, memory_total, physical_cores,"
                " first_seen, last_seen FROM hosts ORDER BY hostname"
            )
            return [HostRecord(**r) for r in rows]

    def devices(self, host: str | None = None) -> list[DeviceRecord]:
        sql = (
            "SELECT d.id, d.host_id, h.hostname AS host, d.idx AS [index], d.uuid, d.name,"
            " d.memory_total, d.power_limit_w, d.architecture, d.compute_capability,"
            " d.unsupported, d.first_seen, d.last_seen, d.lost_at"
            " FROM devices d JOIN hosts h ON h.id = d.host_id"
        )
        params: list[object] = []
        if host is not None:
            sql += " WHERE h.hostname = ?"
            params.append(host)
        with self._using():
            rows = self._dicts(sql + " ORDER BY h.hostname, d.idx", params)
        out = []
        for r in rows:
            r["name"] = r["name"] or ""
            r["compute_capability"] = _capability(r["compute_capability"])
            r["unsupported"] = frozenset(json.loads(r["unsupported"] or "[]"))
            out.append(DeviceRecord(**r))
        return out

    # -- series and totals -----------------------------------------------------------------

    def query_series(
        self, device_id: int, metric: str, start: float, end: float, max_points: int = 2000
    ) -> queries.Series:
        """One device metric over ``[start, end)`` with at most ``max_points`` points.

        Raw samples when at most ``max_points`` lie in the range and raw data still covers it,
        else 1-minute rollups if they fit, else 1-hour rollups, merged further if needed.
        Metrics: gpu_util, mem_util, mem_used, power_w, temp_c, sm_clock_mhz, mem_clock_mhz.
        """
        with self._using():
            return queries.query_series(
                self._conn, "device", device_id, metric, start, end, max_points, self._cutoffs()
            )

    def query_host_series(
        self, host_id: int, metric: str, start: float, end: float, max_points: int = 2000
    ) -> queries.Series:
        """Like ``query_series`` for a host: cpu_percent, mem_used, load1, swap_used,
        disk_read_bps, disk_write_bps, net_rx_bps, net_tx_bps."""
        with self._using():
            return queries.query_series(
                self._conn, "host", host_id, metric, start, end, max_points, self._cutoffs()
            )

    def device_usage(self, start: float, end: float, *, coarse: bool = False) -> list[DeviceUsage]:
        """``coarse``: sum whole hours and minutes from the rollups (same totals, far fewer
        rows read over long ranges; see ``store.usage``)."""
        with self._using():
            return usage.device_usage(self._conn, start, end, self._cutoffs(), coarse)

    def host_usage(self, start: float, end: float, *, coarse: bool = False) -> list[HostUsage]:
        with self._using():
            return usage.host_usage(self._conn, start, end, self._cutoffs(), coarse)

    def attribution(
        self,
        start: float,
        end: float,
        *,
        bucket_s: float | None = None,
        free_of: Callable[[frozenset[str]], Collection[str]] | None = None,
    ) -> Attribution:
        """Who used what in ``[start, end)`` (raw samples only; see ``store.attribution``):
        per-process GPU shares, free GPU time, CPU core-seconds, the processes with their
        owners and runs, and the runs' tags; per ``bucket_s`` bucket when given; free time of
        some GPUs only with ``free_of``. Read in one snapshot, so the parts add up."""
        with self._using():
            began = not self._conn.in_transaction
            if began:
                self._conn.execute("BEGIN")  # deferred: a read snapshot, no lock taken
            try:
                return attribution(
                    self._conn, start, end, self._cutoffs(), bucket_s=bucket_s, free_of=free_of
                )
            finally:
                if began and self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    def time_range(self) -> tuple[float, float] | None:
        """First and last sample time over every resolution, or None for an empty store."""
        firsts: list[int] = []
        lasts: list[int] = []
        with self._using():
            for kind, table in (("device", "devices"), ("host", "hosts")):
                ids = [r[0] for r in self._conn.execute(f"SELECT id FROM {table}")]
                for obj_id in ids:
                    span = self._span(kind, obj_id)
                    if span is not None:
                        firsts.append(span[0])
                        lasts.append(span[1])
        if not firsts:
            return None
        return min(firsts) / 1000, max(lasts) / 1000

    def _span(self, kind: str, obj_id: int) -> tuple[int, int] | None:
        """Raw bounds, extended by rollup buckets only where they reach before the raw rows."""
        first: int | None = None
        last: int | None = None
        for src, width in (("samples", 1), ("rollup_1m", MINUTE_MS), ("rollup_1h", HOUR_MS)):
            # min and max apart, each one step down the (id, ts) primary key (SQLite scans
            # every row of the id for both in one SELECT).
            lo, hi = self._conn.execute(
                f"SELECT (SELECT min(ts) FROM {kind}_{src} WHERE {kind}_id = :id),"
                f" (SELECT max(ts) FROM {kind}_{src} WHERE {kind}_id = :id)",
                {"id": obj_id},
            ).fetchone()
            if lo is None:
                continue
            if first is None or lo < first - first % width:
                first = lo
            if last is None:
                last = hi
        return None if first is None or last is None else (first, last)

    # -- admin -----------------------------------------------------------------------------

    def lock_holder(self) -> str | None:
        """The recorder writing this file (``PID 1234, `costmeter record```), or None."""
        return lock_holder(self.path)

    def integrity_check(self) -> str:
        """``ok`` or SQLite's list of problems."""
        with self._using():
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with self._using():
            row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self._using("written"):
            self._db.table("settings").upsert({"key": key, "value": value}, pk="key")

    def apply_retention(self, policy: RetentionPolicy, now: float) -> Cutoffs:
        """Prune what ``policy`` no longer keeps (the recorder also does this on its own)."""
        with self._using("written"):
            return apply_retention(self._conn, policy, now)

    def rebuild_rollups(self) -> None:
        """Recompute all rollups from the raw rows (after a bulk load that bypassed the writer)."""
        with self._using("written"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                rebuild_rollups(self._conn)
                rebuild_shares(self._conn, read_cutoffs(self._conn).raw)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
