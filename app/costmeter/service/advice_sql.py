"""SQL the advice service needs beyond ``Store``'s public readers (process samples, the
dismiss/snooze table), run on the Store's own connection under its lock.

Store exposes no generic query method; these read the tables migration 1 and 3 define. Keeping
them here (rather than in ``costmeter.store``) keeps the advice feature in its own files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from costmeter.store import Store


def read_rows(store: Store, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with store._mutex:
        return [tuple(r) for r in store._conn.execute(sql, tuple(params)).fetchall()]


def write(store: Store, sql: str, params: Sequence[Any] = ()) -> None:
    """One statement in autocommit mode (the Store's connection has no open transaction)."""
    with store._mutex:
        store._conn.execute(sql, tuple(params))
