"""The agent's local buffer: every tick it sampled, kept for ``--buffer-hours`` in SQLite.

One row per tick: its exact timestamp (the key) and its wire JSON, zlib-compressed. Pages are
served straight from those bytes (nothing is decoded on the way out). One writer thread owns the
only writing connection; readers open their own (WAL lets them read while it writes). The file
outlives the agent: a restarted agent serves what it buffered before it stopped. The file itself
is ``costmeter.store.tick_buffer``; this module adds the writer thread, its queue and the check
that every buffered tick is one a collector accepts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from costmeter.core.errors import StoreError
from costmeter.core.model import Tick
from costmeter.sampling import wire
from costmeter.store.errors import reworded
from costmeter.store.tick_buffer import BufferedPage, TickBufferFile

__all__ = ["BufferedPage", "TickBuffer"]

log = logging.getLogger(__name__)

#: Ticks waiting for the writer beyond this are dropped, oldest first: the disk is stuck.
QUEUE_LIMIT = 10_000
#: How often old ticks are deleted.
PRUNE_EVERY_S = 60.0


class TickBuffer:
    def __init__(
        self,
        path: Path,
        *,
        retention_s: float,
        now: Callable[[], float] = time.time,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = path
        self.retention_s = retention_s
        self.busy_timeout = busy_timeout
        self._now = now
        self._queue: queue.Queue[Tick | None] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0
        try:
            self._file = TickBufferFile(path, busy_timeout=busy_timeout, now=now)
        except StoreError as err:
            raise reworded(err, f"the agent's buffer {path} could not be opened: {err}") from err
        #: A sentence for the user when the file had to be replaced, else None.
        self.notice: str | None = self._file.notice
        self._prune()

    # -- writing ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agent-buffer", daemon=True)
        self._thread.start()

    def put(self, tick: Tick) -> None:
        """Queue ``tick`` for the writer; never blocks the sampling loop.

        When the queue is full (the disk is stuck) the oldest queued tick makes room and is
        counted in ``dropped``: the newest samples are the ones a collector still wants.
        """
        while True:
            try:
                self._queue.put_nowait(tick)
                return
            except queue.Full:
                try:
                    oldest = self._queue.get_nowait()
                except queue.Empty:
                    continue
                if oldest is None:  # the stop marker stays, after this tick
                    self.dropped += 1
                    self._queue.put(None)
                    return
                self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self._file.close()

    def _run(self) -> None:
        last_prune = time.monotonic()
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            self._write([t for t in batch if t is not None])
            if time.monotonic() - last_prune >= PRUNE_EVERY_S:
                last_prune = time.monotonic()
                self._prune()

    def _write(self, ticks: list[Tick]) -> None:
        if not ticks:
            return
        rows = []
        for tick in ticks:
            try:
                data = wire.dumps(wire.encode_tick(tick))
                # What is buffered is what a collector accepts: one bad value would otherwise
                # stop its backfill at this tick for good.
                wire.decode_tick(wire.loads(data))
            except wire.WireError as err:
                self.dropped += 1
                log.error("The agent skipped a sample it could not serve: %s", err)
                continue
            rows.append((tick.ts, data))
        if not rows:
            return
        try:
            self._file.insert(rows)
            self.written += len(rows)
        except StoreError as err:
            self.dropped += len(rows)
            log.error("The agent could not buffer %d samples: %s", len(rows), err)

    def _prune(self) -> None:
        try:
            self._file.prune(self._now() - self.retention_s)
        except StoreError as err:
            log.error("The agent could not prune its buffer: %s", err)

    # -- reading (any thread) -------------------------------------------------------------------
    def page(self, since: float, limit: int, max_bytes: int) -> BufferedPage:
        """Up to ``limit`` ticks with ``ts > since`` (and about ``max_bytes`` of JSON at most)."""
        return self._file.page(since, limit, max_bytes)

    def span(self) -> tuple[float | None, float | None, int]:
        """(oldest ts, newest ts, number of ticks) held now."""
        oldest, newest = self._file.bounds()
        return oldest, newest, self._file.count
