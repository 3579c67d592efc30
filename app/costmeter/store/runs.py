"""Runs in the database: their rows, and the samples attributed to each.

A run's row is written by the process that launched it (``costmeter run``, the desktop app),
through its own connection: the recorder's writer keeps the samples, this keeps the runs, and
WAL lets both write one file. Attribution reads what the recorder stored: the run's processes
(its PIDs, started during the run) in ``process_samples`` and ``gpu_process_samples``, and the
device samples of the GPUs it held, cut to the run's lifetime.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from costmeter.core.hostnames import pick_host, short_name
from costmeter.core.model import HostUsage
from costmeter.core.tags import clean_tags
from costmeter.store.database import DEFAULT_BUSY_TIMEOUT, open_database
from costmeter.store.retention import read_cutoffs
from costmeter.store.run_storage import (
    StorageRow,
    StoredSize,
    add_storage,
    storage_between,
    storage_history,
)
from costmeter.store.usage import host_usage

_JSON_COLUMNS = frozenset({"spec", "gpus", "pids", "handle_data", "tags"})
_OBJECT_COLUMNS = frozenset({"spec", "handle_data", "tags"})
#: A process counts as the run's when it started no earlier than this before the run (clock
#: granularity of ``create_time``); older processes with a reused PID are someone else's.
CREATE_SLACK_S = 2.0
UNFINISHED = ("queued", "starting", "running")
#: ``runs.cost_basis`` of a cost worked out from elapsed time x GPUs x price, not samples.
ESTIMATED = "estimated"
MEASURED = "measured"
#: A job's processes seen this long after the run's end still count (the scheduler's end time
#: is whole seconds; the last sample of the job may come just after it).
JOB_END_SLACK_S = 1.0


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    name: str
    backend: str
    spec: dict[str, Any]
    status: str
    created: float | None
    started: float | None
    ended: float | None
    exit_code: int | None
    gpus: list[int]
    pids: list[int]
    host: str | None
    node: str | None
    message: str
    handle_key: str | None
    handle_data: dict[str, str]
    run_dir: str | None
    command_key: str | None
    sweep: str | None
    gpu_seconds: float | None
    cpu_seconds: float | None
    energy_kwh: float | None
    cost: float | None
    currency: str | None
    estimate: float | None
    estimate_runs: int | None
    #: The run this one was relaunched from (an applied recommendation); None otherwise.
    parent_id: int | None = None
    #: ``--tag KEY=VALUE`` of the run (a JSON object in the ``tags`` column).
    tags: dict[str, str] = field(default_factory=dict)
    #: The batch scheduler's job id (Slurm's ``SLURM_JOB_ID``): the run is charged what the
    #: processes of that job used on its node.
    job: str | None = None
    #: GPUs the scheduler allocated to the job, when it said.
    allocated_gpus: int | None = None
    #: What ``cost`` stands on: None/"measured" (samples) or "estimated" (see ``cost_note``).
    cost_basis: str | None = None
    #: Why the cost is estimated (or what it lacks); "" when there is nothing to say.
    cost_note: str = ""
    #: The prediction made before launching (issue 16): duration, cost, its range and what it
    #: stood on ("fitted on 9 past runs ..."); None when there was nothing to predict from.
    predicted_duration_s: float | None = None
    predicted_cost: float | None = None
    predicted_low: float | None = None
    predicted_high: float | None = None
    prediction_basis: str | None = None
    #: The run's output on disk, last measured (``run_storage`` holds the measurements over
    #: time) and what keeping it costs at the storage price.
    storage_bytes: int | None = None
    storage_files: int | None = None
    storage_cost: float | None = None

    @property
    def estimated(self) -> bool:
        return self.cost_basis == ESTIMATED

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        return max(0.0, (self.ended if self.ended is not None else self.started) - self.started)


_COLUMNS = tuple(f.name for f in fields(RunRow))
_WRITABLE = frozenset(_COLUMNS) - {"id"}


class ShareRow(NamedTuple):
    """One device interval within a run, with the run's and others' processes on the GPU
    (the fields of ``costmeter.cost.run_cost.GpuTick``)."""

    dt_s: float
    energy_j: float | None
    energy_measured: bool
    run_procs: int
    run_mem: int | None
    run_sm: float | None
    other_procs: int
    other_mem: int | None
    other_sm: float | None
    holders: int


@dataclass(frozen=True, slots=True)
class DeviceShares:
    host: str
    index: int
    uuid: str
    name: str
    rows: tuple[ShareRow, ...]


@dataclass(frozen=True, slots=True)
class RunSamples:
    """What the samples say a run used between ``start`` and ``end``."""

    start: float
    end: float
    devices: tuple[DeviceShares, ...]
    #: CPU seconds of the run's sampled processes; None when none was sampled.
    cpu_seconds: float | None
    cpu_count: int
    host: HostUsage | None
    #: The stored host the samples are of (the node's name as the store spells it), if any.
    hostname: str | None = None
    #: Seconds of ``[start, end]`` that samples of that host (its own or its GPUs') cover.
    sampled_s: float = 0.0
    #: How many of the run's processes (its PIDs', its job's) the samples hold.
    processes: int = 0


class PastRow(NamedTuple):
    """A finished run of a command family (``RunStore.family_runs``)."""

    id: int
    command_key: str
    duration_s: float
    cost: float
    gpu_model: str | None
    nproc: int
    run_dir: str | None


def _decode(row: sqlite3.Row | tuple[Any, ...]) -> RunRow:
    values = dict(zip(_COLUMNS, row, strict=True))
    raw_tags = values.pop("tags")
    for col in _JSON_COLUMNS - {"tags"}:
        raw = values[col]
        values[col] = json.loads(raw) if raw else ({} if col in _OBJECT_COLUMNS else [])
    values["message"] = values["message"] or ""
    values["cost_note"] = values["cost_note"] or ""
    values["tags"] = _decode_tags(raw_tags)
    return RunRow(**values)


def _decode_tags(raw: str | None) -> dict[str, str]:
    """A row's tags; a damaged column reads as no tags rather than hiding the run."""
    try:
        return clean_tags(json.loads(raw)) if raw else {}
    except ValueError:
        return {}


