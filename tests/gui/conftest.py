"""Fixtures for the desktop app's tests (offscreen Qt, temporary database and settings)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings

from costmeter.config import Config
from costmeter.gui.context import AppContext, ContextSignals
from costmeter.gui.live import LiveState
from costmeter.gui.reader import StoreReader
from costmeter.service.monitor import Monitor, MonitorOptions

pytestmark = pytest.mark.gui


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
