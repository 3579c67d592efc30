"""The progress reporter (cheap, never raising) and its reader (torn lines, ETA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from costmeter import progress
from costmeter.plugin_api import PROGRESS_ENV
from costmeter.progress import ProgressPoint, eta, latest, read_progress, report


@pytest.fixture(autouse=True)
def fresh_writer() -> Iterator[None]:
    progress._writer.close()
    yield
    progress._writer.close()


@pytest.fixture
def progress_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / progress.FILE_NAME
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    return path


def test_outside_costmeter_it_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    report(1, 10, loss=0.5)
    progress.flush()
    assert list(tmp_path.iterdir()) == []


def test_lines_carry_time_step_total_and_metrics(
    progress_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    before = time.time()
    report(1, 3, loss=0.5, acc=1)
    report(2, loss=float("nan"), note="text")  # type: ignore[arg-type]
    lines = [json.loads(line) for line in progress_file.read_text().splitlines()]
    assert lines[0]["step"] == 1 and lines[0]["total"] == 3
    assert lines[0]["metrics"] == {"loss": 0.5, "acc": 1.0}
    assert before - 0.01 <= lines[0]["time"] <= time.time() + 0.01
    assert lines[1] == {
        "time": lines[1]["time"],
        "step": 2,
        "total": None,
        "metrics": {"loss": None, "note": None},
    }
    points = read_progress(progress_file)
    assert [p.step for p in points] == [1, 2] and points[0].fraction == pytest.approx(1 / 3)


def test_fast_steps_are_coalesced_and_the_last_is_kept(progress_file: Path) -> None:
    for step in range(1, 1001):
        report(step)
    assert [p.step for p in read_progress(progress_file)] == [1]
    progress.flush()
    assert [p.step for p in read_progress(progress_file)] == [1, 1000]


def test_reaching_the_total_is_written_at_once(progress_file: Path) -> None:
    for step in range(1, 101):
        report(step, 100)
    assert [p.step for p in read_progress(progress_file)] == [1, 100]


def test_it_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "missing-dir" / "p.jsonl"))
    report(1, 2, loss=0.1)
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "p.jsonl"))
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    report("not a number")  # type: ignore[arg-type]
    report(1, "ten")  # type: ignore[arg-type]
    report(2, 10, loss=object())  # type: ignore[arg-type]
    assert [p.step for p in read_progress(tmp_path / "p.jsonl")] == [2]


def test_a_new_file_is_opened_when_the_variable_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(first))
    report(1)
    report(2)  # coalesced: written to a.jsonl when the file changes
    monkeypatch.setenv(PROGRESS_ENV, str(second))
    report(3)
    assert [p.step for p in read_progress(first)] == [1, 2]
    assert [p.step for p in read_progress(second)] == [3]


def test_calling_it_every_step_is_cheap(progress_file: Path) -> None:
    begun = time.perf_counter()
    for step in range(100_000):
        report(step, 1_000_000, loss=0.25)
    elapsed = time.perf_counter() - begun
    assert elapsed < 1.0, f"100k calls took {elapsed:.2f} s"  # about 0.15 s measured
    assert len(progress_file.read_text().splitlines()) <= 1 + int(elapsed / progress.MIN_INTERVAL_S)


def test_a_script_writes_its_last_point_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    code = "from costmeter import progress\nfor i in range(500): progress.report(i, loss=i / 10)"
    env = {**os.environ, PROGRESS_ENV: str(path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    points = read_progress(path)
    assert [p.step for p in points] == [0, 499] and points[-1].metrics == {"loss": 49.9}


def test_the_reader_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    good = '{"time": 1.0, "step": 1, "total": 4, "metrics": {}}\n'
    path.write_text(good + "garbage\n" + good.replace('"step": 1', '"step": 2') + '{"time": 3')
    assert [p.step for p in read_progress(path)] == [1, 2]
    assert latest(path) == ProgressPoint(1.0, 2, 4, {})
    assert read_progress(tmp_path / "none") == [] and latest(tmp_path / "none") is None


def test_latest_reads_only_the_tail_of_a_long_file(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    line = '{{"time": {0}, "step": {0}, "total": null, "metrics": {{"loss": 0.5}}}}\n'
    path.write_text("".join(line.format(i) for i in range(20_000)))
    assert path.stat().st_size > 64 * 1024
    assert latest(path) == ProgressPoint(19_999.0, 19_999, None, {"loss": 0.5})


def _points(*pairs: tuple[float, int], total: int | None = 100) -> list[ProgressPoint]:
    return [ProgressPoint(t, s, total) for t, s in pairs]


def test_eta_from_the_recent_rate() -> None:
    points = _points((0, 0), (10, 10), (20, 20))
    assert eta(points) == pytest.approx(80.0)
    assert eta(points, now=25) == pytest.approx(75.0)
    assert eta(points, now=1_000) == 0.0


def test_eta_starts_over_after_a_restart_and_uses_recent_points() -> None:
    restarted = _points((0, 0), (10, 50), (20, 10), (30, 20))
    assert eta(restarted) == pytest.approx(80.0)  # 1 step/s since the restart at step 10
    slowed = _points((0, 0), (100, 90), (500, 91), (600, 92))  # fast, then 1 step per 100 s
    assert eta(slowed) == pytest.approx(800.0)


def test_eta_when_it_cannot_tell() -> None:
    assert eta([]) is None
    assert eta(_points((0, 5))) is None
    assert eta(_points((0, 5), (10, 5))) is None  # no progress
    assert eta(_points((0, 0), (10, 10), total=None)) is None
    assert eta(_points((0, 0), (10, 100))) == 0.0
