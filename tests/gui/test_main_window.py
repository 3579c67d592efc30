"""The main window with a real sampling worker: simulated GPUs, no GPU, a lost GPU, persistence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from costmeter.gui.bridge import MonitorBridge
from costmeter.gui.main_window import MainWindow
from costmeter.store import Store
from costmeter.store.database import SIMULATED_DB_NAME

pytestmark = pytest.mark.gui


def open_window(qtbot, ctx, simulate: str | None) -> MainWindow:
    bridge = MonitorBridge(ctx.db_path, ctx.config, simulate=simulate)
    window = MainWindow(ctx, bridge)
    qtbot.addWidget(window)
    window.show()
    bridge.start()
    return window


def close(window: MainWindow) -> None:
    window.close()
    assert window.bridge is None or not window.bridge.running


def test_simulated_gpus_reach_the_pages_and_the_database(qtbot, make_ctx) -> None:
    ctx = make_ctx()
    window = open_window(qtbot, ctx, "a100:train,t4:idle")
    qtbot.waitUntil(lambda: ctx.live.ticks >= 2, timeout=15_000)
    assert len(ctx.live.devices) == 2
    assert "simulated" in window.banner.label.text()
    assert "Recording 2 simulated GPUs" in window.status.text()
    close(window)  # flushes
    with Store.open(ctx.db_path) as store:
        assert [d.index for d in store.devices()] == [0, 1]
        assert store.time_range() is not None


def test_no_gpu_says_so_and_offers_simulated_gpus(qtbot, make_ctx, monkeypatch) -> None:
    from costmeter.core import SamplerUnavailable
    from costmeter.sampling import nvml

    real_open = nvml.NvmlSampler.open

    def no_driver(self: nvml.NvmlSampler) -> None:
        if self._nvml is None:  # the real driver, not the simulated one
            raise SamplerUnavailable("No NVIDIA driver was found (libnvidia-ml.so.1 is missing).")
        real_open(self)

    monkeypatch.setattr(nvml.NvmlSampler, "open", no_driver)
    ctx = make_ctx()
    window = open_window(qtbot, ctx, None)
    qtbot.waitUntil(
        lambda: window.banner.isVisible() and "CPU only" in window.banner.label.text(),
        timeout=15_000,
    )
    assert "libnvidia-ml" in window.banner.label.text()
    assert window.banner.action.text() == "Start with simulated GPUs"
    qtbot.waitUntil(lambda: ctx.live.ticks >= 1, timeout=15_000)  # the CPU is still sampled
    assert ctx.live.devices == {}
    with qtbot.waitSignal(window.simulation_started, timeout=15_000):
        window.banner.action.click()
    assert ctx.db_path.name == SIMULATED_DB_NAME
    qtbot.waitUntil(lambda: len(ctx.live.devices) == 4, timeout=15_000)
    close(window)


def test_a_lost_gpu_is_shown_and_sampling_goes_on(qtbot, make_ctx) -> None:
    ctx = make_ctx()
    window = open_window(qtbot, ctx, "a100:train,h100:train")
    qtbot.waitUntil(
        lambda: (
            window.bridge is not None and window.bridge.fake is not None and ctx.live.ticks >= 1
        ),
        timeout=15_000,
    )
    assert window.bridge is not None and window.bridge.fake is not None
    window.bridge.fake.lose_gpu(1)
    qtbot.waitUntil(
        lambda: window.banner.isVisible() and "lost" in window.banner.label.text().lower(),
        timeout=15_000,
    )
    before = ctx.live.ticks
    qtbot.waitUntil(lambda: ctx.live.ticks >= before + 2, timeout=15_000)
    latest = ctx.live.latest
    assert latest is not None
    assert [d.lost for d in latest.devices] == [False, True]
    close(window)


def test_a_database_another_recorder_holds_is_reported_not_fatal(qtbot, make_ctx) -> None:
    from costmeter.store.lock import RecorderLock

    ctx = make_ctx()
    with RecorderLock(ctx.db_path, command="costmeter record"):
        window = open_window(qtbot, ctx, "1")
        qtbot.waitUntil(lambda: "not running" in window.banner.label.text(), timeout=15_000)
        assert "costmeter record" in window.banner.label.text()
        close(window)


def test_page_and_geometry_persist(qtbot, make_ctx) -> None:
    ctx = make_ctx()
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show_page("history")
    window.resize(640, 480)
    window.close()
    again = MainWindow(ctx)
    qtbot.addWidget(again)
    assert again.current_page().key == "history"
    assert again.size().width() == 640


def test_keyboard_shortcuts_switch_pages(qtbot, make_ctx) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    ctx = make_ctx()
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    handle = window.windowHandle()  # keys through the window system, as a user's keys arrive
    QTest.keyClick(handle, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert window.current_page().key == "processes"
    QTest.keyClick(handle, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert window.current_page().key == "runs"
    QTest.keyClick(handle, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # New run…
    runs_page = window.current_page()
    dialog = getattr(runs_page, "dialog", None)
    assert dialog is not None and dialog.isVisible()
    dialog.reject()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    QTest.keyClick(handle, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.current_page().key == "overview"
    QTest.keyClick(handle, Qt.Key.Key_8, Qt.KeyboardModifier.ControlModifier)
    assert window.current_page().key == "settings"


@pytest.mark.slow
def test_screenshot_mode_saves_a_png_of_live_data(tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "costmeter",
            "gui",
            "--simulate",
            "2",
            "--db",
            str(tmp_path / "s.db"),
            "--settings",
            str(tmp_path / "s.ini"),
            "--screenshot",
            str(png),
            "--quit-after",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000
    with Store.open(tmp_path / "s.db") as store:
        assert len(store.devices()) == 2
