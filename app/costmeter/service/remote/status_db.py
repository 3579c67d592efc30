"""The ``remote_hosts`` and ``device_events`` tables: written in batches, read by ``report``.

The collector's threads only hand statuses and XID events to :class:`StatusTable`; one thread
writes them in one transaction at most every ``flush_interval`` seconds (sooner when a host's
state changes), on a connection of its own, so sampling never waits on the disk.

Rows are keyed by the source's URL (schema migration 4): two sources that report one host
name (two exporters of one machine given apart, or two agents named alike) keep a row each,
so the one that is refused shows as refused instead of overwriting the other. The SQL lives in
``costmeter.store.remote_status``; this module adds the batching thread and the retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from costmeter.core.errors import StoreError
from costmeter.service.remote.status import STATES, HostStatus
from costmeter.store import remote_status
from costmeter.store.remote_status import RemoteHostRow, RemoteStatusWriter, XidEvent

log = logging.getLogger(__name__)

#: An XID for a device the writer has not registered yet is retried this many flushes.
EVENT_TRIES = 30


class StatusTable:
    def __init__(
        self,
        db_path: Path,
        *,
        flush_interval: float = 2.0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self.flush_interval = flush_interval
        self.on_error = on_error
        self._cond = threading.Condition()
        self._dirty: dict[str, HostStatus] = {}
        self._forget: set[str] = set()
        self._events: list[tuple[int, int, str, int]] = []  # (ms, code, uuid, tries left)
        self._urgent = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._reported = False

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="costmeter-remote-status", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread.join(timeout)
        self._thread = None

    def put(self, status: HostStatus, *, urgent: bool = False) -> None:
        with self._cond:
            self._dirty[status.url] = status
            self._forget.discard(status.url)
            if urgent:
                self._urgent = True
            self._cond.notify_all()

    def forget(self, url: str) -> None:
        """Remove a source's row (it is no longer collected from)."""
        with self._cond:
            self._dirty.pop(url, None)
            self._forget.add(url)
            self._cond.notify_all()

    def add_xid(self, uuid: str, ts: float, code: int) -> None:
        with self._cond:
            self._events.append((round(ts * 1000), code, uuid, EVENT_TRIES))
            self._cond.notify_all()

    def _run(self) -> None:
        conn: RemoteStatusWriter | None = None
        last = 0.0
        try:
            while True:
                with self._cond:
                    while not self._stopping:
                        due = time.monotonic() - last >= self.flush_interval
                        pending = self._dirty or self._forget or self._events
                        if pending and (due or self._urgent):
                            break
                        wait = max(0.05, self.flush_interval - (time.monotonic() - last))
                        self._cond.wait(wait if pending else None)
                    statuses = list(self._dirty.values())
                    forget = list(self._forget)
                    events = self._events
                    self._dirty, self._forget, self._events = {}, set(), []
                    self._urgent = False
                    stopping = self._stopping
                last = time.monotonic()
                if statuses or forget or events:
                    if conn is None:
                        conn = self._connect()
                    if conn is not None:
                        self._write(conn, statuses, forget, events)
                if stopping:
                    break
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> RemoteStatusWriter | None:
        try:
            return RemoteStatusWriter(self.db_path)
        except StoreError as err:
            self._report(f"the remote hosts' status could not be saved in {self.db_path}: {err}")
            return None

    def _write(
        self,
        conn: RemoteStatusWriter,
        statuses: list[HostStatus],
        forget: list[str],
        events: list[tuple[int, int, str, int]],
    ) -> None:
        now = time.time()
        rows = [
            RemoteHostRow(s.name, s.url, s.kind, s.state, s.last_contact, s.newest_sample,
                          s.error, now)
            for s in statuses
        ]  # fmt: skip
        tries = {(ms, code, uuid): left for ms, code, uuid, left in events}
        try:
            unknown = conn.write(
                rows, forget, [XidEvent(ms, code, uuid) for ms, code, uuid, _ in events]
            )
        except StoreError as err:
            self._report(f"the remote hosts' status could not be saved in {self.db_path}: {err}")
            with self._cond:  # keep what was not written, newer statuses win
                for s in statuses:
                    self._dirty.setdefault(s.url, s)
                self._events = events + self._events
            return
        retry = [
            (ev.ts_ms, ev.code, ev.uuid, tries[(ev.ts_ms, ev.code, ev.uuid)] - 1)
            for ev in unknown
            if tries[(ev.ts_ms, ev.code, ev.uuid)] > 1
        ]
        if retry:
            with self._cond:
                self._events = retry + self._events

    def _report(self, message: str) -> None:
        log.warning("%s", message)
        if not self._reported and self.on_error is not None:
            self._reported = True
            self.on_error(message)


def read_statuses(db_path: Path, now: float | None = None) -> list[HostStatus]:
    """The ``remote_hosts`` rows, by name; empty when there are none or they cannot be read."""
    now = time.time() if now is None else now
    try:
        rows = remote_status.read_remote_hosts(db_path)
    except StoreError:
        return []
    return [
        HostStatus(
            name=str(r.name),
            url=str(r.url),
            kind=str(r.kind),
            state=r.state if r.state in STATES else "error",
            last_contact=r.last_contact,
            newest_sample=r.newest_sample,
            lag_s=None if r.newest_sample is None else max(0.0, now - float(r.newest_sample)),
            error=r.error,
        )
        for r in rows
    ]


def newest_sample(db_path: Path, host: str) -> float | None:
    """The newest sample time stored for ``host``, or None (also when it cannot be read)."""
    try:
        return remote_status.newest_sample(db_path, host)
    except StoreError:
        return None
