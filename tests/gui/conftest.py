"""Fixtures for the desktop app's tests (offscreen Qt, temporary database and settings)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QEvent, QSettings
from PySide6.QtWidgets import QApplication

from costmeter.config import Config
from costmeter.gui.context import AppContext, ContextSignals
from costmeter.gui.reader import StoreReader
from costmeter.gui.widgets import evidence_plot
from costmeter.service.live import LiveState
from costmeter.service.monitor import Monitor, MonitorOptions

pytestmark = pytest.mark.gui

#: How long a test's threads get to finish after its teardown before the test fails.
THREAD_GRACE_S = 5.0


@pytest.fixture(autouse=True)
def nothing_left_behind(qapp: QApplication) -> Iterator[None]:
    """Fail a test that leaves threads running, windows open or evidence charts queued.

    pytest-qt closes and ``deleteLater``s the widgets given to ``qtbot.addWidget`` before any
    fixture is torn down; this fixture is set up first, so it is torn down last and sees what
    is really left. State that outlives a test is how one test crashes another."""
    threads_before = set(threading.enumerate())
    yield
    for _ in range(3):  # deleteLater'd widgets, then what their deletion posted
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QApplication.processEvents()
    problems: list[str] = []
    charts = evidence_plot.waiting_charts()
    evidence_plot.drop_queued_charts()
    if charts:
        problems.append(f"{len(charts)} evidence chart(s) still queued for a build")
    deadline = time.monotonic() + THREAD_GRACE_S
    while True:
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        if not threads or time.monotonic() > deadline:
            break
        QApplication.processEvents()
        time.sleep(0.02)
    if threads:
        problems.append("threads still running: " + ", ".join(sorted(t.name for t in threads)))
    windows = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    for w in windows:
        w.close()
    if windows:
        names = ", ".join(sorted(type(w).__name__ for w in windows))
        problems.append(f"windows left open: {names}")
    if problems:
        pytest.fail("The test left state behind: " + "; ".join(problems), pytrace=False)


def simulate_history(
    db: Path, hours: float, spec: str = "a100:train,t4:idle", seed: int = 0
) -> float:
    """Write ``hours`` of simulated history ending now, as ``costmeter simulate`` does.

    Returns the end time."""
    end = math.floor(time.time())
    monitor = Monitor(
        MonitorOptions(
            db_path=db,
            config=Config(),
            interval_s=1.0,
            simulate=spec,
            seed=seed,
            simulated_start=end - hours * 3600,
        ),
        on_message=lambda _m: None,
    )
    monitor.open()
    try:
        monitor.run_until(end)
    finally:
        monitor.close()
    return float(end)


@pytest.fixture
def make_ctx(tmp_path: Path, qapp: object) -> Iterator:
    """``make_ctx(db_path=None, config=None)`` -> an AppContext on a temporary database."""
    made: list[AppContext] = []

    def make(db_path: Path | None = None, config: Config | None = None) -> AppContext:
        db = db_path or tmp_path / "gui.db"
        ctx = AppContext(
            config=config or Config(),
            config_path=tmp_path / "config.toml",
            db_path=db,
            reader=StoreReader(db),
            live=LiveState(),
            settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
            signals=ContextSignals(),
        )
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.reader.stop()
