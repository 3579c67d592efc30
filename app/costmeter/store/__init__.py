"""SQLite history: schema and migrations, a batched writer, rollups, retention and queries."""

from costmeter.store.advice_queries import (
    AdviceState,
    DeviceWindow,
    advice_states,
    clear_advice_state,
    device_windows,
    set_advice_state,
)
from costmeter.store.attribution import (
    Attribution,
    CpuUse,
    GpuFree,
    GpuShare,
    ProcessRecord,
)
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
    "AdviceState",
    "Attribution",
    "CpuUse",
    "Cutoffs",
    "DeviceRecord",
    "DeviceWindow",
    "GpuFree",
    "GpuShare",
    "HostRecord",
    "ProcessRecord",
    "RecorderLock",
    "RetentionPolicy",
    "Series",
    "Store",
    "Writer",
    "WriterStats",
    "advice_states",
    "apply_retention",
    "clear_advice_state",
    "default_db_path",
    "device_windows",
    "migrate",
    "open_database",
    "set_advice_state",
]
