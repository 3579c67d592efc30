"""The Devices page: one panel per GPU with every metric the sampler reads, live.

Everything comes from ``ctx.live`` (the latest tick, the device records, the ring buffers): no
database access, so ``on_live`` costs a few label updates per GPU. Panels sit in a scroll area,
in one column on a narrow window and two on a wide one; a GPU stays on the page after it is lost,
marked in red, because a vanished panel would hide the very thing the user needs to see.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from costmeter.core import DeviceInfo, DeviceSample, ProcessSample
from costmeter.gui.context import AppContext
from costmeter.gui.pages.base import Page
from costmeter.gui.widgets.device_panel import DevicePanel

#: Two columns of panels once the scroll area is at least this wide.
TWO_COLUMNS_MIN_WIDTH = 1000

WAITING_TEXT = "Waiting for the first sample…"
NO_GPU_TEXT = (
    "No GPU is being sampled.\n\n"
    "Costmeter found no NVIDIA GPU here (or the NVIDIA driver is not loaded), so it records this "
    "machine's CPU only. The other pages still show CPU use and cost.\n\n"
    "To see what this page shows, start with simulated GPUs: costmeter gui --simulate 4"
)


class DevicesPage(Page):
    title = "Devices"
    key = "devices"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.panels: dict[str, DevicePanel] = {}
        self._order: list[str] = []
        self._columns = 0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.stack = QStackedWidget()
        layout.addWidget(self.stack)

        self.empty = QLabel(WAITING_TEXT)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty.setStyleSheet("color: palette(placeholder-text); padding: 40px;")
        self.stack.addWidget(self.empty)

        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content = QWidget()
        self._content_layout = QVBoxLayout(content)
        self._content_layout.setContentsMargins(16, 12, 16, 12)
        self.grid = QGridLayout()
        self.grid.setSpacing(12)
        self._content_layout.addLayout(self.grid)
        self._content_layout.addStretch(1)
        self.scroll_area.setWidget(content)
        self.stack.addWidget(self.scroll_area)

    # -- live --------------------------------------------------------------------------------
    def has_data(self) -> bool:
        return self.ctx.live.latest is not None

    def showing_empty_state(self) -> bool:
        return self.stack.currentWidget() is self.empty

    def on_live(self) -> None:
        live, host = self.ctx.live, self.ctx.host_filter
        tick = live.tick_for(host)  # host None: every host's newest samples
        samples: dict[str, DeviceSample] = {d.uuid: d for d in tick.devices} if tick else {}
        infos: dict[str, DeviceInfo] = live.devices_for(host)
        uuids = set(infos) | set(samples)
        for uuid, panel in self.panels.items():  # another host's GPUs stay hidden
            panel.setVisible(uuid in uuids)
        if not uuids:
            self._order = []
            waiting = WAITING_TEXT if host is None else f"Waiting for the first sample of {host}…"
            no_gpu = NO_GPU_TEXT if host is None or live.is_local(host) else f"{host} has no GPU."
            self.empty.setText(waiting if tick is None else no_gpu)
            self.stack.setCurrentWidget(self.empty)
            return
        self.stack.setCurrentWidget(self.scroll_area)

        def sort_key(uuid: str) -> tuple[str, int, str]:
            info, sample = infos.get(uuid), samples.get(uuid)
            index = info.index if info else (sample.index if sample else 0)
            return (info.host if info else "", index, uuid)

        order = sorted(uuids, key=sort_key)
        for uuid in order:
            if uuid not in self.panels:
                self.panels[uuid] = DevicePanel(uuid, sort_key(uuid)[1])
        if order != self._order:
            self._order = order
            self._relayout(force=True)
        procs: dict[str | None, dict[int, ProcessSample]] = {}  # each GPU's own host's processes

        def processes_of(host: str | None) -> dict[int, ProcessSample]:
            if host not in procs:
                t = tick if host is None else live.tick_for(host)
                sample = t.host_sample if t is not None else None
                procs[host] = {p.pid: p for p in sample.processes} if sample is not None else {}
            return procs[host]

        now = tick.ts if tick is not None else None
        many = len({info.host for info in infos.values()}) > 1
        for uuid in order:
            info = infos.get(uuid)
            self.panels[uuid].update_from(
                info,
                samples.get(uuid),
                lost_at=live.lost_at.get(uuid),
                host_processes=processes_of(info.host if info is not None else None),
                util_series=live.device_series(uuid, "gpu_util"),
                power_series=live.device_series(uuid, "power_w"),
                now=now,
            )
            if many and info is not None:  # name the host when several are shown
                header = self.panels[uuid].header  # update_from just set it without the host
                header.setText(f"{info.host} · {header.text()}")

    # -- layout ------------------------------------------------------------------------------
    def columns_for(self, width: int) -> int:
        return 2 if width >= TWO_COLUMNS_MIN_WIDTH and len(self._order) > 1 else 1

    def _relayout(self, force: bool = False) -> None:
        columns = self.columns_for(self.width())
        if columns == self._columns and not force:
            return
        self._columns = columns
        for panel in self.panels.values():
            self.grid.removeWidget(panel)
        for i, uuid in enumerate(self._order):
            self.grid.addWidget(self.panels[uuid], i // columns, i % columns)
        for c in range(2):
            self.grid.setColumnStretch(c, 1 if c < columns else 0)
        self._content_layout.activate()  # lay out now: no frame with squeezed panels

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._order:
            self._relayout()
