"""Writing an imported log into history: one transaction, idempotent, rollups included.

``ImportTransaction`` opens the database, takes the write lock (``BEGIN IMMEDIATE``) and keeps
the transaction open while rows are added in batches; ``commit`` updates the device records
and the rollups of every bucket the import touched, then commits. Any failure rolls back, so
an import is either all written or not at all.

Samples are keyed by (device, time), as the recorder keys them. A reading whose key is already
stored only fills that row's empty columns, so importing a file twice adds nothing, and two
single-metric exports of one GPU combine into one series.

Retention: a reading older than the raw cut-off lands in a minute whose raw rows were pruned. If
that minute (or, before the minute cut-off, that hour) already has a rollup, the reading is left
out: the rollup already stands for that time. Otherwise its rollups are computed from the
imported rows. Readings older than the hour cut-off are left out (history no longer goes back
that far).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from costmeter.core.errors import StoreError
from costmeter.core.model import DeviceInfo, DeviceSample, Interval
from costmeter.store.database import DEFAULT_BUSY_TIMEOUT, open_database
from costmeter.store.retention import Cutoffs, read_cutoffs
from costmeter.store.rollup import HOUR_MS, MINUTE_MS, update_buckets
from costmeter.store.rows import device_row

_COLUMNS = ("gpu_util", "mem_util", "mem_used", "power_mw", "temp_c", "sm_clock", "mem_clock")
_BETTER = (
    "(power_mw IS NULL AND excluded.power_mw IS NOT NULL AND excluded.energy_mj IS NOT NULL"
    " AND NOT energy_measured)"
)
#: Insert, or fill only the empty columns of the row already there (and count only real changes).
UPSERT = (
    "INSERT INTO device_samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (device_id, ts) DO UPDATE SET "
    + ", ".join(f"{c} = coalesce({c}, excluded.{c})" for c in _COLUMNS)
    # Energy integrated from power readings replaces an estimate from utilisation (an earlier
    # import without power.draw), never energy from a hardware counter. SET sees the old row.
    + ", energy_measured = CASE WHEN energy_mj IS NULL OR "
    + _BETTER
    + " THEN"
    " excluded.energy_measured ELSE energy_measured END"
    ", energy_mj = CASE WHEN " + _BETTER + " THEN excluded.energy_mj"
    " ELSE coalesce(energy_mj, excluded.energy_mj) END"
    ", dt_ms = CASE WHEN dt_ms = 0 THEN excluded.dt_ms ELSE dt_ms END"
    " WHERE "
    + " OR ".join(f"({c} IS NULL AND excluded.{c} IS NOT NULL)" for c in (*_COLUMNS, "energy_mj"))
)


@dataclass
class ImportCounts:
    """What the transaction did (valid once committed)."""

    #: Rows inserted, or existing rows that got values they lacked.
    written: int = 0
    #: Readings whose row was already complete (imported before, or recorded).
    unchanged: int = 0
    #: Readings left out because retention already summarised (or dropped) their time.
    summarised: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    devices: set[int] = field(default_factory=set)


class ImportTransaction:
    """Adds imported readings to the database at ``path`` inside one write transaction."""

    BATCH = 5000

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        self.path = Path(path)
        try:
            self._conn, self.notice = open_database(self.path, busy_timeout=busy_timeout)
        except sqlite3.Error as err:
            raise StoreError(f"The database {self.path} could not be opened ({err}).") from err
        self.counts = ImportCounts()
        self._rows: list[tuple[object, ...]] = []
        self._minutes: dict[int, set[int]] = {}
        self._summarised_minutes: dict[tuple[int, int], bool] = {}
        self._summarised_hours: dict[tuple[int, int], bool] = {}
        self._device_ids: dict[str, int] = {}
        self._spans: dict[int, list[float]] = {}
        self._host_id: int | None = None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._cutoffs: Cutoffs = read_cutoffs(self._conn)
        except sqlite3.Error as err:
            self._conn.close()
            raise self._failed(err) from err

    # -- adding ----------------------------------------------------------------------------

    def host(self, hostname: str) -> None:
        """The host the imported GPUs belong to (created if new; an existing one is kept)."""
        self._guard(self._host, hostname)

    def device(self, info: DeviceInfo, first: float) -> None:
        """Register (or find) a GPU by its uuid before its readings are added."""
        self._guard(self._device, info, first)

    def add(self, sample: DeviceSample, interval: Interval) -> None:
        self._guard(self._add, sample, interval)

    def commit(self, devices: Sequence[DeviceInfo]) -> ImportCounts:
        """Write what is pending, update device records and rollups, and commit."""
        self._guard(self._finish, devices)
        return self.counts

    def rollback(self) -> None:
        """Forget everything added (the database is as it was); safe to call twice."""
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        finally:
            self._conn.close()

    # -- inside the transaction ---------------------------------------------------------------

    def _guard(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except sqlite3.Error as err:
            self.rollback()
            raise self._failed(err) from err

    def _failed(self, err: sqlite3.Error) -> StoreError:
        text = str(err)
        if "full" in text.lower():
            text += ": the disk is full"
        return StoreError(
            f"Importing into {self.path} failed ({text}); nothing was written, the database "
            "is as it was before."
        )

    def _host(self, hostname: str) -> None:
        row = self._conn.execute("SELECT id FROM hosts WHERE hostname = ?", (hostname,)).fetchone()
        if row is None:
            # first_seen and last_seen come from the imported readings, in ``_finish``.
            cur = self._conn.execute(
                "INSERT INTO hosts (hostname, cpu_count) VALUES (?, 1)", (hostname,)
            )
            self._host_id = int(cur.lastrowid or 0)
        else:
            self._host_id = int(row[0])

    def _device(self, info: DeviceInfo, first: float) -> None:
        if self._host_id is None:
            raise StoreError("ImportTransaction.host must be called before device.")
        row = self._conn.execute("SELECT id FROM devices WHERE uuid = ?", (info.uuid,)).fetchone()
        if row is None:
            cur = self._conn.execute(
                "INSERT INTO devices (host_id, idx, uuid, name, memory_total, power_limit_w,"
                " unsupported, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, '[]', ?, ?)",
                (
                    self._host_id,
                    info.index,
                    info.uuid,
                    info.name,
                    info.memory_total or None,
                    info.power_limit_w,
                    first,
                    first,
                ),
            )
            did = int(cur.lastrowid or 0)
        else:
            did = int(row[0])
        self._device_ids[info.uuid] = did

    def _add(self, sample: DeviceSample, interval: Interval) -> None:
        did = self._device_ids[sample.uuid]
        ts_ms = round(sample.ts * 1000)
        if self._already_summarised(did, ts_ms):
            self.counts.summarised += 1
            return
        self._rows.append(device_row(did, sample, interval))
        minute = ts_ms - ts_ms % MINUTE_MS
        self._minutes.setdefault(did, set()).add(minute)
        span = self._spans.get(did)
        if span is None:
            self._spans[did] = [sample.ts, sample.ts]
        else:
            span[0] = min(span[0], sample.ts)
            span[1] = max(span[1], sample.ts)
        if len(self._rows) >= self.BATCH:
            self._flush()

    def _already_summarised(self, did: int, ts_ms: int) -> bool:
        cut = self._cutoffs
        if ts_ms >= cut.raw:
            return False
        if ts_ms < cut.hour:
            return True
        if ts_ms < cut.minute:
            key = (did, ts_ms - ts_ms % HOUR_MS)
            table, cache = "device_rollup_1h", self._summarised_hours
        else:
            key = (did, ts_ms - ts_ms % MINUTE_MS)
            table, cache = "device_rollup_1m", self._summarised_minutes
        known = cache.get(key)
        if known is None:
            found = self._conn.execute(
                f"SELECT 1 FROM {table} WHERE device_id = ? AND ts = ?", key
            ).fetchone()
            known = cache[key] = found is not None
        return known

    def _flush(self) -> None:
        if not self._rows:
            return
        before = self._conn.total_changes
        self._conn.executemany(UPSERT, self._rows)
        written = self._conn.total_changes - before
        self.counts.written += written
        self.counts.unchanged += len(self._rows) - written
        self._rows.clear()

    def _finish(self, devices: Sequence[DeviceInfo]) -> None:
        self._flush()
        for info in devices:
            did = self._device_ids.get(info.uuid)
            if did is None:
                continue
            # Fill what the record lacks; a name the user gave (--gpu-model) replaces an empty one.
            self._conn.execute(
                "UPDATE devices SET name = CASE WHEN coalesce(name, '') = '' THEN ? ELSE name END,"
                " memory_total = coalesce(memory_total, ?),"
                " power_limit_w = coalesce(power_limit_w, ?) WHERE id = ?",
                (info.name, info.memory_total or None, info.power_limit_w, did),
            )
        for did, (first, last) in self._spans.items():
            self._conn.execute(
                "UPDATE devices SET first_seen = min(coalesce(first_seen, ?1), ?1),"
                " last_seen = max(coalesce(last_seen, ?2), ?2) WHERE id = ?3",
                (first, last, did),
            )
            self.counts.devices.add(did)
            c = self.counts
            c.first_ts = first if c.first_ts is None else min(c.first_ts, first)
            c.last_ts = last if c.last_ts is None else max(c.last_ts, last)
        if self._host_id is not None and self.counts.first_ts is not None:
            self._conn.execute(
                "UPDATE hosts SET first_seen = min(coalesce(first_seen, ?1), ?1),"
                " last_seen = max(coalesce(last_seen, ?2), ?2) WHERE id = ?3",
                (self.counts.first_ts, self.counts.last_ts, self._host_id),
            )
        update_buckets(self._conn, "device", self._minutes)
        self._conn.execute("COMMIT")
        self._conn.close()
