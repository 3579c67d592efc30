"""What the GUI reads from the store, named at the service layer.

Pages hand jobs to the store reader (``gui/reader.py``), which calls each with an open ``Store``
on its own thread; the jobs call functions of ``costmeter.service`` with it, never the store's
own API where a service has the answer, and take the store names they show or pass on (the
handle itself, a run's row, a series, the statuses that mean "unfinished", the database paths)
from here. So a view names no ``costmeter.store`` module, and the store can change behind the
services without touching a page.
"""

from __future__ import annotations

from costmeter.store import Store, default_db_path
from costmeter.store.database import SIMULATED_DB_NAME
from costmeter.store.queries import Series
from costmeter.store.runs import UNFINISHED, RunRow
from costmeter.store.store import DeviceRecord, HostRecord

__all__ = [
    "SIMULATED_DB_NAME",
    "UNFINISHED",
    "DeviceRecord",
    "HostRecord",
    "RunRow",
    "Series",
    "Store",
    "default_db_path",
    "unfinished_run_names",
]


def unfinished_run_names(store: Store) -> dict[int, str]:
    """pid -> the name of the unfinished run it belongs to (the Processes page's Run column)."""
    return {pid: r.name for r in store.runs().unfinished() for pid in r.pids}