def _encode(col: str, value: object) -> object:
    if col == "tags" and isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True)
    if col in _JSON_COLUMNS:
        return json.dumps(value, sort_keys=True)
    return value


class RunStore:
    """Reads and writes run rows through its own connection. Safe to share between threads."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, *, owns_connection: bool = False
    ) -> None:
        self._conn = conn
        self.path = path
        self._mutex = threading.RLock()
        # ``family_runs`` answers are kept only where every write through the connection
        # passes through this object (see ``_FamilyMemo``); not on a ``Store``'s connection.
        self._family = _FamilyMemo() if owns_connection else None

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> RunStore:
        # Never moves a damaged file aside: the recorder (or Store.open) decides that.
        conn, _ = open_database(path, busy_timeout=busy_timeout, replace_corrupt=False)
        return cls(conn, Path(path), owns_connection=True)

    def close(self) -> None:
        with self._mutex:
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rows -----------------------------------------------------------------------------------

    def insert(self, **values: object) -> int:
        """A new run row; returns its id. Keys are ``RunRow`` field names (not ``id``)."""
        bad = set(values) - _WRITABLE
        if bad:
            raise ValueError(f"Unknown run columns: {', '.join(sorted(bad))}.")
        cols = list(values)
        marks = ",".join("?" * len(cols))
        with self._mutex:
            cur = self._conn.execute(
                f"INSERT INTO runs ({','.join(cols)}) VALUES ({marks})",
                [_encode(c, values[c]) for c in cols],
            )
            run_id = int(cur.lastrowid or 0)
            if self._family is not None:
                self._family.inserted(run_id, values)
            return run_id

    def update(self, run_id: int, **values: object) -> None:
        bad = set(values) - _WRITABLE
        if bad:
            raise ValueError(f"Unknown run columns: {', '.join(sorted(bad))}.")
        if not values:
            return
        sets = ", ".join(f"{c} = ?" for c in values)
        with self._mutex:
            try:
                self._conn.execute(
                    f"UPDATE runs SET {sets} WHERE id = ?",
                    [*(_encode(c, v) for c, v in values.items()), run_id],
                )
            finally:  # a failed statement may still have changed the row
                if self._family is not None:
                    self._family.updated(run_id, values)

    def get(self, run_id: int) -> RunRow | None:
        with self._mutex:
            row = self._conn.execute(
                f"SELECT {','.join(_COLUMNS)} FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        return None if row is None else _decode(row)

    def list_runs(
        self, limit: int | None = None, *, sweep: str | None = None, ids: Iterable[int] = ()
    ) -> list[RunRow]:
        """Newest first."""
        sql = f"SELECT {','.join(_COLUMNS)} FROM runs"
        params: list[object] = []
        where = []
        if sweep is not None:
            where.append("sweep = ?")
            params.append(sweep)
        id_list = list(ids)
        if id_list:
            where.append(f"id IN ({','.join('?' * len(id_list))})")
            params.extend(id_list)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY coalesce(created, started, 0) DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._mutex:
            rows = self._conn.execute(sql, params).fetchall()
        return [_decode(r) for r in rows]

    def unfinished(self) -> list[RunRow]:
        """Runs whose row says queued, starting or running."""
        marks = ",".join("?" * len(UNFINISHED))
        with self._mutex:
            rows = self._conn.execute(
                f"SELECT {','.join(_COLUMNS)} FROM runs WHERE status IN ({marks}) ORDER BY id",
                UNFINISHED,
            ).fetchall()
        return [_decode(r) for r in rows]

    # -- output sizes (run_storage) ------------------------------------------------------------

    def add_storage(
        self,
        run_id: int,
        ts: float,
        sizes: Sequence[StoredSize],
        *,
        storage_cost: float | None = None,
    ) -> None:
        """A measurement of the run's output folders; the totals go in its row."""
        with self._mutex:
            add_storage(self._conn, run_id, ts, sizes, storage_cost)

    def storage_history(self, run_id: int) -> list[StorageRow]:
        with self._mutex:
            return storage_history(self._conn, run_id)

    def storage_between(self, start: float, end: float) -> list[StorageRow]:
        with self._mutex:
            return storage_between(self._conn, start, end)

    def mark_lost(self, run_id: int, *, ended: float, message: str) -> bool:
        """Mark a run lost, only while its row still says it is unfinished (a service that
        still owns it and writes its real end wins). True when the row changed."""
        marks = ",".join("?" * len(UNFINISHED))
        with self._mutex:
            try:
                cur = self._conn.execute(
                    f"UPDATE runs SET status = 'lost', ended = ?, message = ?"
                    f" WHERE id = ? AND status IN ({marks})",
                    (ended, message, run_id, *UNFINISHED),
                )
            finally:
                if self._family is not None:
                    self._family.updated(run_id, {"status": "lost", "ended": ended})
            return cur.rowcount > 0

    def last_sampled(self, run: RunRow) -> float | None:
        """When one of the run's processes was last sampled on its host; None if never."""
        if not run.pids or run.started is None:
            return None
        marks = ",".join("?" * len(run.pids))
        with self._mutex:
            row = self._conn.execute(
                "SELECT max(s.ts) FROM process_samples s JOIN processes p ON p.id = s.proc_id"
                " JOIN hosts h ON h.id = p.host_id"
                f" WHERE p.pid IN ({marks}) AND (? IS NULL OR h.hostname = ?)"
                " AND (p.create_time = 0 OR p.create_time >= ?)",
                (*run.pids, run.host, run.host, run.started - CREATE_SLACK_S),
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0]) / 1000.0

    def past_costs(
        self, command_key: str, *, currency: str, limit: int = 20, exclude: int | None = None
    ) -> list[float]:
        """Costs of the latest succeeded runs of the same command, newest first."""
        with self._mutex:
            rows = self._conn.execute(
                "SELECT cost FROM runs WHERE command_key = ? AND status = 'succeeded'"
                " AND cost IS NOT NULL AND currency = ? AND id != ? ORDER BY id DESC LIMIT ?",
                (command_key, currency, -1 if exclude is None else exclude, limit),
            ).fetchall()
        return [float(r[0]) for r in rows]

    def family_runs(self, key_prefix: str, *, currency: str, limit: int = 500) -> list[PastRow]:
        """The latest succeeded, priced runs whose command key (after its ``gpus=N``) starts
        with ``key_prefix``, newest first: what a prediction fits (``service.run_prediction``
        keeps those of the same family). The GPU model is that of the run's first GPU on its
        host, when the store knows it.

        The answer is kept and brought up to date from the rows this store wrote since (a run
        service predicts every run it queues: hundreds in a sweep); the whole query runs again
        whenever another connection has written to the file."""
        escaped = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = escaped + "%"
        with self._mutex:
            memo = self._family
            if memo is None:
                return _family_rows(self._conn, currency, pattern, limit)
            return memo.rows(self._conn, currency, pattern, limit)

    def estimated_runs(self) -> list[RunRow]:
        """Finished runs whose cost is an estimate (to price again once samples arrive)."""
        marks = ",".join("?" * len(UNFINISHED))
        with self._mutex:
            rows = self._conn.execute(
                f"SELECT {','.join(_COLUMNS)} FROM runs WHERE cost_basis = ?"
                f" AND status NOT IN ({marks}) ORDER BY id",
                (ESTIMATED, *UNFINISHED),
            ).fetchall()
        return [_decode(r) for r in rows]

    def gpu_model(self, node: str) -> str | None:
        """The GPU model of the stored host ``node`` means (its most common device name), or
        None when the store knows no GPU there."""
        with self._mutex:
            host = find_host(self._conn, node)
            if host is None:
                return None
            row = self._conn.execute(
                "SELECT name FROM devices WHERE host_id = ? AND coalesce(name, '') != ''"
                " GROUP BY name ORDER BY count(*) DESC, name LIMIT 1",
                (host[0],),
            ).fetchone()
        return None if row is None else str(row[0])

    # -- attribution ----------------------------------------------------------------------------

    def samples(self, run: RunRow, end: float | None = None) -> RunSamples:
        """The samples attributed to ``run`` from its start to its end (or ``end`` if given,
        for a run still going)."""
        start = run.started if run.started is not None else (run.created or 0.0)
        stop = end if end is not None else (run.ended if run.ended is not None else start)
        with self._mutex:
            return _samples(self._conn, run, start, max(start, stop))


