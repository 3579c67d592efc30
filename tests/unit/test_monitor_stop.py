"""A stop asked for before the sampling loop exists is not lost (Ctrl-C right at start)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from costmeter.config import Config
from costmeter.service.monitor import Monitor, MonitorOptions


def _monitor(tmp_path: Path) -> Monitor:
    monitor = Monitor(
        MonitorOptions(
            db_path=tmp_path / "m.db", config=Config(), interval_s=0.2, simulate="t4:idle"
        ),
        on_message=lambda _m: None,
    )
    monitor.open()
    return monitor


def test_a_stop_before_the_loop_starts_ends_run_until_at_once(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path)
    try:
        monitor.stop()  # the recorder's SIGINT handler, between "recording ..." and the loop
        done = threading.Event()
        thread = threading.Thread(target=lambda: (monitor.run_until(None), done.set()))
        thread.daemon = True
        thread.start()
        assert done.wait(5), "run_until(None) ignored a stop asked for before it started"
    finally:
        monitor.close()


def test_a_stop_while_running_ends_run_until(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path)
    try:
        threading.Timer(0.5, monitor.stop).start()
        t0 = time.monotonic()
        ticks = monitor.run_until(None)
        assert time.monotonic() - t0 < 5 and ticks >= 1
    finally:
        monitor.close()
