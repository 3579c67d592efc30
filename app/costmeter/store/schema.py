"""Schema and numbered migrations, tracked by ``PRAGMA user_version``.

Migration ``n`` (1-based) brings a database from version ``n - 1`` to ``n``. Add new migrations at
the end of ``MIGRATIONS``; never edit one that has shipped.

Sample tables are ``WITHOUT ROWID`` with a ``(device_id, ts)``-style primary key and integer columns
(ms, mW, mJ, bytes, B/s, MHz; host CPU percent and load averages in hundredths, ``*_x100``) so that
one GPU-day at 1 Hz, with its share of the host's rows, stays under 8 MB.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from costmeter.core.errors import StoreError

if TYPE_CHECKING:
    import sqlite_utils

#: Raw device columns that get min/avg/max in the rollups (stored units: %, bytes, mW, C, MHz).
DEVICE_ROLLUP_METRICS: tuple[str, ...] = (
    "gpu_util",
    "mem_util",
    "mem_used",
    "power_mw",
    "temp_c",
    "sm_clock",
    "mem_clock",
)

#: Raw host columns that get min/avg/max in the rollups.
HOST_ROLLUP_METRICS: tuple[str, ...] = (
    "cpu_pct_x100",
    "mem_used",
    "load1_x100",
    "swap_used",
    "disk_read",
    "disk_write",
    "net_rx",
    "net_tx",
)

_RAW_TABLES_SQL = """
CREATE TABLE device_samples (
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    dt_ms INTEGER NOT NULL,
    gpu_util INTEGER,
    mem_util INTEGER,
    mem_used INTEGER,
    power_mw INTEGER,
    energy_mj INTEGER,
    energy_measured INTEGER NOT NULL,
    temp_c INTEGER,
    sm_clock INTEGER,
    mem_clock INTEGER,
    PRIMARY KEY (device_id, ts)
) WITHOUT ROWID;
CREATE TABLE host_samples (
    host_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    dt_ms INTEGER NOT NULL,
    cpu_pct_x100 INTEGER,
    per_core BLOB,
    load1_x100 INTEGER,
    load5_x100 INTEGER,
    load15_x100 INTEGER,
    mem_used INTEGER,
    mem_total INTEGER,
    swap_used INTEGER,
    disk_read INTEGER,
    disk_write INTEGER,
    net_rx INTEGER,
    net_tx INTEGER,
    cpu_energy_mj INTEGER,
    cpu_energy_measured INTEGER NOT NULL,
    PRIMARY KEY (host_id, ts)
) WITHOUT ROWID;
CREATE TABLE gpu_process_samples (
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    proc_id INTEGER NOT NULL,
    gpu_mem INTEGER,
    sm_util INTEGER,
    PRIMARY KEY (device_id, ts, proc_id)
) WITHOUT ROWID;
CREATE TABLE process_samples (
    proc_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    cpu_pct REAL,
    rss INTEGER,
    cpu_time_s REAL,
    PRIMARY KEY (proc_id, ts)
) WITHOUT ROWID;
"""


def _stat_columns(metrics: Sequence[str]) -> str:
    return "".join(f"{m}_min, {m}_avg REAL, {m}_max, " for m in metrics)


def _rollup_tables_sql() -> str:
    parts = []
    for suffix in ("1m", "1h"):
        parts.append(
            f"CREATE TABLE device_rollup_{suffix} (device_id INTEGER NOT NULL, ts INTEGER NOT NULL,"
            " n INTEGER NOT NULL, dt_ms INTEGER NOT NULL, idle_ms INTEGER NOT NULL,"
            " util_ms INTEGER NOT NULL, util_known_ms INTEGER NOT NULL,"
            " energy_mj INTEGER NOT NULL, energy_measured_mj INTEGER NOT NULL,"
            f" idle_energy_mj INTEGER NOT NULL, {_stat_columns(DEVICE_ROLLUP_METRICS)}"
            " PRIMARY KEY (device_id, ts)) WITHOUT ROWID;"
        )
        parts.append(
            f"CREATE TABLE host_rollup_{suffix} (host_id INTEGER NOT NULL, ts INTEGER NOT NULL,"
            " n INTEGER NOT NULL, dt_ms INTEGER NOT NULL, busy_core_ms REAL NOT NULL,"
            " cpu_energy_mj INTEGER NOT NULL, cpu_energy_measured_mj INTEGER NOT NULL,"
            f" {_stat_columns(HOST_ROLLUP_METRICS)} PRIMARY KEY (host_id, ts)) WITHOUT ROWID;"
        )
    return "\n".join(parts)


def _migration_1(db: sqlite_utils.Database) -> None:
    """Everything: hosts, devices, samples, processes, rollups, runs, settings."""
    db.table("hosts").create(
        {
            "id": int,
            "hostname": str,
            "cpu_count": int,
            "cpu_model": str,
            "memory_total": int,
            "physical_cores": int,
            "first_seen": float,
            "last_seen": float,
        },
        pk="id",
        not_null={"hostname"},
    )
    db.table("hosts").create_index(["hostname"], unique=True)
    db.table("devices").create(
        {
            "id": int,
            "host_id": int,
            "idx": int,
            "uuid": str,
            "name": str,
            "memory_total": int,
            "power_limit_w": float,
            "architecture": str,
            "compute_capability": str,
            "unsupported": str,  # JSON list of metric names
            "first_seen": float,
            "last_seen": float,
            "lost_at": float,
        },
        pk="id",
        not_null={"host_id", "uuid"},
        foreign_keys=[("host_id", "hosts", "id")],
    )
    db.table("devices").create_index(["uuid"], unique=True)
    db.table("processes").create(
        {
            "id": int,
            "host_id": int,
            "pid": int,
            "create_time": float,
            "name": str,
            "cmdline": str,
            "user": str,
        },
        pk="id",
        not_null={"host_id", "pid", "create_time"},
    )
    db.table("processes").create_index(["host_id", "pid", "create_time"], unique=True)
    db.table("runs").create(
        {
            "id": int,
            "name": str,
            "backend": str,
            "spec": str,  # JSON
            "status": str,
            "started": float,
            "ended": float,
            "exit_code": int,
            "gpus": str,  # JSON
            "pids": str,  # JSON
        },
        pk="id",
    )
    db.table("settings").create({"key": str, "value": str}, pk="key")
    # Internal bookkeeping (retention cut-offs), kept apart from user settings.
    db.table("store_meta").create({"key": str, "value": int}, pk="key")
    db.executescript(_RAW_TABLES_SQL + _rollup_tables_sql())


def _migration_2(db: sqlite_utils.Database) -> None:
    """Runs launched by Costmeter: where and how they ran, and their cost once finished."""
    columns = (
        ("created", "REAL"),  # when it was queued
        ("host", "TEXT"),  # the machine whose samples are attributed (this one for local runs)
        ("node", "TEXT"),  # where the backend says it executed; NULL for this machine
        ("message", "TEXT"),
        ("handle_key", "TEXT"),
        ("handle_data", "TEXT"),  # JSON
        ("run_dir", "TEXT"),
        ("command_key", "TEXT"),  # the normalised argv, for estimates from past runs
        ("sweep", "TEXT"),
        ("gpu_seconds", "REAL"),
        ("cpu_seconds", "REAL"),
        ("energy_kwh", "REAL"),
        ("cost", "REAL"),
        ("currency", "TEXT"),
        ("estimate", "REAL"),
        ("estimate_runs", "INTEGER"),
    )
    for name, kind in columns:
        db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    db.execute("CREATE INDEX runs_command_key ON runs (command_key, status)")
    db.execute("CREATE INDEX runs_started ON runs (started)")


def _migration_3(db: sqlite_utils.Database) -> None:
    """Advice state, device events (XID errors), remote hosts' status, child runs."""
    script = """
CREATE TABLE advice_state (
    key TEXT PRIMARY KEY,        -- the recommendation's stable key (rule + target)
    rule TEXT NOT NULL,
    state TEXT NOT NULL,         -- 'dismissed' or 'snoozed'
    until REAL,                  -- snoozed until this time, NULL for dismissed
    created REAL NOT NULL
);
CREATE TABLE device_events (
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,         -- ms, like the sample tables
    kind TEXT NOT NULL,          -- 'xid': the value is the XID code
    value INTEGER,
    PRIMARY KEY (device_id, ts, kind)
) WITHOUT ROWID;
CREATE TABLE remote_hosts (
    name TEXT PRIMARY KEY,       -- the host name its samples carry
    url TEXT NOT NULL,
    kind TEXT NOT NULL,          -- 'agent' or 'prometheus'
    state TEXT NOT NULL,         -- 'connected', 'disconnected', 'backfilling', 'error'
    last_contact REAL,           -- the last successful pull
    newest_sample REAL,          -- the newest sample written for it
    last_error TEXT,
    updated REAL NOT NULL
);
ALTER TABLE runs ADD COLUMN parent_id INTEGER
"""
    # One statement at a time: executescript could commit the migration's transaction early.
    for statement in script.split(";"):
        sql = "\n".join(line.split("--")[0] for line in statement.splitlines()).strip()
        if sql:
            db.execute(sql)


