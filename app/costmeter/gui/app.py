"""Start the desktop app: configuration, database, sampling worker, main window, screenshot mode."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from costmeter.gui.display import display_problem

#: Sampling starts after the first paint, or after this long if no paint comes.
FIRST_PAINT_WAIT_MS = 2000


@dataclass
class GuiOptions:
    db_path: Path
    config_path: Path
    simulate: str | None = None
    seed: int = 0
    #: Seconds between samples; None = the configuration's.
    interval_s: float | None = None
    screenshot: Path | None = None
    quit_after: float | None = None
    page: str | None = None
    theme: str | None = None
    #: QSettings file; None = the platform's usual place.
    settings_path: Path | None = None


def run(options: GuiOptions) -> int:
    problem = display_problem()
    if problem is not None:
        print(f"costmeter: {problem}", file=sys.stderr)
        return 3
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from costmeter.config import Config, load_config
    from costmeter.core import ConfigError
    from costmeter.gui.bridge import MonitorBridge
    from costmeter.gui.context import AppContext, ContextSignals
    from costmeter.gui.icons import app_icon
    from costmeter.gui.main_window import MainWindow
    from costmeter.gui.reader import StoreReader
    from costmeter.gui.theme import apply_theme
    from costmeter.gui.tray import Tray
    from costmeter.service.live import LiveState

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Costmeter")
    app.setOrganizationName("costmeter")
    # The window icon, and the name that ties the window to costmeter.desktop (Wayland app id).
    app.setDesktopFileName("costmeter")
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(True)
    config_error: str | None = None
    try:
        config = load_config(options.config_path)
    except ConfigError as err:
        config, config_error = Config(path=options.config_path), str(err)
    settings = (
        QSettings(str(options.settings_path), QSettings.Format.IniFormat)
        if options.settings_path is not None
        else QSettings("costmeter", "costmeter")
    )
    theme = options.theme or str(settings.value("appearance/theme", "light"))
    apply_theme(app, theme)
    ctx = AppContext(
        config=config,
        config_path=options.config_path,
        db_path=options.db_path,
        reader=StoreReader(options.db_path, held=True),
        live=LiveState(interval_s=config.interval_s),
        settings=settings,
        signals=ContextSignals(),
        simulate=options.simulate,
    )
    ctx.signals.theme_changed.connect(lambda name: apply_theme(app, name))
    bridge = MonitorBridge(
        options.db_path,
        config,
        simulate=options.simulate,
        seed=options.seed,
        interval_s=options.interval_s,
    )
    window = MainWindow(ctx, bridge)
    tray = Tray(ctx, window)
    if options.page:
        window.show_page(options.page)
    if config_error is not None:
        window.banner.show_message(
            f"Your configuration has a mistake, so the defaults are in use: {config_error}", "error"
        )

    if os.environ.get("COSTMETER_STARTUP_PROBE"):
        _print_first_paint(window)
    started = False

    def start_work() -> None:
        # Sampling and the pages' first reads begin once the window is on screen.
        nonlocal started
        if not started:
            started = True
            ctx.reader.release()
            bridge.start()

    _after_first_paint(window, start_work)
    window.show()
    # A window that is never painted (minimised at once, say) still starts sampling.
    QTimer.singleShot(FIRST_PAINT_WAIT_MS, start_work)
    if options.screenshot is not None:
        target = options.screenshot

        def shoot() -> None:
            window.grab().save(str(target))
            print(f"costmeter: saved a screenshot of the window to {target}", flush=True)
            QTimer.singleShot(0, window.close)

        # Live data drawn twice, then one more redraw for the History page's worker.
        window.live_drawn.connect(lambda: QTimer.singleShot(1500, shoot))
    if options.quit_after is not None:
        QTimer.singleShot(int(options.quit_after * 1000), window.close)
    code = app.exec()
    tray.hide()
    bridge.stop()
    ctx.reader.stop()
    return int(code)


def _after_first_paint(window: object, then: Callable[[], None]) -> None:
    """Call ``then`` from the event loop once ``window`` has painted its first frame."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class FirstPaint(QObject):
        def eventFilter(self, obj: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                obj.removeEventFilter(self)
                QTimer.singleShot(0, then)
            return False

    probe = FirstPaint(window)  # type: ignore[arg-type]
    window.installEventFilter(probe)  # type: ignore[attr-defined]


def _print_first_paint(window: object) -> None:
    """For bench/bench_gui.py: print the seconds from process start to the first painted frame,
    and the frame's epoch time."""
    import psutil
    from PySide6.QtCore import QEvent, QObject

    started = psutil.Process().create_time()

    class FirstPaint(QObject):
        def eventFilter(self, obj: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                # "at": the epoch time, for a caller that timed the launch itself (psutil's
                # create_time rests on the boot time in whole seconds: up to 1 s early).
                now = time.time()
                print(f"first-paint-s {now - started:.3f} at {now:.6f}", flush=True)
                obj.removeEventFilter(self)
            return False

    probe = FirstPaint(window)  # type: ignore[arg-type]
    window.installEventFilter(probe)  # type: ignore[attr-defined]