#: The columns ``family_runs`` reads: an update of none of them leaves its answers as they were.
_FAMILY_COLUMNS = frozenset(
    {"status", "cost", "currency", "started", "ended", "command_key", "spec", "run_dir"}
    | {"node", "host", "gpus"}
)
#: Columns that must not be NULL for a row to be one of ``family_runs``'s.
_FAMILY_NOT_NULL = ("cost", "currency", "started", "ended", "command_key")
_FAMILY_SQL = (
    "SELECT r.id, r.command_key, r.ended - r.started, r.cost, r.spec, r.run_dir,"
    " (SELECT d.name FROM devices d JOIN hosts h ON h.id = d.host_id"
    "  WHERE h.hostname = coalesce(r.node, r.host)"
    "  AND d.idx = json_extract(r.gpus, '$[0]') AND coalesce(d.name, '') != ''"
    "  ORDER BY coalesce(d.last_seen, 0) DESC LIMIT 1)"
    " FROM runs r WHERE r.status = 'succeeded' AND r.cost IS NOT NULL"
    " AND r.currency = ? AND r.started IS NOT NULL AND r.ended IS NOT NULL"
    " AND substr(r.command_key, instr(r.command_key, ' ') + 1) LIKE ? ESCAPE '\\'"
)


def _family_rows(
    conn: sqlite3.Connection,
    currency: str,
    pattern: str,
    limit: int,
    ids: Sequence[int] | None = None,
) -> list[PastRow]:
    """``family_runs``'s query: the newest ``limit`` rows, or (``ids``) those of these rows that
    qualify."""
    if ids is None:
        sql = _FAMILY_SQL + " ORDER BY r.id DESC LIMIT ?"
        params: tuple[object, ...] = (currency, pattern, limit)
    else:
        sql = _FAMILY_SQL + f" AND r.id IN ({','.join('?' * len(ids))}) ORDER BY r.id DESC"
        params = (currency, pattern, *ids)
    out = []
    for rid, key, duration, cost, spec, run_dir, model in conn.execute(sql, params).fetchall():
        try:
            nproc = int(json.loads(spec or "{}").get("nproc_per_node") or 1)
        except (ValueError, TypeError, AttributeError):
            nproc = 1
        out.append(PastRow(rid, key, float(duration), float(cost), model, nproc, run_dir))
    return out


