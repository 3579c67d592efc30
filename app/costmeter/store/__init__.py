"""SQLite history: schema and migrations, a batched writer, rollups, retention and queries."""

from costmeter.store.database import default_db_path, open_database
from costmeter.store.lock import RecorderLock
from costmeter.store.queries import DEVICE_SERIES, HOST_SERIES, Series
from costmeter.store.retention import Cutoffs, RetentionPolicy, apply_retention
from costmeter.store.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from costmeter.store.store import DeviceRecord, HostRecord, Store
from costmeter.store.writer import Writer, WriterStats

__all__ = [
    "DEVICE_SERIES",
    "HOST_SERIES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Cutoffs",
    "DeviceRecord",
    "HostRecord",
    "RecorderLock",
    "RetentionPolicy",
    "Series",
    "Store",
    "Writer",
    "WriterStats",
    "apply_retention",
    "default_db_path",
    "migrate",
    "open_database",
]
