"""The main window: navigation, pages, the banner, the status bar, persistence and shortcuts."""

from __future__ import annotations

import time

from PySide6.QtCore import QByteArray, QSize, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from costmeter.core import DeviceInfo, Tick
from costmeter.gui.bridge import MonitorBridge, Started
from costmeter.gui.context import AppContext
from costmeter.gui.cost_poller import CostPoller
from costmeter.gui.host_watch import HostWatch
from costmeter.gui.pages.base import Page
from costmeter.gui.pages.registry import PAGES, PageSpec
from costmeter.gui.run_manager import GRACE_S, RunManager
from costmeter.gui.widgets.banner import Banner
from costmeter.gui.widgets.host_selector import HostSelector
from costmeter.service.live_seed import recent_series
from costmeter.service.reading import SIMULATED_DB_NAME, Store

#: What "Start with simulated GPUs" samples: one GPU per workload worth seeing.
DEMO_SPEC = "a100:train,h100:idle,rtx4090:bursty,t4:input-bound"

#: Redraws happen at most this often, however fast ticks arrive.
REDRAW_MS = 500
#: Closing with runs to cancel waits at most this long for their end and cost.
CANCEL_WAIT_MS = int(GRACE_S * 1000) + 15_000


class MainWindow(QMainWindow):
    #: Emitted once live data has been drawn (screenshots wait for it).
    live_drawn = Signal()
    #: Sampling restarted on simulated GPUs (the no-GPU banner's button); the new bridge.
    simulation_started = Signal(object)

    def __init__(self, ctx: AppContext, bridge: MonitorBridge | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.bridge = bridge
        self.setWindowTitle("Costmeter")
        self.resize(1280, 820)
        #: Pages in navigation order; each is imported and built the first time it is shown, so
        #: start-up builds only one.
        self.page_specs: tuple[PageSpec, ...] = PAGES
        self._built: dict[int, Page] = {}
        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setFixedWidth(170)
        self.nav.setFrameShape(QListWidget.Shape.NoFrame)
        self.stack = QStackedWidget()
        for i, spec in enumerate(self.page_specs):
            item = QListWidgetItem(spec.title)
            item.setToolTip(f"{spec.title} (Ctrl+{i + 1})")
            item.setSizeHint(QSize(150, 36))
            self.nav.addItem(item)
            self.stack.addWidget(QWidget())  # replaced by the page when it is first shown
        self.nav.currentRowChanged.connect(self._show_page)
        self.banner = Banner()
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(self.banner)
        self.host_selector = HostSelector()
        self.host_selector.setFixedWidth(170)
        self.host_selector.host_chosen.connect(ctx.set_host_filter)
        side = QVBoxLayout()
        side.setContentsMargins(0, 6, 0, 0)
        side.setSpacing(4)
        side.addWidget(self.host_selector)
        side.addWidget(self.nav, 1)
        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.addLayout(side)
        body.addWidget(self.stack, 1)
        outer.addLayout(body, 1)
        self.setCentralWidget(central)
        self.status = QLabel("Starting…")
        self.statusBar().addWidget(self.status, 1)
        self.hosts_state = QLabel("")
        self.statusBar().addPermanentWidget(self.hosts_state)
        self.freshness = QLabel("")
        self.statusBar().addPermanentWidget(self.freshness)
        self.host_watch = HostWatch(
            ctx,
            self.host_selector,
            self.banner,
            self.hosts_state,
            lambda: self.show_page("hosts"),
            self._records_found,
            self,
        )
        self.host_watch.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        ctx.signals.host_filter_changed.connect(self._on_host_filter)
        self._dirty = False
        self._gpu_mode = "none"
        self._interval_s = ctx.config.interval_s
        self._device_count = 0
        self._drawn_ticks = 0
        self._redraw = QTimer(self)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self._redraw_live)
        self._redraw.start()
        self._shortcuts()
        ctx.reader.error.connect(self._read_error)
        self.cost_poller = CostPoller(ctx, self)
        #: This window's runs (the Runs page shows them; closing asks about those going).
        self.runs = ctx.runs = RunManager(ctx, bridge, self)
        self._runs_resolved = False
        self._shut = False
        if bridge is not None:
            self.attach(bridge)
        self._restore()

    # -- wiring ------------------------------------------------------------------------------
    def attach(self, bridge: MonitorBridge) -> None:
        self.bridge = bridge
        self.runs.bridge = bridge
        self.ctx.monitor_bridge = bridge
        bridge.started.connect(self._on_started)
        bridge.ticked.connect(self._on_tick)
        bridge.message.connect(self._on_message)
        bridge.failed.connect(self._on_failed)

    def _shortcuts(self) -> None:
        for i in range(len(self.page_specs)):
            sc = QShortcut(QKeySequence(f"Ctrl+{i + 1}"), self)
            sc.activated.connect(lambda i=i: self.nav.setCurrentRow(i))
        QShortcut(QKeySequence(QKeySequence.StandardKey.Preferences), self).activated.connect(
            lambda: self.show_page("settings")
        )
        QShortcut(QKeySequence("Ctrl+,"), self).activated.connect(
            lambda: self.show_page("settings")
        )
        QShortcut(QKeySequence(QKeySequence.StandardKey.Refresh), self).activated.connect(
            self._refresh_current
        )
        QShortcut(QKeySequence("Ctrl+Q"), self).activated.connect(self.close)

    @property
    def pages(self) -> list[Page]:
        """The pages built so far."""
        return [self._built[i] for i in sorted(self._built)]

    def _index(self, key: str) -> int:
        for i, spec in enumerate(self.page_specs):
            if spec.key == key:
                return i
        keys = ", ".join(t.key for t in self.page_specs)
        raise KeyError(f"no page '{key}'; pages: {keys}")

    def _build(self, row: int) -> Page:
        page = self._built.get(row)
        if page is None:
            page = self._built[row] = self.page_specs[row].load()(self.ctx)
            page.restore_state(self.ctx.settings)
            placeholder = self.stack.widget(row)
            self.stack.insertWidget(row, page)
            if placeholder is not None:
                self.stack.removeWidget(placeholder)
                placeholder.deleteLater()
        return page

    def page(self, key: str) -> Page:
        """The page (built now if it was not yet)."""
        return self._build(self._index(key))

    def show_page(self, key: str) -> None:
        self.nav.setCurrentRow(self._index(key))

    def current_page(self) -> Page:
        return self._build(max(0, self.nav.currentRow()))

    def _show_page(self, row: int) -> None:
        if row < 0:
            return
        page = self._build(row)
        self.stack.setCurrentIndex(row)
        self.setWindowTitle(f"Costmeter — {page.title}")
        page.on_shown()
        page.on_live()

    def _refresh_current(self) -> None:
        self.current_page().on_shown()

    # -- live data ---------------------------------------------------------------------------
    def _on_started(self, started: Started) -> None:
        self.ctx.live.set_devices(started.host_info, started.devices)
        self.host_watch.update_selector()
        QTimer.singleShot(1500, self.host_watch.check)  # the collector's first attempts are in
        self._prefill(started)
        self._gpu_mode = started.gpu_mode
        self._device_count = len(started.devices)
        what = {
            "simulated": f"{len(started.devices)} simulated GPUs",
            "nvml": f"{len(started.devices)} GPUs",
            "none": "no GPU",
        }[started.gpu_mode]
        interval = self._interval_s = started.interval_s
        self.status.setText(
            f"Recording {what} and {started.host_info.hostname} every {interval:g} s "
            f"into {self.ctx.db_path}"
        )
        if started.gpu_mode == "none":
            reason = started.no_gpu_reason or "No NVIDIA GPU was found."
            self.banner.show_message(
                f"{reason} Costmeter is showing this machine's CPU only.",
                "warning",
                "Start with simulated GPUs",
                self.start_simulated,
            )
        elif started.gpu_mode == "simulated":
            self.banner.show_message(
                "Showing simulated GPUs (a fake of the NVIDIA driver): the figures are examples, "
                f"kept apart from real history in {self.ctx.db_path.name}.",
                "info",
            )

    def _prefill(self, started: Started) -> None:
        """Load the last minutes from the store into the live plots (on the reader thread)."""
        uuids = [d.uuid for d in started.devices]
        hostname = started.host_info.hostname
        end = time.time()
        start = end - self.ctx.live.window_s

        def job(store: Store) -> tuple[dict, dict]:
            return recent_series(store, uuids, hostname, start, end, self.ctx.live.capacity)

        def done(result: tuple[dict, dict]) -> None:
            self.ctx.live.seed(*result)
            self._dirty = True

        self.ctx.reader.submit("live-prefill", job, done)

    def start_simulated(self, spec: str = DEMO_SPEC) -> None:
        """Sample simulated GPUs instead, into their own database (never mixed with real data)."""
        old = self.bridge
        if old is not None:
            old.stop()
            for signal in (old.started, old.ticked, old.message, old.failed):
                signal.disconnect()
        self.ctx.simulate = spec
        self.ctx.db_path = self.ctx.db_path.with_name(SIMULATED_DB_NAME)
        self.ctx.reader.set_path(self.ctx.db_path)
        seed = old.seed if old is not None else 0
        bridge = MonitorBridge(
            self.ctx.db_path,
            self.ctx.config,
            simulate=spec,
            seed=seed,
            interval_s=old.interval_s if old is not None else None,
        )
        self.attach(bridge)
        self.runs.set_bridge(bridge)
        self.banner.hide()
        bridge.start()
        self.simulation_started.emit(bridge)

    def _on_tick(self, tick: Tick, devices: tuple[DeviceInfo, ...]) -> None:
        live = self.ctx.live
        live.set_devices(live.host_info, devices)  # this machine's GPUs, whichever host ticked
        live.push(tick)
        self._dirty = True
        self.host_watch.on_tick(tick)

    # -- hosts -------------------------------------------------------------------------------
    def _on_host_filter(self, _host: object) -> None:
        self._filter_changed()

    def _filter_changed(self) -> None:
        """Redraw the page shown now for the host chosen (the others redraw when shown)."""
        self._dirty = True
        self._redraw_live()

    def _records_found(self) -> None:
        self._dirty = True

    def _redraw_live(self) -> None:
        latest = self.ctx.live.latest
        if latest is not None:
            age = time.time() - latest.ts
            self.freshness.setText(
                f"last sample {time.strftime('%H:%M:%S', time.localtime(latest.ts))}"
                + (f" ({age:.0f} s ago)" if age > 5 * self._interval_s else "")
            )
        if not self._dirty:
            return
        self._dirty = False
        self.ctx.signals.live_updated.emit()
        self.current_page().on_live()
        self._drawn_ticks += 1
        if self._drawn_ticks == 2:
            self.live_drawn.emit()

    def _on_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)
        if "lost" in text.lower():
            self.banner.show_message(text, "error")

    def _on_failed(self, text: str) -> None:
        self.status.setText("Not recording")
        self.banner.show_message(
            f"Sampling is not running: {text} The window still shows the history in the database.",
            "error",
        )

    def _read_error(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    # -- persistence -------------------------------------------------------------------------
    def _restore(self) -> None:
        s = self.ctx.settings
        chosen = str(s.value("window/host", "") or "")
        self.host_watch.update_selector()
        self.host_selector.choose(chosen or None)
        self.ctx.host_filter = chosen or None  # no page is built yet: nothing to tell
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        last = s.value("window/page", "overview")
        try:
            self.show_page(str(last))
        except KeyError:
            self.show_page("overview")

    def save(self) -> None:
        s = self.ctx.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/page", self.current_page().key)
        s.setValue("window/host", self.ctx.host_filter or "")
        for page in self.pages:
            page.save_state(s)
        s.sync()

    def ask_about_runs(self, count: int) -> str:
        """What to do with runs still going on close: "cancel", "leave" or "stay"."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Runs are still going")
        noun = "run is" if count == 1 else "runs are"
        box.setText(f"{count} {noun} still going.")
        box.setInformativeText(
            "Cancel them (their cost so far is recorded), leave them running (Costmeter stops "
            "watching them, so their end and cost are not recorded), or keep the window open?"
        )
        cancel = box.addButton("Cancel them", QMessageBox.ButtonRole.DestructiveRole)
        leave = box.addButton("Leave them running", QMessageBox.ButtonRole.AcceptRole)
        stay = box.addButton("Don't close", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(stay)
        box.exec()
        clicked = box.clickedButton()
        return "cancel" if clicked is cancel else "leave" if clicked is leave else "stay"

    def _close_after_cancelling(self, count: int) -> None:
        self._runs_resolved = True
        noun = "run" if count == 1 else "runs"
        self.status.setText(f"Cancelling {count} {noun} before closing…")
        self.runs.idle.connect(self.close)
        QTimer.singleShot(CANCEL_WAIT_MS, self.close)
        self.runs.cancel_all()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._shut:
            super().closeEvent(event)
            return
        going = self.runs.active()
        if going and not self._runs_resolved:
            choice = self.ask_about_runs(len(going))
            if choice != "leave":
                event.ignore()
                if choice == "cancel":
                    self._close_after_cancelling(len(going))
                return
        self._shut = True
        self.save()
        self._redraw.stop()
        self.host_watch.stop()
        left = len(self.runs.active())
        self.runs.shutdown()
        if left:
            noun = "run goes" if left == 1 else "runs go"
            print(f"costmeter: {left} {noun} on without Costmeter watching.", flush=True)
        if self.bridge is not None:
            self.status.setText("Saving the last samples…")
            self.bridge.stop()
        super().closeEvent(event)