def _data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the file (not for this one's writes)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


@dataclass
class _FamilyAnswer:
    #: Newest first.
    rows: list[PastRow]
    ids: frozenset[int]
    #: ``PRAGMA data_version`` before the rows were read.
    version: int
    #: How much of the memo's log of touched rows the answer has taken in.
    seen: int


class _FamilyMemo:
    """``family_runs`` answers kept per (currency, pattern, limit), and a log of the rows
    written through the connection since that may change them (its only writer is its
    ``RunStore``; ``Store.runs()`` shares a connection and keeps no memo).

    An answer stays valid while no other connection writes (``PRAGMA data_version``); the rows
    this store wrote since are read again by id and merged in. Merging is exact: the answer
    held the newest ``limit`` qualifying rows, so a row that now qualifies enters by its id,
    and only a row that stopped qualifying out of a full answer makes room for an older one
    (then the whole query runs again). A write is logged unless it leaves the row
    disqualified (queued, running, unpriced...) and the row is in no answer: then no answer
    changes. Used under the store's mutex."""

    #: Past this many logged ids the log starts again and every answer is read anew.
    MAX_LOG = 4096
    MAX_ANSWERS = 64

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str, int], _FamilyAnswer] = {}
        self._log: list[int] = []

    def inserted(self, run_id: int, values: Mapping[str, object]) -> None:
        """A new row (its columns not in ``values`` are NULL)."""
        if values.get("status") == "succeeded" and all(
            values.get(c) is not None for c in _FAMILY_NOT_NULL
        ):
            self._touched(run_id)

    def updated(self, run_id: int, values: Mapping[str, object]) -> None:
        """Columns of a row set to ``values`` (the others as they were)."""
        if _FAMILY_COLUMNS.isdisjoint(values):
            return
        disqualified = ("status" in values and values["status"] != "succeeded") or any(
            c in values and values[c] is None for c in _FAMILY_NOT_NULL
        )
        if not disqualified or any(run_id in a.ids for a in self._answers.values()):
            self._touched(run_id)

    def _touched(self, run_id: int) -> None:
        if len(self._log) >= self.MAX_LOG:
            self._log.clear()
            self._answers.clear()
        self._log.append(run_id)

    def rows(
        self, conn: sqlite3.Connection, currency: str, pattern: str, limit: int
    ) -> list[PastRow]:
        key = (currency, pattern, limit)
        version = _data_version(conn)
        old = self._answers.get(key)
        if old is not None and old.version == version:
            if old.seen == len(self._log):
                return list(old.rows)
            merged = self._merged(conn, old, currency, pattern, limit)
            # Nothing written by another connection while the touched rows were read: the
            # merged answer is the file's as of ``version``.
            if merged is not None and _data_version(conn) == version:
                if isinstance(merged, _FamilyAnswer):  # ``old``, unchanged
                    old.seen = len(self._log)
                    return list(old.rows)
                return self._keep(key, merged, version)
        return self._keep(key, _family_rows(conn, currency, pattern, limit), version)

    def _merged(
        self,
        conn: sqlite3.Connection,
        old: _FamilyAnswer,
        currency: str,
        pattern: str,
        limit: int,
    ) -> _FamilyAnswer | list[PastRow] | None:
        """``old`` when nothing it holds changed, else the new rows; None: read them all."""
        touched = set(self._log[old.seen :])
        fresh = _family_rows(conn, currency, pattern, limit, ids=sorted(touched))
        gone = (touched & old.ids).difference(r[0] for r in fresh)
        if gone and len(old.rows) >= limit:
            return None  # an older row may take its place: read them all again
        if not fresh and not gone:
            return old
        rows = [r for r in old.rows if r[0] not in touched]
        if rows and fresh and fresh[-1][0] < rows[0][0]:
            rows.extend(fresh)
            rows.sort(key=_row_id, reverse=True)
        else:
            rows[:0] = fresh  # newer than every row kept (fresh is newest first)
        return rows[:limit]

    def _keep(self, key: tuple[str, str, int], rows: list[PastRow], version: int) -> list[PastRow]:
        if key not in self._answers and len(self._answers) >= self.MAX_ANSWERS:
            self._answers.clear()
        ids = frozenset(r[0] for r in rows)
        self._answers[key] = _FamilyAnswer(rows, ids, version, len(self._log))
        return list(rows)


