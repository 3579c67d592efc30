"""Start the desktop app: configuration, database, sampling worker, main window, screenshot mode."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from costmeter.gui.display import display_problem


@dataclass
class GuiOptions:
    db_path: Path
    config_path: Path
    simulate: str | None = None
    seed: int = 0
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
    from costmeter.gui.live import LiveState
    from costmeter.gui.main_window import MainWindow
    from costmeter.gui.reader import StoreReader
    from costmeter.gui.theme import apply_theme
    from costmeter.gui.tray import Tray

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Costmeter")
    app.setOrganizationName("costmeter")
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
        reader=StoreReader(options.db_path),
        live=LiveState(interval_s=config.interval_s),
        settings=settings,
        signals=ContextSignals(),
        simulate=options.simulate,
    )
    ctx.signals.theme_changed.connect(lambda name: apply_theme(app, name))
    bridge = MonitorBridge(options.db_path, config, simulate=options.simulate, seed=options.seed)
    window = MainWindow(ctx, bridge)
    tray = Tray(ctx, window)
    if options.page:
        window.show_page(options.page)
    if config_error is not None:
        window.banner.show_message(
            f"Your configuration has a mistake, so the defaults are in use: {config_error}", "error"
        )

    def restart_simulated() -> None:
        """The no-GPU banner's button: sample simulated GPUs into their own database."""
        from costmeter.cli.common import SIMULATED_DB_NAME

        nonlocal bridge
        bridge.stop()
        ctx.simulate = "a100:train,h100:idle,rtx4090:bursty,t4:input-bound"
        ctx.db_path = options.db_path.with_name(SIMULATED_DB_NAME)
        ctx.reader.set_path(ctx.db_path)
        bridge = MonitorBridge(ctx.db_path, ctx.config, simulate=ctx.simulate, seed=options.seed)
        window.attach(bridge)
        window.banner.hide()
        bridge.start()

    window.simulate_requested.connect(restart_simulated)
    window.show()
    bridge.start()
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
