"""Work off the GUI thread that is not a database read: backend and run-service calls.

``TaskRunner.submit(key, fn, done, failed)`` runs ``fn()`` on one of a few worker threads and
calls ``done(result)`` (or ``failed(sentence)``) later on the GUI thread. Requests with the same
key never run at once: one submitted while its key is still running waits, and a newer one
replaces it, so a slow call (a run service reading SQLite, a backend that does not answer)
never piles up work. Keys that must all run (launches) are made unique by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal, Slot

from costmeter.core import CostmeterError

log = logging.getLogger(__name__)

Work = Callable[[], Any]
Done = Callable[[Any], None]
Failed = Callable[[str], None]


def describe(exc: BaseException) -> str:
    """An exception as a sentence for the user."""
    if isinstance(exc, CostmeterError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


class TaskRunner(QObject):
    _finished = Signal(object)

    def __init__(self, workers: int = 4, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._waiting: dict[str, tuple[Work, Done | None, Failed | None]] = {}
        self._closed = False
        # Daemon threads: a backend call that hangs must not keep the app from exiting.
        self._queue: queue.SimpleQueue[tuple[str, Work, Done | None, Failed | None] | None]
        self._queue = queue.SimpleQueue()
        self._workers = workers
        self._threads: list[threading.Thread] = []  # started on the first submit
        self._finished.connect(self._deliver)

    def submit(
        self, key: str, fn: Work, done: Done | None = None, failed: Failed | None = None
    ) -> None:
        with self._lock:
            if self._closed:
                return
            if key in self._running:
                self._waiting[key] = (fn, done, failed)
                return
            self._running.add(key)
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._loop, name=f"costmeter-task-{i}", daemon=True)
                    for i in range(self._workers)
                ]
                for thread in self._threads:
                    thread.start()
        self._queue.put((key, fn, done, failed))

    def busy(self, key: str) -> bool:
        with self._lock:
            return key in self._running or key in self._waiting

    def shutdown(self, wait: bool = False, timeout: float = 10.0) -> None:
        """Take no more work; with ``wait``, let the calls under way finish first."""
        with self._lock:
            self._closed = True
            self._waiting.clear()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            deadline = time.monotonic() + timeout
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._work(*item)

    def _work(self, key: str, fn: Work, done: Done | None, failed: Failed | None) -> None:
        while True:
            try:
                result = fn()
            except Exception as exc:  # every failure becomes a sentence for the user
                log.debug("Task %s failed.", key, exc_info=True)
                self._emit((failed, None, describe(exc)))
            else:
                self._emit((done, result, None))
            with self._lock:
                following = self._waiting.pop(key, None)
                if following is None or self._closed:
                    self._running.discard(key)
                    return
            fn, done, failed = following

    def _emit(self, payload: tuple[Callable[[Any], None] | None, Any, str | None]) -> None:
        with contextlib.suppress(RuntimeError):  # deleted with its window: nobody listens
            self._finished.emit(payload)

    @Slot(object)
    def _deliver(self, payload: tuple[Callable[[Any], None] | None, Any, str | None]) -> None:
        callback, result, message = payload
        if callback is None:
            if message is not None:
                log.warning("%s", message)
            return
        try:
            callback(message if message is not None else result)
        except RuntimeError as exc:
            if "already deleted" not in str(exc):
                raise
            log.debug("An answer came after its widget was deleted: %s", exc)


def alive(obj: QObject) -> bool:
    """False once the Qt side of ``obj`` is deleted (a late answer for a closed widget)."""
    return shiboken6.isValid(obj)