def _row_id(row: PastRow) -> int:
    return row[0]


def find_host(conn: sqlite3.Connection, name: str) -> tuple[int, str, int | None] | None:
    """(id, hostname, cpu_count) of the stored host ``name`` means: that spelling, else the
    same machine under its short or fully qualified name (``costmeter.core.hostnames``)."""
    row = conn.execute(
        "SELECT id, hostname, cpu_count FROM hosts WHERE hostname = ?", (name,)
    ).fetchone()
    if row is not None or not name:
        return None if row is None else (int(row[0]), str(row[1]), row[2])
    short = short_name(name)
    rows = {
        str(h): (int(i), str(h), c)
        for i, h, c in conn.execute("SELECT id, hostname, cpu_count FROM hosts")
        if short_name(str(h)) == short
    }
    picked = pick_host(name, rows)
    return None if picked is None else rows[picked]


def _samples(conn: sqlite3.Connection, run: RunRow, start: float, end: float) -> RunSamples:
    # A run on another machine (a Ray node, a Slurm node) is attributed from that node's
    # samples: those the launcher writes under the node's name (``service.node_ingest``), or
    # those of an agent, exporter or Prometheus source there (the host's name, short or FQDN).
    where = run.node or run.host or ""
    host_row = find_host(conn, where)
    if host_row is None:  # nothing sampled where it ran
        return RunSamples(start, end, (), None, 1, None)
    hid, hostname, cpu_count = host_row
    job = run.job or None
    if job is not None:
        # A scheduler's job: whole ticks (as ``report --by job`` counts them) up to a moment
        # after the scheduler's end time, which is whole seconds.
        end_cut = end + JOB_END_SLACK_S if run.ended is not None and end >= run.ended else end
        procs = sorted(
            set(_run_processes(conn, hid, run.pids, start, end))
            | set(_job_processes(conn, hid, job, start, end_cut))
        )
        cpu = _cpu_in_window(conn, procs, start, end_cut)
    else:
        end_cut = end
        procs = _run_processes(conn, hid, run.pids, start, end)
        cpu = _cpu_seconds(conn, procs)
    placed = set(run.gpus)
    found = _gpus_used(conn, procs, start, end_cut) if not placed or job else set()
    devices = tuple(
        _device_shares(
            conn,
            run,
            hid,
            hostname,
            idx,
            set(procs),
            start,
            end_cut,
            idx in placed,
            whole_ticks=job is not None,
        )
        for idx in sorted(placed | found)
    )
    hosts = [h for h in host_usage(conn, start, end_cut, read_cutoffs(conn)) if h.host == hostname]
    return RunSamples(
        start,
        end,
        tuple(d for d in devices if d is not None),
        cpu,
        cpu_count or 1,
        hosts[0] if hosts else None,
        hostname=hostname,
        sampled_s=_sampled_seconds(conn, hid, start, end),
        processes=len(procs),
    )


