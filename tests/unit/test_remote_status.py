"""The remote_hosts / device_events tables: written in batches, read back by ``report``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from costmeter.cli.main import main
from costmeter.core import DeviceInfo, HostInfo
from costmeter.core.clock import SystemClock
from costmeter.service.remote.status import HostStatus
from costmeter.service.remote.status_db import StatusTable, newest_sample, read_statuses
from costmeter.store import Store, Writer
from costmeter.store.database import connect


def _wait(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    Store.open(path).close()
    return path


def test_statuses_are_written_and_read_back(db: Path) -> None:
    table = StatusTable(db, flush_interval=0.1)
    table.start()
    try:
        table.put(HostStatus("box", "http://box:9464", "agent", "disconnected", error="not yet"))
        table.put(
            HostStatus("box", "http://box:9464", "agent", "connected", 100.0, 99.5), urgent=True
        )
        table.put(HostStatus("127.0.0.1:1", "http://127.0.0.1:1", "agent", "disconnected"))
        table.forget("http://127.0.0.1:1")
        table.put(HostStatus("gpu7", "http://gpu7:9400", "prometheus", "error", error="401"))
    finally:
        table.stop()
    rows = read_statuses(db, now=110.0)
    assert [(r.name, r.state, r.error) for r in rows] == [
        ("box", "connected", None),
        ("gpu7", "error", "401"),
    ]
    assert rows[0].lag_s == pytest.approx(10.5)
    assert rows[0].last_contact == 100.0


def test_two_sources_reporting_one_name_keep_a_row_each(db: Path) -> None:
    """Keyed by name, the refused second exporter overwrote the first's row: report then
    showed the host connected through the wrong URL, or hid the refusal."""
    table = StatusTable(db, flush_interval=0.05)
    table.start()
    try:
        table.put(HostStatus("gpu7", "http://gpu7:9400", "prometheus", "connected", 100.0, 99.0))
        table.put(
            HostStatus("gpu7", "http://gpu7:9100", "prometheus", "error", error="same host"),
            urgent=True,
        )
    finally:
        table.stop()
    rows = read_statuses(db, now=110.0)
    assert [(r.name, r.url, r.state) for r in rows] == [
        ("gpu7", "http://gpu7:9100", "error"),
        ("gpu7", "http://gpu7:9400", "connected"),
    ]


def test_a_failed_pull_keeps_the_last_contact_time(db: Path) -> None:
    table = StatusTable(db, flush_interval=0.05)
    table.start()
    try:
        table.put(HostStatus("box", "u", "agent", "connected", 100.0, 99.0), urgent=True)
        _wait(lambda: read_statuses(db))
        table.put(HostStatus("box", "u", "agent", "disconnected", None, None, error="refused"))
    finally:
        table.stop()
    (row,) = read_statuses(db)
    assert (row.state, row.last_contact, row.newest_sample) == ("disconnected", 100.0, 99.0)


def test_xid_events_wait_for_their_device_to_be_registered(db: Path) -> None:
    table = StatusTable(db, flush_interval=0.05)
    table.start()
    writer = Writer(db, clock=SystemClock(), flush_interval=0.05)
    try:
        table.add_xid("GPU-x", 1234.5, 79)
        time.sleep(0.3)  # several flushes: the device is not there yet
        writer.start()
        writer.register(
            HostInfo("box", 2, "cpu", 1 << 30), [DeviceInfo("box", 0, "GPU-x", "A100", 1 << 30)]
        )
        writer.flush(5)
        table.add_xid("GPU-x", 1234.5, 79)  # the same event again: stored once
        conn = connect(db)
        try:
            _wait(lambda: conn.execute("SELECT count(*) FROM device_events").fetchone()[0] == 1)
            rows = conn.execute("SELECT ts, kind, value FROM device_events").fetchall()
        finally:
            conn.close()
        assert rows == [(1234500, "xid", 79)]
    finally:
        table.stop()
        writer.stop()


def test_newest_sample_is_none_for_an_unknown_host(db: Path) -> None:
    assert newest_sample(db, "nobody") is None
    assert read_statuses(db.with_name("missing.db")) == []


def test_report_shows_disconnected_hosts(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = StatusTable(db, flush_interval=0.05)
    table.start()
    contact = time.time() - 120
    try:
        table.put(
            HostStatus(
                "gpu-box-1", "http://gpu-box-1:9464", "agent", "disconnected", contact,
                contact - 1, error="gpu-box-1:9464 is unreachable (connection refused)",
            )
        )  # fmt: skip
        table.put(HostStatus("ok-box", "http://ok-box:9464", "agent", "connected", contact))
    finally:
        table.stop()
    assert main(["report", "--db", str(db), "--since", "1h"]) == 0
    out = capsys.readouterr().out
    since = time.strftime("%H:%M", time.localtime(contact))
    assert (
        f"gpu-box-1: disconnected since {since} (gpu-box-1:9464 is unreachable "
        "(connection refused))" in out
    )
    assert "ok-box: connected" in out
    assert main(["report", "--db", str(db), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    states = {h["name"]: h["state"] for h in data["remote_hosts"]}
    assert states == {"gpu-box-1": "disconnected", "ok-box": "connected"}


def test_migration_4_keeps_the_rows_of_a_version_3_database(tmp_path: Path) -> None:
    from costmeter.store.schema import MIGRATIONS, migrate

    path = tmp_path / "v3.db"
    conn = connect(path)
    migrate(conn, str(path), MIGRATIONS[:3])
    conn.execute(
        "INSERT INTO remote_hosts (name, url, kind, state, last_contact, newest_sample,"
        " last_error, updated) VALUES ('gpu7', 'http://gpu7:9400', 'prometheus', 'connected',"
        " 100.0, 99.0, NULL, 100.0)"
    )
    conn.commit()
    conn.close()
    Store.open(path).close()  # migrates to the newest version
    (row,) = read_statuses(path, now=110.0)
    assert (row.name, row.url, row.state, row.newest_sample) == (
        "gpu7", "http://gpu7:9400", "connected", 99.0,
    )  # fmt: skip
    table = StatusTable(path, flush_interval=0.05)
    table.start()
    try:
        table.put(HostStatus("gpu7", "http://gpu7:9100", "prometheus", "error", error="x"))
    finally:
        table.stop()
    assert [r.url for r in read_statuses(path)] == ["http://gpu7:9100", "http://gpu7:9400"]
