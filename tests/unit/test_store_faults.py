"""Faults around the database file: locked by another process, damaged, full disk, private
modes, no file descriptor leaks. Real SQLite files, real processes, a real full tmpfs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.core.errors import StoreError, StoreLockedError
from costmeter.service.agent.buffer import TickBuffer
from costmeter.store import RecorderLock, RetentionPolicy, Store, Writer
from costmeter.store.errors import (
    StoreBusyError,
    StoreCorruptError,
    StoreFullError,
    StorePathError,
)
from costmeter.store.lock import lock_holder
from costmeter.store.testing import device_infos, host_info, make_tick

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import disk_faults

T0 = 1_700_000_000.0
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)

#: Holds the database locked the way `sqlite3` with `.timeout 0` and an open transaction does
#: after `PRAGMA locking_mode=EXCLUSIVE`: no other connection, not even a WAL reader, gets in.
HOLD_DB = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode = EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
conn.execute("CREATE TABLE IF NOT EXISTS held_here (a)")
print("held", flush=True)
time.sleep(60)
"""


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def make_writer(path: Path, **kw: object) -> Writer:
    kw.setdefault("retention", KEEP_ALL)
    kw.setdefault("flush_interval", 0.05)
    return Writer(path, clock=SimulatedClock(T0), **kw)  # type: ignore[arg-type]


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real second process holding ``tmp_path/h.db`` locked; yields (db, process)."""
    db = tmp_path / "h.db"
    with Store.open(db):
        pass
    script = tmp_path / "hold_db.py"
    script.write_text(HOLD_DB)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield db, proc
    finally:
        proc.kill()
        proc.wait(10)


def test_a_locked_database_is_reported_with_its_holder_and_never_moved(
    tmp_path: Path, holder: tuple[Path, subprocess.Popen[str]]
) -> None:
    db, proc = holder
    before = db.stat()
    t = time.monotonic()
    with pytest.raises(StoreBusyError) as caught:
        Store.open(db, busy_timeout=0.5)
    waited = time.monotonic() - t
    assert 0.4 <= waited < 10  # it waited out the busy timeout, then gave up
    text = str(caught.value)
    assert "is locked by another program" in text and f"PID {proc.pid}" in text
    assert "hold_db.py" in text and "damaged" not in text
    after = db.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_recorder_does_not_move_a_locked_database_either(
    tmp_path: Path, holder: tuple[Path, subprocess.Popen[str]]
) -> None:
    db, proc = holder
    inode = db.stat().st_ino
    fds = open_fds()
    w = make_writer(db, busy_timeout=0.5)
    with pytest.raises(StoreBusyError, match=f"PID {proc.pid}"):
        w.start()
    assert db.stat().st_ino == inode and not list(tmp_path.glob("*.corrupt-*"))
    assert lock_holder(db) is None  # the recorder lock was given back
    assert open_fds() == fds


def test_a_damaged_file_is_refused_by_readers_and_moved_aside_by_the_recorder(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bad.db"
    garbage = b"definitely not SQLite " * 500
    db.write_bytes(garbage)
    with pytest.raises(StoreCorruptError, match="left as it is"):
        Store.open(db)
    assert db.read_bytes() == garbage and not list(tmp_path.glob("bad.db.*"))
    messages: list[str] = []
    w = make_writer(db, on_error=messages.append)
    w.start()
    try:
        assert w.notice is not None and "was damaged (file is not a database)" in w.notice
    finally:
        w.stop()
    (aside,) = tmp_path.glob("bad.db.corrupt-*")
    assert aside.read_bytes() == garbage  # kept, never deleted
    with Store.open(db) as store:
        assert store.integrity_check() == "ok"


def test_the_agent_buffer_moves_aside_only_a_confirmed_damaged_file(
    tmp_path: Path, holder: tuple[Path, subprocess.Popen[str]]
) -> None:
    db, _proc = holder  # a healthy file another process holds locked: an error, left in place
    inode = db.stat().st_ino
    with pytest.raises(StoreBusyError, match="could not be opened"):
        TickBuffer(db, retention_s=60.0, busy_timeout=0.5)
    assert db.stat().st_ino == inode and not list(tmp_path.glob("h.db.damaged-*"))
    bad = tmp_path / "b.db"
    bad.write_bytes(b"garbage " * 1000)
    buf = TickBuffer(bad, retention_s=60.0, now=lambda: T0)
    try:
        assert buf.notice is not None and "file is not a database" in buf.notice
    finally:
        buf.close()
    assert (tmp_path / f"b.db.damaged-{int(T0)}").read_bytes() == b"garbage " * 1000


def test_new_files_are_private_under_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "p.db"
        w = make_writer(db)
        w.start()
        w.register(host_info(), device_infos())
        w.submit(make_tick(T0))
        assert w.flush(10)
        try:
            for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock")):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        finally:
            w.stop()
        Store.open(tmp_path / "reader-made.db").close()
        assert stat.S_IMODE((tmp_path / "reader-made.db").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_lock_errors_leak_no_file_descriptor(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    first = RecorderLock(db, command="costmeter record")
    first.acquire()
    try:
        fds = open_fds()
        for _ in range(20):
            with pytest.raises(StoreLockedError):
                RecorderLock(db).acquire()
        assert open_fds() == fds
    finally:
        first.release()
    (tmp_path / "afile").write_text("x")
    fds = open_fds()
    with pytest.raises(StoreError):
        RecorderLock(tmp_path / "afile" / "x.db").acquire()
    assert open_fds() == fds


def test_a_failed_start_gives_the_recorder_lock_back(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")  # newer than this code: refused, left alone
    conn.close()
    fds = open_fds()
    with pytest.raises(StoreError, match="schema version 999"):
        make_writer(db).start()
    assert open_fds() == fds and lock_holder(db) is None


def test_a_folder_as_database_is_refused_before_any_file_is_made(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(StorePathError, match="is a folder"):
        make_writer(folder).start()
    with pytest.raises(StorePathError, match="is a folder"):
        Store.open(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no data.lock beside it


def test_the_queue_is_bounded_while_locked_and_the_loss_is_counted(tmp_path: Path) -> None:
    """No root needed: another connection holds the write lock for the whole recording."""
    import sqlite3

    db = tmp_path / "q.db"
    messages: list[str] = []
    w = make_writer(db, busy_timeout=0.05, max_pending=10, on_error=messages.append)
    w.start()
    w.register(host_info(), device_infos())
    assert w.flush(10)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        for k in range(50):
            w.submit(make_tick(T0 + k))
        assert w.stats.pending <= 10 and w.stats.dropped == 40
        t = time.monotonic()
        w.stop()
        assert time.monotonic() - t < 5
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert w.stats.lost == 50 and w.loss is not None
    assert w.loss.startswith(f"50 samples could not be written to {db}: locked by another program")
    assert "40 were dropped from memory while waiting and 10 were still waiting" in w.loss
    assert any("the oldest are being dropped" in m for m in messages), messages


needs_mount = pytest.mark.skipif(
    disk_faults.mount_unavailable() is not None,
    reason=f"a real full disk: {disk_faults.mount_unavailable()}",
)


@needs_mount
def test_a_full_disk_at_start_is_named_and_leaks_nothing(tmp_path: Path) -> None:
    with disk_faults.tmpfs(tmp_path / "disk", "256k") as disk:
        disk_faults.fill(disk)
        fds = open_fds()
        with pytest.raises(StoreFullError, match="is full"):
            RecorderLock(disk / "x.db").acquire()  # the lock file's PID line finds no room
        assert open_fds() == fds
        assert lock_holder(disk / "x.db") is None  # no half-taken lock left behind
        with pytest.raises(StoreFullError, match=f"The disk holding {disk / 'y.db'} is full"):
            make_writer(disk / "y.db").start()
        assert open_fds() == fds


@needs_mount
def test_a_disk_filling_up_while_recording_is_counted_bounded_and_stops_promptly(
    tmp_path: Path,
) -> None:
    messages: list[str] = []
    with disk_faults.tmpfs(tmp_path / "disk", "4m") as disk:
        db = disk / "x.db"
        w = make_writer(db, on_error=messages.append, max_pending=40)
        w.start()
        w.register(host_info(), device_infos())
        w.submit(make_tick(T0))
        assert w.flush(10)
        filler = disk_faults.fill(disk)
        for k in range(1, 101):
            w.submit(make_tick(T0 + k))
        deadline = time.monotonic() + 10
        while not any("is full" in m for m in messages) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(m.startswith(f"The disk holding {db} is full") for m in messages), messages
        stats = w.stats
        assert stats.failed_flushes >= 1
        assert stats.pending <= 40 + 1  # bounded: the registration may stay besides the ticks
        assert stats.dropped >= 100 - 40
        t = time.monotonic()
        w.stop()
        assert time.monotonic() - t < 5  # one last try, not a 30 s wait
        assert w.stats.lost == 100 and w.loss is not None
        assert w.loss.startswith(f"100 samples could not be written to {db}: disk full (")
        filler.unlink()
    assert lock_holder(db) is None


@needs_mount
def test_samples_kept_in_memory_are_written_once_space_is_freed(tmp_path: Path) -> None:
    with disk_faults.tmpfs(tmp_path / "disk", "4m") as disk:
        db = disk / "x.db"
        w = make_writer(db)
        w.start()
        w.register(host_info(), device_infos())
        w.submit(make_tick(T0))
        assert w.flush(10)
        filler = disk_faults.fill(disk)
        for k in range(1, 31):
            w.submit(make_tick(T0 + k))
        assert not w.flush(1.0)
        assert w.stats.failed_flushes >= 1
        filler.unlink()
        assert w.flush(20)
        w.stop()
        assert w.stats.lost == 0 and w.loss is None
        with Store.open(db) as store:
            assert store.device_usage(T0, T0 + 31)[0].seconds == pytest.approx(31)  # all 31 ticks