def _sampled_seconds(conn: sqlite3.Connection, hid: int, start: float, end: float) -> float:
    """How much of ``[start, end]`` the host's samples cover: its own (CPU) samples or those
    of one of its GPUs, whichever covers more (an exporter host has GPU samples only)."""
    lo, hi = math.floor(start * 1000), math.ceil(end * 1000)
    params = {"hid": hid, "lo": lo, "hi": hi, "far": hi + _MAX_TICK_MS}
    found = [
        float(v or 0)
        for sql in (_HOST_COVER_SQL, _DEVICE_COVER_SQL)
        for (v,) in conn.execute(sql, params)
    ]
    return min(max(found, default=0.0), hi - lo) / 1000


#: Samples are at most this long (a sample at ts covers ``(ts - dt_ms, ts]``).
_MAX_TICK_MS = 600_000
_HOST_COVER_SQL = """
SELECT sum(min(ts, :hi) - max(ts - dt_ms, :lo)) FROM host_samples
WHERE host_id = :hid AND ts > :lo AND ts < :far AND ts - dt_ms < :hi AND dt_ms > 0
"""
_DEVICE_COVER_SQL = """
SELECT sum(min(s.ts, :hi) - max(s.ts - s.dt_ms, :lo)) FROM device_samples s
WHERE s.device_id IN (SELECT id FROM devices WHERE host_id = :hid)
    AND s.ts > :lo AND s.ts < :far AND s.ts - s.dt_ms < :hi AND s.dt_ms > 0
GROUP BY s.device_id
"""


