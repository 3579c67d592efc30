"""``costmeter record`` and ``report`` against faulty files, as a user meets them: the real CLI
in a subprocess; a real second process holding the lock; a real full tmpfs and real read-only
mounts (each in a mount namespace of its own, gone when the command ends)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costmeter.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import disk_faults
from disk_faults import fill_command, q

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]

needs_mount = pytest.mark.skipif(
    disk_faults.mount_unavailable() is not None,
    reason=f"real read-only mounts and a real full disk: {disk_faults.mount_unavailable()}",
)

HOLD_DB = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode = EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
conn.execute("CREATE TABLE IF NOT EXISTS held_here (a)")
print("held", flush=True)
time.sleep(60)
"""


def costmeter(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COSTMETER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def recorded_db(path: Path) -> Path:
    """A small real history, as a recorder leaves it."""
    rec = costmeter("record", "--simulate", "1", "--duration", "1", "--db", str(path))
    assert rec.returncode == 0, rec.stderr
    return path


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr


def test_report_on_a_locked_database_waits_names_the_holder_and_moves_nothing(
    home: Path,
) -> None:
    db = recorded_db(home / "h.db")
    script = home / "hold_db.py"
    script.write_text(HOLD_DB)
    holder = subprocess.Popen(
        [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        inode = db.stat().st_ino
        t = time.monotonic()
        rep = costmeter("report", "--db", str(db))
        waited = time.monotonic() - t
    finally:
        holder.kill()
        holder.wait(10)
    no_traceback(rep)
    assert rep.returncode == 2
    assert "is locked by another program" in rep.stderr
    assert f"PID {holder.pid}" in rep.stderr and "hold_db.py" in rep.stderr
    assert "damaged" not in rep.stderr and "moved" not in rep.stderr
    assert waited >= 4  # the busy timeout (5 s) was waited out first
    assert db.stat().st_ino == inode and not list(home.glob("h.db.corrupt-*"))
    again = costmeter("report", "--db", str(db), "--format", "json")  # free again: it reads
    assert again.returncode == 0, again.stderr


def test_report_and_advise_refuse_a_damaged_file_and_leave_it(home: Path) -> None:
    db = home / "bad.db"
    garbage = b"this is not a database" * 100
    db.write_bytes(garbage)
    for command in ("report", "advise"):
        done = costmeter(command, "--db", str(db))
        no_traceback(done)
        assert done.returncode != 0 and "is damaged" in done.stderr, done.stderr
    assert db.read_bytes() == garbage and [p.name for p in home.glob("bad.db*")] == ["bad.db"]


def test_a_folder_as_db_is_refused_with_exit_2(home: Path) -> None:
    folder = home / "somewhere"
    folder.mkdir()
    rec = costmeter("record", "--simulate", "1", "--duration", "1", "--db", str(folder))
    no_traceback(rec)
    assert rec.returncode == 2 and "is a folder" in rec.stderr
    assert sorted(p.name for p in home.iterdir() if p.name.startswith("somewhere")) == ["somewhere"]
    assert list(folder.iterdir()) == []


def test_a_db_in_a_missing_folder_is_refused_with_exit_2(home: Path) -> None:
    db = home / "typo" / "x.db"
    rec = costmeter("record", "--simulate", "1", "--duration", "1", "--db", str(db))
    no_traceback(rec)
    assert rec.returncode == 2 and "does not exist" in rec.stderr
    assert not (home / "typo").exists()  # not made on a guess


def test_recorded_files_are_private_under_umask_022(home: Path) -> None:
    db = home / "p.db"
    rec = subprocess.Popen(
        [*COSTMETER, "record", "--simulate", "1", "--interval", "0.2", "--db", str(db)],
        stderr=subprocess.PIPE,
        text=True,
        umask=0o022,
    )
    try:
        assert rec.stderr is not None
        seen = []
        for line in rec.stderr:  # "recording ..." once it records (and Ctrl-C is handled)
            seen.append(line)
            if "recording" in line:
                break
        assert seen and "recording" in seen[-1], seen
        deadline = time.monotonic() + 60
        wal = Path(f"{db}-wal")
        while not (wal.exists() and wal.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.2)
        for path in (db, wal, Path(f"{db}-shm"), Path(f"{db}.lock")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=60)
    assert rec.returncode == 0, err


@needs_mount
def test_a_read_only_database_file_is_refused_at_start(home: Path) -> None:
    db = recorded_db(home / "ro.db")
    before = db.read_bytes()
    rec = disk_faults.in_private_mounts(
        f"mount --bind -o ro {q(db)} {q(db)}",
        [*COSTMETER, "record", "--simulate", "1", "--duration", "2", "--db", str(db)],
    )
    no_traceback(rec)
    assert rec.returncode == 2, rec.stderr
    assert f"the file {db} is read-only" in rec.stderr
    assert db.read_bytes() == before
    rep = disk_faults.in_private_mounts(  # a reader still reads it
        f"mount --bind -o ro {q(db)} {q(db)}",
        [*COSTMETER, "report", "--format", "json", "--db", str(db)],
    )
    assert rep.returncode == 0, rep.stderr


@needs_mount
def test_a_read_only_folder_is_refused_at_start(home: Path) -> None:
    folder = home / "ro"
    folder.mkdir()
    db = recorded_db(folder / "x.db")
    rec = disk_faults.in_private_mounts(
        f"mount --bind -o ro {q(folder)} {q(folder)}",
        [*COSTMETER, "record", "--simulate", "1", "--duration", "2", "--db", str(db)],
    )
    no_traceback(rec)
    assert rec.returncode == 2, rec.stderr
    assert f"the folder {folder} is read-only" in rec.stderr
    new = disk_faults.in_private_mounts(
        f"mount --bind -o ro {q(folder)} {q(folder)}",
        [*COSTMETER, "record", "--simulate", "1", "--duration", "2", "--db", str(folder / "n.db")],
    )
    no_traceback(new)
    assert new.returncode == 2 and "read-only" in new.stderr, new.stderr
    rep = disk_faults.in_private_mounts(  # a reader reads it as the snapshot it is
        f"mount --bind -o ro {q(folder)} {q(folder)}",
        [*COSTMETER, "report", "--format", "json", "--db", str(db)],
    )
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout)["devices"], rep.stdout


@needs_mount
def test_a_full_disk_at_start_is_refused_with_exit_2(home: Path) -> None:
    disk = home / "disk"
    disk.mkdir()
    rec = disk_faults.in_private_mounts(
        f"mount -t tmpfs -o size=512k tmpfs {q(disk)}\n{fill_command(disk)}",
        [*COSTMETER, "record", "--simulate", "1", "--duration", "2", "--db", str(disk / "x.db")],
    )
    no_traceback(rec)
    assert rec.returncode == 2, rec.stderr
    assert f"The disk holding {disk / 'x.db'} is full" in rec.stderr


@needs_mount
def test_a_disk_filling_up_during_record_ends_promptly_with_the_loss_counted(home: Path) -> None:
    disk = home / "disk"
    disk.mkdir()
    db = disk / "x.db"
    # Record in the background; once the first samples are committed, fill the disk.
    setup = (
        f"mount -t tmpfs -o size=4m tmpfs {q(disk)}\n"
        f'"$@" & pid=$!\n'
        f"i=0; until [ -s {q(str(db) + '-wal')} ] || [ $i -ge 600 ]; do\n"
        "  sleep 0.1; i=$((i+1))\ndone\n"
        f"sleep 0.5\n{fill_command(disk)}\n"
        f"wait $pid; exit $?"
    )
    t = time.monotonic()
    args = ["record", "--simulate", "8", "--interval", "0.2", "--duration", "6", "--db", str(db)]
    rec = disk_faults.in_private_mounts(setup, [*COSTMETER, *args])
    elapsed = time.monotonic() - t
    no_traceback(rec)
    assert rec.returncode == 1, rec.stderr
    assert "samples could not be written to" in rec.stderr and ": disk full (" in rec.stderr
    assert " lost. See them with" in rec.stderr
    assert elapsed < 6 + 20  # not the old 30 s wait at the end
    assert os.listdir(disk) == []  # the tmpfs went away with its namespace


def test_store_reads_what_a_recorder_wrote_before_the_faults(home: Path) -> None:
    """The helper history itself is sound (so the faults above are the only cause)."""
    db = recorded_db(home / "ok.db")
    with Store.open(db) as store:
        assert store.integrity_check() == "ok" and store.devices()
