"""`costmeter import` as a user runs it: the real CLI in a subprocess, real SQLite files, real
nvidia-smi logs from public repositories (tests/data/nvidia_smi/PROVENANCE.md)."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "nvidia_smi"
NANOGPT = DATA / "nanogpt_8gpu_train_nounits.csv"
NANOGPT_COLUMNS = "timestamp,index,temperature.gpu,utilization.gpu,power.draw"
RPF = DATA / "rpf_gpu_usage_epoch_b.csv"
COSTMETER = [sys.executable, "-m", "costmeter"]


def costmeter(*args: object, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COSTMETER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,  # type: ignore[call-overload]
    )


@pytest.fixture(autouse=True)
def env_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the user's real data and config dirs out of every test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def _since(first_ts: float) -> str:
    return f"{math.ceil((time.time() - first_ts) / 86400) + 2}d"


def _rows(db: Path, host: str | None = None) -> int:
    conn = sqlite3.connect(db)
    try:
        sql = "SELECT count(*) FROM device_samples s JOIN devices d ON d.id = s.device_id"
        sql += " JOIN hosts h ON h.id = d.host_id"
        if host is None:
            return int(conn.execute(sql).fetchone()[0])
        return int(conn.execute(sql + " WHERE h.hostname = ?", (host,)).fetchone()[0])
    finally:
        conn.close()


def _nanogpt_power() -> dict[int, list[tuple[float, float]]]:
    """(ts, watts) per GPU, read from the file with plain Python (no Costmeter code)."""
    series: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for line in NANOGPT.read_text().splitlines()[1:]:
        stamp, idx, _temp, _util, watts = (c.strip() for c in line.split(","))
        ts = datetime.fromisoformat(stamp).timestamp()
        series[int(idx)].append((ts, float(watts)))
    return series


def _trapezoid_kwh(points: list[tuple[float, float]], max_gap: float) -> float:
    joules = 0.0
    for (t0, p0), (t1, p1) in itertools.pairwise(points):
        if 0 < t1 - t0 <= max_gap:
            joules += (p0 + p1) / 2 * (t1 - t0)
    return joules / 3.6e6


def _import_nanogpt(db: Path) -> subprocess.CompletedProcess[str]:
    return costmeter(
        "import", NANOGPT, "--db", db, "--host", "gpu-box-1",
        "--columns", NANOGPT_COLUMNS, "--gpu-model", "h100",
    )  # fmt: skip


def test_real_log_feeds_report_and_advise_with_measured_power(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    result = _import_nanogpt(db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Imported 5,112 samples of 8 GPUs (host gpu-box-1, ")
    assert (
        "Energy of GPUs 0, 1, 2, 3, 4, 5, 6, 7 (NVIDIA H100 80GB HBM3): from power.draw."
        in result.stdout
    )

    power = _nanogpt_power()
    first = min(p[0][0] for p in power.values())
    rep = costmeter("report", "--db", db, "--since", _since(first), "--format", "json")
    assert rep.returncode == 0, rep.stderr
    devices = {d["index"]: d for d in json.loads(rep.stdout)["devices"]}
    assert sorted(devices) == list(range(8))
    for idx, points in power.items():
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(points)]
        assert max(gaps) < 10  # so the importer's gap rule integrates every interval
        expected = _trapezoid_kwh(points, max_gap=10)
        d = devices[idx]
        assert d["host"] == "gpu-box-1" and d["name"] == "NVIDIA H100 80GB HBM3"
        assert d["energy_kwh"] == pytest.approx(expected, rel=1e-4, abs=1e-7)
        # Integrated power, as the recorder labels it when there is no energy counter.
        assert d["energy_source"] == "estimated"
        assert d["hours"] == pytest.approx((points[-1][0] - points[0][0]) / 3600, rel=1e-3)
        assert d["avg_util"] > 90

    adv = costmeter("advise", "--db", db, "--since", _since(first), "--format", "json")
    assert adv.returncode == 0, adv.stderr
    assert isinstance(json.loads(adv.stdout), list)


def test_importing_twice_adds_nothing(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    assert _import_nanogpt(db).returncode == 0
    conn = sqlite3.connect(db)
    before = conn.execute("SELECT count(*), sum(energy_mj) FROM device_samples").fetchone()
    rollups = conn.execute("SELECT count(*), sum(energy_mj) FROM device_rollup_1m").fetchone()
    conn.close()
    again = _import_nanogpt(db)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Nothing new: the 5,112 readings of 8 GPUs")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*), sum(energy_mj) FROM device_samples").fetchone() == before
    assert conn.execute("SELECT count(*), sum(energy_mj) FROM device_rollup_1m").fetchone() == (
        rollups
    )
    assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == 8
    assert conn.execute("SELECT count(*) FROM hosts").fetchone()[0] == 1
    conn.close()
    assert before[0] == 5112


def test_estimated_energy_without_power_draw(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    result = costmeter("import", RPF, "--db", db, "--host", "rpf", "--gpu-model", "rtx4090")
    assert result.returncode == 0, result.stderr
    assert "estimated from utilisation and a 450 W power limit" in result.stdout
    # Independent: idle 20 W + (450 - 20) x utilisation, the simulator's curve for the board.
    points = []
    for line in RPF.read_text().splitlines()[1:]:
        ts, _used, _total, util = (float(c) for c in line.split(","))
        points.append((ts, 20 + 430 * util / 100))
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(points)]
    assert max(gaps) <= 300
    rep = costmeter("report", "--db", db, "--since", _since(points[0][0]), "--format", "json")
    (device,) = json.loads(rep.stdout)["devices"]
    assert device["name"] == "NVIDIA GeForce RTX 4090"
    assert device["energy_kwh"] == pytest.approx(_trapezoid_kwh(points, 300), rel=1e-4)
    assert device["energy_source"] == "estimated"


def test_malformed_rows_are_named_skipped_and_exit_1(tmp_path: Path) -> None:
    lines = RPF.read_text().splitlines()
    lines[4] = lines[4].replace(",", ",abc", 1)  # line 5: memory.used 'abc...'
    lines[9] = "garbage"  # line 10
    bad = tmp_path / "gpu.csv"
    bad.write_text("\n".join(lines) + "\n")
    db = tmp_path / "h.db"
    result = costmeter("import", bad, "--db", db, "--host", "rpf")
    assert result.returncode == 1, result.stderr
    assert "skipped 2 malformed rows: line 5 (memory.used 'abc" in result.stdout
    assert "line 10 (1 values where the columns are 4)" in result.stdout
    assert _rows(db) == len(lines) - 1 - 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "There is no file"),
        (b"", "holds no text lines"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50, "holds no text lines"),
        (b"timestamp, power.draw [W]\n2024/10/30 18:42:33.189, 22.89 W\n", "no utilization.gpu"),
        (b"2024/01/31 12:00:00.000, 5 %\n", "--columns"),
        (b"timestamp, utilization.gpu\nnot a time, 5\n", "holds no valid reading"),
    ],
)
def test_unusable_files_exit_2_and_write_nothing(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    db = tmp_path / "h.db"
    assert _import_nanogpt(db).returncode == 0
    before = _rows(db)
    path = tmp_path / "log.csv"
    if content is not None:
        path.write_bytes(content)
    result = costmeter("import", path, "--db", db)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert _rows(db) == before


def test_a_directory_and_bad_options_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    result = costmeter("import", tmp_path, "--db", db)
    assert result.returncode == 2 and "is a directory" in result.stderr
    result = costmeter("import", RPF, "--db", db, "--tz", "Mars/Olympus")
    assert result.returncode == 2 and "is not a time zone" in result.stderr
    result = costmeter("import", RPF, "--db", db, "--columns", "timestamp,power.draw")
    assert result.returncode == 2 and "utilization.gpu" in result.stderr
    assert not db.exists()


def _limit_file_size(limit: int) -> None:
    # Writes past `limit` bytes fail with EFBIG, as on a full disk; SIGXFSZ would kill instead.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_disk_full_mid_import_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    first = costmeter("import", RPF, "--db", db, "--host", "rpf")
    assert first.returncode == 0, first.stderr
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = _rows(db)
    copy = tmp_path / "before.db"
    shutil.copy(db, copy)
    size = db.stat().st_size
    result = subprocess.run(
        [*COSTMETER, "import", str(NANOGPT), "--db", str(db), "--host", "gpu-box-1",
         "--columns", NANOGPT_COLUMNS],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: _limit_file_size(size + 64 * 1024),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nothing was written, the database is as it was before" in result.stderr
    assert "Traceback" not in result.stderr
    assert _rows(db) == before
    assert _rows(db, "gpu-box-1") == 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == 1
    conn.close()
    # And with room again, the same import goes through whole.
    again = _import_nanogpt(db)
    assert again.returncode == 0, again.stderr
    assert _rows(db, "gpu-box-1") == 5112


def test_costmeter_export_round_trip(tmp_path: Path) -> None:
    """Export one GPU's power series the way the History page does, import it elsewhere."""
    from costmeter.service.export import write_series
    from costmeter.store import Store

    db = tmp_path / "h.db"
    assert _import_nanogpt(db).returncode == 0
    store = Store.open(db)
    try:
        device = next(d for d in store.devices() if d.index == 3)
        start, end = store.time_range() or (0.0, 0.0)
        series = store.query_series(device.id, "power_w", start, end + 1, max_points=5000)
    finally:
        store.close()
    assert series.resolution == "raw" and len(series) == 639
    export = tmp_path / f"costmeter-{device.uuid[:16]}-power_w.csv"
    write_series(export, series, device="GPU 3", start=start, end=end + 1, unit="W")

    other = tmp_path / "other.db"
    result = costmeter("import", export, "--db", other, "--host", "copy", "--gpu-model", "h100")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Imported 639 samples of 1 GPU (host copy, ")
    points = _nanogpt_power()[3]
    rep = costmeter("report", "--db", other, "--since", _since(start), "--format", "json")
    (copied,) = json.loads(rep.stdout)["devices"]
    assert copied["energy_kwh"] == pytest.approx(_trapezoid_kwh(points, 10), rel=1e-4)
    again = costmeter("import", export, "--db", other, "--host", "copy", "--gpu-model", "h100")
    assert again.returncode == 0 and again.stdout.startswith("Nothing new")


def test_an_import_killed_mid_way_leaves_nothing(tmp_path: Path) -> None:
    """The log comes through a FIFO: the importer is killed (SIGKILL) while its transaction is
    open and half the rows are in; no reader ever sees them, and a new import then works."""
    db = tmp_path / "h.db"
    fifo = tmp_path / "log.csv"
    os.mkfifo(fifo)
    lines = NANOGPT.read_text().splitlines(keepends=True)
    proc = subprocess.Popen(
        [*COSTMETER, "import", str(fifo), "--db", str(db), "--host", "gpu-box-1",
         "--columns", NANOGPT_COLUMNS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # The importer reads the first line, closes the file and opens it again: keep writing
        # until it has closed (EPIPE), so the second writer meets the second open.
        with contextlib.suppress(BrokenPipeError), fifo.open("wb", buffering=0) as w:
            w.write(lines[0].encode())
            for _ in range(1000):
                w.write(lines[1].encode())
                time.sleep(0.01)
        with fifo.open("wb", buffering=0) as w:
            # 5,100 of the 5,112 rows: one batch of 5,000 goes into the open transaction. A
            # blocking write returns once the reader has taken all but a pipe's worth (64 KiB).
            w.write("".join(lines[:5101]).encode())
            time.sleep(1.0)
            assert proc.poll() is None  # still waiting for the rest, transaction open
            assert _rows(db) == 0  # uncommitted: invisible to readers
            proc.kill()
            proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert _rows(db) == 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == 0
    conn.close()
    again = _import_nanogpt(db)
    assert again.returncode == 0, again.stderr
    assert _rows(db) == 5112


def test_a_damaged_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    garbage = b"SQLite format 3\x00" + bytes(range(256)) * 64
    db.write_bytes(garbage)
    result = costmeter("import", RPF, "--db", db, "--host", "rpf")
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr and result.stderr.strip()
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.db"]


def test_importing_again_with_gpu_model_fills_in_the_energy(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    first = costmeter("import", RPF, "--db", db, "--host", "rpf")
    assert first.returncode == 0 and "Energy of GPU 0: unknown" in first.stdout
    second = costmeter("import", RPF, "--db", db, "--host", "rpf", "--gpu-model", "rtx4090")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("Imported 122 samples of 1 GPU")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*), count(energy_mj) FROM device_samples").fetchone() == (
        122,
        122,
    )
    assert conn.execute("SELECT name FROM devices").fetchall() == [("NVIDIA GeForce RTX 4090",)]
    conn.close()