def _job_processes(
    conn: sqlite3.Connection, hid: int, job: str, start: float, end: float
) -> list[int]:
    """Processes of scheduler job ``job`` on the host (their owner's job id), sampled during
    ``[start, end)``: the job's own, whatever process tree Slurm started them from."""
    lo, hi = math.floor(start * 1000), math.ceil(end * 1000)
    rows = conn.execute(
        "SELECT p.id FROM processes p WHERE p.host_id = ? AND p.job_id = ?"
        " AND (EXISTS (SELECT 1 FROM process_samples s WHERE s.proc_id = p.id"
        "   AND s.ts >= ? AND s.ts < ?)"
        "  OR EXISTS (SELECT 1 FROM gpu_process_samples g JOIN devices d ON d.id = g.device_id"
        "   WHERE d.host_id = p.host_id AND g.proc_id = p.id AND g.ts >= ? AND g.ts < ?))",
        (hid, job, lo, hi, lo, hi),
    ).fetchall()
    return [int(r[0]) for r in rows]


#: How far before a window the last sample of a process is looked for (its CPU time then).
_CPU_LOOKBACK_MS = 300_000


def _cpu_in_window(
    conn: sqlite3.Connection, procs: Sequence[int], start: float, end: float
) -> float | None:
    """CPU seconds the processes used within ``[start, end)``, from their cumulative CPU time:
    the last sample in the window less the last one before it (0 for a process created in the
    window; its first sample in the window for one created before with no sample just
    before). As the chargeback counts it (``store.attribution``)."""
    lo, hi = math.floor(start * 1000), math.ceil(end * 1000)
    total, seen = 0.0, False
    for proc in procs:
        last = conn.execute(
            "SELECT cpu_time_s FROM process_samples WHERE proc_id = ? AND ts >= ? AND ts < ?"
            " ORDER BY ts DESC LIMIT 1",
            (proc, lo, hi),
        ).fetchone()
        if last is None or last[0] is None:
            continue
        seen = True
        before = conn.execute(
            "SELECT cpu_time_s FROM process_samples WHERE proc_id = ? AND ts < ? AND ts >= ?"
            " ORDER BY ts DESC LIMIT 1",
            (proc, lo, lo - _CPU_LOOKBACK_MS),
        ).fetchone()
        if before is not None and before[0] is not None:
            base = float(before[0])
        else:
            created = conn.execute(
                "SELECT create_time FROM processes WHERE id = ?", (proc,)
            ).fetchone()
            first = conn.execute(
                "SELECT cpu_time_s FROM process_samples WHERE proc_id = ? AND ts >= ?"
                " ORDER BY ts LIMIT 1",
                (proc, lo),
            ).fetchone()
            in_window = created is not None and float(created[0] or 0) * 1000 >= lo
            base = 0.0 if in_window else float(first[0] or 0.0)
        total += max(0.0, float(last[0]) - base)
    return total if seen else None


def _run_processes(
    conn: sqlite3.Connection, hid: int, pids: Sequence[int], start: float, end: float
) -> list[int]:
    if not pids:
        return []
    marks = ",".join("?" * len(pids))
    rows = conn.execute(
        f"SELECT id FROM processes WHERE host_id = ? AND pid IN ({marks})"
        " AND (create_time = 0 OR create_time BETWEEN ? AND ?)",
        (hid, *pids, start - CREATE_SLACK_S, end + CREATE_SLACK_S),
    ).fetchall()
    return [int(r[0]) for r in rows]


def _cpu_seconds(conn: sqlite3.Connection, procs: Sequence[int]) -> float | None:
    if not procs:
        return None
    marks = ",".join("?" * len(procs))
    rows = conn.execute(
        f"SELECT max(cpu_time_s) FROM process_samples WHERE proc_id IN ({marks}) GROUP BY proc_id",
        tuple(procs),
    ).fetchall()
    values = [float(r[0]) for r in rows if r[0] is not None]
    return sum(values) if values else None


def _gpus_used(
    conn: sqlite3.Connection, procs: Sequence[int], start: float, end: float
) -> set[int]:
    """Indices of the GPUs the run's processes showed up on (a run placed on none)."""
    if not procs:
        return set()
    marks = ",".join("?" * len(procs))
    rows = conn.execute(
        f"SELECT DISTINCT d.idx FROM gpu_process_samples g JOIN devices d ON d.id = g.device_id"
        f" WHERE g.proc_id IN ({marks}) AND g.ts > ? AND g.ts <= ?",
        (*procs, round(start * 1000), round(end * 1000) + 600_000),
    ).fetchall()
    return {int(r[0]) for r in rows}


