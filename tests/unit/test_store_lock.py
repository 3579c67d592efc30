"""One recorder per database: a second is refused, a dead holder's lock goes away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.core.errors import StoreLockedError
from costmeter.store import RecorderLock, Store, Writer
from costmeter.store.lock import lock_holder

HOLDER = """
import sys, time
from costmeter.store import RecorderLock
lock = RecorderLock(sys.argv[1], command="costmeter record")
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_second_writer_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    first = Writer(db, clock=SimulatedClock(0), command="costmeter record")
    first.start()
    try:
        second = Writer(db, clock=SimulatedClock(0))
        with pytest.raises(StoreLockedError) as err:
            second.start()
        assert str(err.value) == (
            f"Another Costmeter recorder (PID {os.getpid()}, `costmeter record`) is already "
            f"writing {db}. Stop it first, or pass --db to record into another file."
        )
        with Store.open(db) as store:
            assert store.lock_holder() == f"PID {os.getpid()}, `costmeter record`"
    finally:
        first.stop()
    assert lock_holder(db) is None
    again = Writer(db, clock=SimulatedClock(0))
    again.start()
    again.stop()


def test_lock_is_released_when_the_holder_process_dies(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        lock = RecorderLock(db)
        with pytest.raises(StoreLockedError, match=f"PID {proc.pid}, `costmeter record`"):
            lock.acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    with RecorderLock(db) as lock:
        assert lock.held
    assert not lock.held