def _migration_4(db: sqlite_utils.Database) -> None:
    """Remote hosts' status keyed by the source's URL, not by the host name it reports: two
    exporters (or agents) that report one name keep a row each (issue 11)."""
    statements = (
        """CREATE TABLE remote_hosts_by_url (
            url TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            last_contact REAL,
            newest_sample REAL,
            last_error TEXT,
            updated REAL NOT NULL
        )""",
        "INSERT OR REPLACE INTO remote_hosts_by_url (url, name, kind, state, last_contact,"
        " newest_sample, last_error, updated) SELECT url, name, kind, state, last_contact,"
        " newest_sample, last_error, updated FROM remote_hosts ORDER BY updated",
        "DROP TABLE remote_hosts",
        "ALTER TABLE remote_hosts_by_url RENAME TO remote_hosts",
    )
    for sql in statements:
        db.execute(sql)


#: The owner columns migration 5 adds to ``processes``, in ``costmeter.core.owner.OWNER_FIELDS``
#: order less ``user`` (the existing ``processes.user`` keeps the user name), then ``unreadable``.
OWNER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("uid", "INTEGER"),
    ("job_id", "TEXT"),
    ("job_user", "TEXT"),
    ("account", "TEXT"),
    ("partition", "TEXT"),
    ("array_job_id", "TEXT"),
    ("array_task_id", "TEXT"),
    ("container_id", "TEXT"),
    ("pod_uid", "TEXT"),
    ("pod", "TEXT"),
    ("namespace", "TEXT"),
    ("container", "TEXT"),
    ("run_key", "TEXT"),
    # Comma-joined sources that could not be read; '' when the owner was read and every source
    # could be, NULL when no owner was recorded for the process (so NULL marks "not yet").
    ("unreadable", "TEXT"),
)