def _holders(
    conn: sqlite3.Connection, run: RunRow, hostname: str, idx: int, start: float, end: float
) -> list[tuple[float, float]]:
    """Lifetimes of the other runs on ``hostname`` (where they ran: their node, else the
    launcher's host) that held GPU ``idx`` during ``[start, end]``."""
    rows = conn.execute(
        "SELECT gpus, started, coalesce(ended, ?) FROM runs WHERE coalesce(node, host) = ?"
        " AND id != ? AND started IS NOT NULL AND started < ? AND coalesce(ended, ?) > ?",
        (end, hostname, run.id, end, end, start),
    ).fetchall()
    return [(float(s), float(e)) for g, s, e in rows if idx in json.loads(g or "[]")]


def _device_shares(
    conn: sqlite3.Connection,
    run: RunRow,
    hid: int,
    hostname: str,
    idx: int,
    mine: set[int],
    start: float,
    end: float,
    placed: bool,
    *,
    whole_ticks: bool = False,
) -> DeviceShares | None:
    """The run's ticks on GPU ``idx``: the part of each sample interval within the run, or
    (``whole_ticks``, a job's run) every sample taken within it, whole, as the chargeback
    counts them."""
    dev = conn.execute(
        "SELECT id, uuid, name FROM devices WHERE host_id = ? AND idx = ?"
        " ORDER BY coalesce(last_seen, 0) DESC LIMIT 1",
        (hid, idx),
    ).fetchone()
    if dev is None:
        return None
    did, uuid, name = dev
    if whole_ticks:  # samples with ts in [start, end), as ``store.attribution`` bounds them
        s_ms, e_ms = math.floor(start * 1000), math.ceil(end * 1000)
    else:
        s_ms, e_ms = round(start * 1000), round(end * 1000)
    # A sample at ts covers (ts - dt, ts]; gaps are at most a few seconds (EnergyTracker).
    samples = conn.execute(
        "SELECT ts, dt_ms, energy_mj, energy_measured FROM device_samples WHERE device_id = ?"
        " AND ts >= ? AND ts < ? AND dt_ms > 0 AND ts - dt_ms < ? ORDER BY ts",
        (did, s_ms, e_ms + 600_000, e_ms),
    ).fetchall()
    procs: dict[int, list[tuple[int, int | None, int | None]]] = defaultdict(list)
    for ts, proc_id, mem, sm in conn.execute(
        "SELECT ts, proc_id, gpu_mem, sm_util FROM gpu_process_samples WHERE device_id = ?"
        " AND ts >= ? AND ts < ?",
        (did, s_ms, e_ms + 600_000),
    ):
        procs[ts].append((proc_id, mem, sm))
    others = _holders(conn, run, hostname, idx, start, end) if placed else []
    # Whole ticks reach past the run's end (the scheduler's end is whole seconds); the GPU is
    # held for it only over its lifetime, as ``store.attribution`` places runs.
    held_from = round(start * 1000)
    held_to = round((run.ended if run.ended is not None else end) * 1000)

    def held(ts: int) -> bool:
        return placed and (not whole_ticks or held_from < ts <= held_to)

    rows = []
    for ts, dt_ms, energy_mj, measured in samples:
        if whole_ticks:
            overlap = dt_ms if s_ms <= ts < e_ms else 0
        else:
            overlap = min(ts, e_ms) - max(ts - dt_ms, s_ms)
        if overlap <= 0:
            continue
        frac = overlap / dt_ms
        here = procs.get(ts, [])
        run_p = [p for p in here if p[0] in mine]
        other_p = [p for p in here if p[0] not in mine]
        t = ts / 1000
        rows.append(
            ShareRow(
                dt_s=overlap / 1000,
                energy_j=None if energy_mj is None else energy_mj / 1000 * frac,
                energy_measured=bool(measured),
                run_procs=len(run_p),
                run_mem=_total(p[1] for p in run_p),
                run_sm=_total(p[2] for p in run_p),
                other_procs=len(other_p),
                other_mem=_total(p[1] for p in other_p),
                other_sm=_total(p[2] for p in other_p),
                holders=(1 + sum(1 for s, e in others if s < t <= e)) if held(ts) else 0,
            )
        )
    return DeviceShares(hostname, idx, uuid, name or "", tuple(rows))


def _total(values: Iterable[int | None]) -> int | None:
    """The sum, or None when any value is unknown."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total
