"""Database reads off the GUI thread: one worker thread, its own connection, results by signal.

Pages call ``submit(key, fn, done)``; ``fn(store)`` runs on the worker and ``done(result)`` later on
the GUI thread. A request with the same key as one still waiting replaces it, so a slow or locked
database makes pages show older figures for longer; it never queues up work or freezes the window.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from costmeter.core import CostmeterError
from costmeter.service.reading import Store

Job = Callable[[Store], Any]
Done = Callable[[Any], None]
Failed = Callable[[str], None]


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, CostmeterError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    if "locked" in text or "busy" in text:
        return f"the database is busy ({text}); the figures shown may be a little old."
    return f"reading the database failed: {text}"


class StoreReader(QObject):
    _finished = Signal(object)
    #: A read failed: the message, in words for the user.
    error = Signal(str)
    #: True while a read is running (for a "loading" hint).
    busy = Signal(bool)

    def __init__(self, db_path: Path, parent: QObject | None = None, *, held: bool = False) -> None:
        """``held``: keep requests waiting until ``release()`` (the app releases them after the
        window's first paint, so opening the database does not compete with drawing it)."""
        super().__init__(parent)
        self.db_path = db_path
        self._pending: OrderedDict[str, tuple[Job, Done, Failed | None]] = OrderedDict()
        self._cond = threading.Condition()
        self._stopping = False
        self._held = held
        self._store: Store | None = None
        self._finished.connect(self._deliver)
        self._thread = threading.Thread(target=self._run, name="costmeter-reader", daemon=True)
        self._thread.start()

    def submit(self, key: str, fn: Job, done: Done, failed: Failed | None = None) -> None:
        with self._cond:
            self._pending.pop(key, None)
            self._pending[key] = (fn, done, failed)
            self._cond.notify()

    def release(self) -> None:
        """Start running the requests (see ``held``); harmless when not held."""
        with self._cond:
            self._held = False
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def set_path(self, db_path: Path) -> None:
        """Read another database from the next request on."""
        with self._cond:
            self.db_path = db_path
            self._pending.clear()
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        current: Path | None = None
        while True:
            with self._cond:
                while (self._held or not self._pending) and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
                _, (fn, done, failed) = self._pending.popitem(last=False)
                path = self.db_path
            self.busy.emit(True)
            try:
                if self._store is None or current != path:
                    if self._store is not None:
                        self._store.close()
                    self._store = None
                    self._store = Store.open(path)
                    current = path
                result = fn(self._store)
                self._finished.emit((done, result, None))
            except Exception as exc:  # every failure becomes a sentence for the user
                self._finished.emit((failed, None, describe_error(exc)))
            finally:
                self.busy.emit(False)
        if self._store is not None:
            self._store.close()

    @Slot(object)
    def _deliver(self, payload: tuple[Callable[[Any], None] | None, Any, str | None]) -> None:
        callback, result, message = payload
        if message is not None:
            self.error.emit(message)
            if callback is not None:
                callback(message)
            return
        if callback is not None:
            callback(result)
