"""One GPU's panel on the Devices page: every sampled metric, sparklines, and its processes.

The panel is fed plain values (``DeviceInfo``, ``DeviceSample``, ring-buffer arrays) and does no
I/O, so ``update_from`` is cheap enough to run on every redraw. Labels are only touched when their
text changes, which keeps layout work near zero while values are steady.

Three states for a value: a number with its unit; "N/A (not supported by this GPU)" in grey when
the sampler recorded the metric in ``DeviceInfo.unsupported`` (it will never have a value); and
"—" when it is merely unknown this tick (a read failed, or the GPU was lost).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from costmeter.core import DeviceInfo, DeviceSample, GpuProcess, ProcessSample
from costmeter.core.units import format_bytes, format_energy_kwh
from costmeter.gui.theme import colour_for
from costmeter.gui.widgets.sparkline import Sparkline, describe_window

NOT_SUPPORTED = "N/A (not supported by this GPU)"
UNKNOWN = "—"
LOST_COLOUR = "#dc2626"
#: The process table grows up to this many rows, then scrolls.
MAX_PROCESS_ROWS = 5

#: Panel rows: key, caption, the metric (``DEVICE_METRICS`` name) that decides "not supported".
METRIC_ROWS: tuple[tuple[str, str, str | None], ...] = (
    ("util", "Utilisation", "gpu_util"),
    ("mem", "Memory", "mem_used"),
    ("mem_util", "Memory utilisation", "mem_util"),
    ("power", "Power", "power_w"),
    ("energy", "Energy counter", "energy_mj"),
    ("temp", "Temperature", "temp_c"),
    ("sm_clock", "SM clock", "sm_clock_mhz"),
    ("mem_clock", "Memory clock", "mem_clock_mhz"),
    ("arch", "Architecture", None),
)
_TIPS = {
    "util": "Share of the last sample period in which a kernel was running on the GPU",
    "mem_util": "Share of the last sample period in which device memory was being read or written",
    "energy": "The driver's cumulative energy counter (counts from when the driver loaded)",
}
MJ_PER_KWH = 3.6e9


def short_uuid(uuid: str) -> str:
    """The first block of a GPU UUID ("GPU-1a2b3c4d-…" -> "1a2b3c4d"), enough to tell GPUs apart."""
    body = uuid.removeprefix("GPU-")
    return body.split("-", 1)[0] or uuid


def format_energy_counter(energy_mj: int) -> str:
    return f"{format_energy_kwh(energy_mj / MJ_PER_KWH)} since the driver loaded"


def format_architecture(info: DeviceInfo | None) -> str:
    if info is None:
        return UNKNOWN
    parts = [info.architecture or "unknown architecture"]
    if info.compute_capability is not None:
        major, minor = info.compute_capability
        parts.append(f"compute capability {major}.{minor}")
    return " · ".join(parts)


def metric_texts(info: DeviceInfo | None, sample: DeviceSample | None) -> dict[str, str]:
    """The text of every metric row for this sample (keys of ``METRIC_ROWS``)."""
    unsupported = info.unsupported if info is not None else frozenset()
    dead = sample is None or sample.lost
    out: dict[str, str] = {}
    for key, _caption, metric in METRIC_ROWS:
        if metric is not None and metric in unsupported:
            out[key] = NOT_SUPPORTED
        elif key == "arch":
            out[key] = format_architecture(info)
        elif dead:
            out[key] = UNKNOWN
        else:
            assert sample is not None
            out[key] = _value_text(key, info, sample)
    return out


def _value_text(key: str, info: DeviceInfo | None, s: DeviceSample) -> str:
    def num(v: float | None, unit: str) -> str:
        return UNKNOWN if v is None else f"{v:.0f} {unit}"

    if key == "util":
        return num(s.gpu_util, "%")
    if key == "mem_util":
        return num(s.mem_util, "%")
    if key == "mem":
        if s.mem_used is None:
            return UNKNOWN
        total = info.memory_total if info is not None else 0
        if not total:
            return format_bytes(s.mem_used)
        return f"{format_bytes(s.mem_used)} / {format_bytes(total)} ({s.mem_used / total:.0%})"
    if key == "power":
        if s.power_w is None:
            return UNKNOWN
        limit = info.power_limit_w if info is not None else None
        return f"{s.power_w:.0f} W / {limit:.0f} W limit" if limit else f"{s.power_w:.0f} W"
    if key == "energy":
        return UNKNOWN if s.energy_mj is None else format_energy_counter(s.energy_mj)
    if key == "temp":
        return num(s.temp_c, "°C")
    if key == "sm_clock":
        return num(s.sm_clock_mhz, "MHz")
    if key == "mem_clock":
        return num(s.mem_clock_mhz, "MHz")
    raise KeyError(key)


class DevicePanel(QFrame):
    """Everything about one GPU. Call ``update_from`` with the latest values."""

    def __init__(self, uuid: str, index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.uuid = uuid
        self.setObjectName("card")
        self.setMinimumWidth(480)
        colour = colour_for(index)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(14, 10, 14, 12)
        outer.setSpacing(6)
        self.header = QLabel(f"GPU {index}")
        font = QFont(self.header.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.header.setFont(font)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        swatch = QLabel()
        swatch.setFixedSize(12, 12)
        swatch.setStyleSheet(f"background: {colour}; border-radius: 3px;")
        top = QHBoxLayout()
        top.setSpacing(8)
        top.addWidget(swatch)
        top.addWidget(self.header, 1)
        outer.addLayout(top)
        self.lost_label = QLabel("")
        self.lost_label.setStyleSheet(f"color: {LOST_COLOUR}; font-weight: bold;")
        self.lost_label.setWordWrap(True)
        self.lost_label.hide()
        outer.addWidget(self.lost_label)

        body = QHBoxLayout()
        body.setSpacing(16)
        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(3)
        self.values: dict[str, QLabel] = {}
        self._grey: dict[str, bool] = {}
        for row, (key, caption, _metric) in enumerate(METRIC_ROWS):
            name = QLabel(caption)
            name.setStyleSheet("color: palette(placeholder-text);")
            value = QLabel(UNKNOWN)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            if key in _TIPS:
                name.setToolTip(_TIPS[key])
                value.setToolTip(_TIPS[key])
            grid.addWidget(name, row, 0, Qt.AlignmentFlag.AlignTop)
            if key == "mem":
                cell = QVBoxLayout()
                cell.setSpacing(2)
                cell.addWidget(value)
                self.mem_bar = QProgressBar()
                self.mem_bar.setRange(0, 1000)
                self.mem_bar.setTextVisible(False)
                self.mem_bar.setFixedHeight(6)
                self.mem_bar.setMaximumWidth(220)
                self.mem_bar.setStyleSheet(
                    "QProgressBar { border: none; border-radius: 3px;"
                    " background: palette(mid); }"
                    f" QProgressBar::chunk {{ border-radius: 3px; background: {colour}; }}"
                )
                cell.addWidget(self.mem_bar)
                grid.addLayout(cell, row, 1)
            else:
                grid.addWidget(value, row, 1)
            self.values[key] = value
            self._grey[key] = False
        grid.setColumnStretch(1, 1)
        body.addLayout(grid, 3)

        sparks = QVBoxLayout()
        sparks.setSpacing(2)
        self.util_caption = _small_caption("Utilisation")
        self.util_spark = Sparkline(colour, 100.0)
        self.power_caption = _small_caption("Power")
        self.power_spark = Sparkline("#f97316", None)
        for w in (self.util_caption, self.util_spark, self.power_caption, self.power_spark):
            sparks.addWidget(w)
        sparks.addStretch(1)
        body.addLayout(sparks, 2)
        outer.addLayout(body)

        self.proc_caption = _small_caption("Processes")
        outer.addWidget(self.proc_caption)
        self.proc_note = QLabel("")
        self.proc_note.setStyleSheet("color: palette(placeholder-text);")
        outer.addWidget(self.proc_note)
        self.procs = QTableWidget(0, 4)
        self.procs.setHorizontalHeaderLabels(["PID", "Name", "GPU memory", "SM %"])
        self.procs.verticalHeader().hide()
        self.procs.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.procs.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.procs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.procs.setShowGrid(False)
        self.procs.setWordWrap(False)
        self.procs.verticalHeader().setDefaultSectionSize(22)
        head = self.procs.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        head.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.procs.hide()
        outer.addWidget(self.procs)
        self._lost = False
        self._power_limit: float | None = -1.0
        self._last_ts: float | None = None

    # -- updating ----------------------------------------------------------------------------
    def update_from(
        self,
        info: DeviceInfo | None,
        sample: DeviceSample | None,
        *,
        lost_at: float | None = None,
        host_processes: Mapping[int, ProcessSample] | None = None,
        util_series: tuple[np.ndarray, np.ndarray] | None = None,
        power_series: tuple[np.ndarray, np.ndarray] | None = None,
        now: float | None = None,
    ) -> None:
        index = info.index if info is not None else (sample.index if sample is not None else 0)
        name = info.name if info is not None else "unknown GPU"
        _set(self.header, f"GPU {index} · {name} · {short_uuid(self.uuid)}")
        self.header.setToolTip(self.uuid if info is None else f"{self.uuid} on {info.host}")
        lost = sample is not None and sample.lost
        self._set_lost(lost, lost_at if lost_at is not None else (sample.ts if sample else None))
        unsupported = info.unsupported if info is not None else frozenset()
        for key, text in metric_texts(info, sample).items():
            self._set_value(key, text)
        mem_ok = not lost and sample is not None and sample.mem_used is not None
        total = info.memory_total if info is not None else 0
        self.mem_bar.setVisible(mem_ok and bool(total))
        if mem_ok and total and sample is not None and sample.mem_used is not None:
            self.mem_bar.setValue(int(min(1.0, sample.mem_used / total) * 1000))
        limit = info.power_limit_w if info is not None else None
        if limit != self._power_limit:
            self._power_limit = limit
            self.power_spark.set_y_max(limit)
        self.util_spark.setVisible("gpu_util" not in unsupported)
        self.util_caption.setVisible("gpu_util" not in unsupported)
        self.power_spark.setVisible("power_w" not in unsupported)
        self.power_caption.setVisible("power_w" not in unsupported)
        if now is not None and now != self._last_ts:
            self._last_ts = now
            if util_series is not None:
                self.util_spark.set_data(*util_series, now)
                _set(self.util_caption, f"Utilisation, {describe_window(self.util_spark.window_s)}")
            if power_series is not None:
                self.power_spark.set_data(*power_series, now)
                _set(self.power_caption, f"Power, {describe_window(self.power_spark.window_s)}")
        self._set_processes(
            sample, "processes" in unsupported, host_processes or {}, "process_util" in unsupported
        )

    def value_text(self, key: str) -> str:
        return self.values[key].text()

    def is_greyed(self, key: str) -> bool:
        return self._grey[key]

    @property
    def lost(self) -> bool:
        return self._lost

    def _set_value(self, key: str, text: str) -> None:
        label = self.values[key]
        _set(label, text)
        grey = text == NOT_SUPPORTED
        if grey != self._grey[key]:
            self._grey[key] = grey
            label.setStyleSheet("color: palette(placeholder-text);" if grey else "")

    def _set_lost(self, lost: bool, at: float | None) -> None:
        if lost:
            when = time.strftime("%H:%M:%S", time.localtime(at)) if at is not None else "?"
            _set(
                self.lost_label,
                f"Lost — fell off the bus at {when}. It is no longer sampled; reboot or reseat "
                "the GPU to bring it back.",
            )
        if lost == self._lost:
            return
        self._lost = lost
        self.lost_label.setVisible(lost)
        self.setStyleSheet(
            f"QFrame#card {{ border: 2px solid {LOST_COLOUR}; border-radius: 8px; }}"
            if lost
            else ""
        )

    def _set_processes(
        self,
        sample: DeviceSample | None,
        unsupported: bool,
        host: Mapping[int, ProcessSample],
        util_unsupported: bool,
    ) -> None:
        procs: tuple[GpuProcess, ...] = () if sample is None or sample.lost else sample.processes
        if unsupported:
            note = NOT_SUPPORTED
        elif sample is None or sample.lost:
            note = UNKNOWN
        elif not procs:
            note = "No process is using this GPU."
        else:
            note = ""
        _set(self.proc_caption, f"Processes ({len(procs)})" if procs else "Processes")
        _set(self.proc_note, note)
        self.proc_note.setVisible(bool(note))
        self.procs.setVisible(bool(procs))
        if not procs:
            self.procs.setRowCount(0)
            return
        ordered = sorted(procs, key=lambda p: (-(p.used_memory or 0), p.pid))
        self.procs.setRowCount(len(ordered))
        for r, p in enumerate(ordered):
            hp = host.get(p.pid)
            cells = (
                str(p.pid),
                hp.name if hp is not None else UNKNOWN,
                format_bytes(p.used_memory) if p.used_memory is not None else UNKNOWN,
                "N/A" if util_unsupported else _num(p.sm_util),
            )
            for c, text in enumerate(cells):
                item = self.procs.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    if c in (0, 2, 3):
                        item.setTextAlignment(
                            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                        )
                    self.procs.setItem(r, c, item)
                if item.text() != text:
                    item.setText(text)
                if c == 1 and hp is not None:
                    item.setToolTip(hp.cmdline or hp.name)
        rows = min(len(ordered), MAX_PROCESS_ROWS)
        height = self.procs.horizontalHeader().height() + rows * 22 + 4
        if self.procs.height() != height:
            self.procs.setFixedHeight(height)

    def process_rows(self) -> list[list[str]]:
        """The process table's text, row by row (for tests and copying)."""
        out = []
        for r in range(self.procs.rowCount()):
            items = (self.procs.item(r, c) for c in range(self.procs.columnCount()))
            out.append([item.text() if item is not None else "" for item in items])
        return out


def _num(v: float | None) -> str:
    return UNKNOWN if v is None else f"{v:.0f}"


def _set(label: QLabel, text: str) -> None:
    if label.text() != text:
        label.setText(text)


def _small_caption(text: str) -> QLabel:
    label = QLabel(text)
    font = QFont(label.font())
    font.setPointSizeF(font.pointSizeF() * 0.9)
    label.setFont(font)
    label.setStyleSheet("color: palette(placeholder-text);")
    return label