def _migration_5(db: sqlite_utils.Database) -> None:
    """Who pays (issue 13): each process's owner, the tags of runs (a JSON object), and the
    per-minute GPU shares of processes."""
    for name, kind in OWNER_COLUMNS:
        db.execute(f"ALTER TABLE processes ADD COLUMN {name} {kind}")
    db.execute("ALTER TABLE runs ADD COLUMN tags TEXT DEFAULT '{}'")
    # Runs are found by their handle (COSTMETER_RUN_KEY) when attributing processes.
    db.execute("CREATE INDEX runs_handle_key ON runs (handle_key)")
    # Per-process GPU shares per minute (costmeter.store.share_rollup), from the raw rows kept.
    from costmeter.store.share_rollup import CREATE_SQL, rebuild_shares

    db.execute(CREATE_SQL)
    row = db.execute("SELECT value FROM store_meta WHERE key = 'raw_cutoff_ms'").fetchone()
    raw_cutoff = int(row[0]) if row else 0
    rebuild_shares(db.conn, raw_cutoff)
    # Minutes before the raw rows that were left have no shares: attribution starts here.
    db.execute(
        "INSERT OR REPLACE INTO store_meta (key, value) VALUES ('share_from_ms', ?)", [raw_cutoff]
    )


def _migration_6(db: sqlite_utils.Database) -> None:
    """A batch scheduler's run (issue 15): its job id and allocated GPUs, and what its cost
    stands on: NULL/'measured' (samples) or 'estimated' (elapsed time x GPUs x price, no
    sample of its node covered it), with the words why."""
    for name, kind in (
        ("job", "TEXT"),
        ("allocated_gpus", "INTEGER"),
        ("cost_basis", "TEXT"),
        ("cost_note", "TEXT"),
    ):
        db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    # A job's run finds the job's processes on its node (costmeter.store.runs).
    db.execute("CREATE INDEX processes_job ON processes (host_id, job_id)")


def _migration_7(db: sqlite_utils.Database) -> None:
    """The cost strategies (issue 16): a run's prediction, kept to compare with its outcome,
    and its output on disk, measured over time (bytes and files per watched folder)."""
    for name, kind in (
        ("predicted_duration_s", "REAL"),
        ("predicted_cost", "REAL"),
        ("predicted_low", "REAL"),
        ("predicted_high", "REAL"),
        ("prediction_basis", "TEXT"),
        ("storage_bytes", "INTEGER"),
        ("storage_files", "INTEGER"),
        ("storage_cost", "REAL"),
    ):
        db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    db.execute(
        "CREATE TABLE run_storage (run_id INTEGER NOT NULL, ts REAL NOT NULL, path TEXT NOT NULL,"
        " bytes INTEGER NOT NULL, files INTEGER NOT NULL, PRIMARY KEY (run_id, path, ts))"
        " WITHOUT ROWID"
    )


Migration = Callable[["sqlite_utils.Database"], None]

#: Migration ``i`` (0-based) takes the schema from version ``i`` to ``i + 1``.
MIGRATIONS: list[Migration] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, path: str, migrations: Sequence[Migration] | None = None
) -> int:
    """Bring the database up to the newest version; refuse one newer than this code knows.

    Each migration runs in its own transaction together with its ``user_version`` bump.
    Returns the version before migrating.
    """
    steps = list(MIGRATIONS if migrations is None else migrations)
    before = schema_version(conn)
    if before > len(steps):
        raise StoreError(
            f"The database {path} has schema version {before}, but this version of Costmeter "
            f"only knows up to version {len(steps)}. Upgrade Costmeter, or pass --db to use "
            "another file."
        )
    if before == len(steps):
        return before  # up to date: nothing to import (sqlite-utils costs ~0.2-0.4 s) or write
    import sqlite_utils  # imported on use: it costs ~0.4 s, off the app's start-up path

    db = sqlite_utils.Database(conn, execute_plugins=False)
    for version in range(before, len(steps)):
        # IMMEDIATE takes the write lock up front (waiting out the busy timeout), and the version
        # is read again under it: two processes opening a new file at once (the app's recorder
        # and its reader) must not both run the same migration.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) <= version:
                steps[version](db)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return before
