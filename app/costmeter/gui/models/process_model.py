"""The Processes table: one row per process that holds a GPU or was sampled on the host.

Rows are keyed by PID and updated in place (``dataChanged``, row inserts and removals, never a
model reset) so that the view keeps its selection, sort order and scroll position while the
values change every tick. Each column answers ``SORT_ROLE`` with a number (or a lower-case string
for text) so that "10 GiB" sorts after "9 GiB" and a missing value sorts first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from costmeter.core import Tick
from costmeter.core.units import format_bytes
from costmeter.gui.models.headers import header_data

#: Numeric (or lower-case text) value of a cell, for sorting.
SORT_ROLE = Qt.ItemDataRole.UserRole + 1

ModelIndex = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """What the table shows about one process (None: not known this tick)."""

    pid: int
    user: str = ""
    name: str = ""
    command: str = ""
    #: Indices of the GPUs the process holds memory on.
    gpus: tuple[int, ...] = ()
    gpu_memory: int | None = None
    sm_util: float | None = None
    cpu_percent: float | None = None
    rss: int | None = None
    #: The name of the Costmeter run the process belongs to ("" for none).
    run: str = ""
    #: The process's start time as sampled, so that a recycled PID is never terminated.
    create_time: float | None = None
    #: Per-GPU detail for the tooltip: "GPU 0: 10.0 GiB, 95 % SM".
    gpu_detail: str = ""

    @property
    def label(self) -> str:
        """The command if known, else the name, else a placeholder (for messages)."""
        return self.command or self.name or "unknown command"


COLUMNS: tuple[str, ...] = (
    "PID",
    "User",
    "Command",
    "GPU",
    "GPU memory",
    "SM %",
    "CPU %",
    "RSS",
    "Run",
)
(COL_PID, COL_USER, COL_COMMAND, COL_GPU, COL_GPU_MEM, COL_SM, COL_CPU, COL_RSS, COL_RUN) = range(
    len(COLUMNS)
)
_NUMERIC = frozenset({COL_PID, COL_GPU, COL_GPU_MEM, COL_SM, COL_CPU, COL_RSS})
_HEADER_TIPS = {
    COL_GPU: "Indices of the GPUs this process holds memory on",
    COL_GPU_MEM: "GPU memory held by the process, summed over its GPUs",
    COL_SM: "Share of the GPU's streaming multiprocessors the process kept busy "
    "(averaged over its GPUs)",
    COL_CPU: "CPU use in percent of one core (over 100 % uses several cores)",
    COL_RSS: "Resident memory on the host",
    COL_RUN: "The Costmeter run the process belongs to (Runs page, or costmeter run)",
}
_MISSING = -1.0


def rows_from_tick(tick: Tick | None, runs: Mapping[int, str] | None = None) -> list[ProcessRow]:
    """The union of the tick's GPU processes and its host processes, matched by PID.

    ``runs`` maps the PIDs of Costmeter runs to the runs' names (the Run column).
    """
    if tick is None:
        return []
    runs = runs or {}
    gpus: dict[int, list[tuple[int, int | None, float | None]]] = {}
    for dev in tick.devices:
        if dev.lost:
            continue
        for p in dev.processes:
            gpus.setdefault(p.pid, []).append((dev.index, p.used_memory, p.sm_util))
    host = {p.pid: p for p in tick.host_sample.processes} if tick.host_sample else {}
    rows = []
    for pid in sorted(set(gpus) | set(host)):
        on = sorted(gpus.get(pid, []))
        mems = [m for _, m, _ in on if m is not None]
        sms = [s for _, _, s in on if s is not None]
        hp = host.get(pid)
        rows.append(
            ProcessRow(
                pid=pid,
                user=hp.user if hp else "",
                name=hp.name if hp else "",
                command=(hp.cmdline or hp.name) if hp else "",
                gpus=tuple(i for i, _, _ in on),
                gpu_memory=sum(mems) if mems else None,
                sm_util=sum(sms) / len(sms) if sms else None,
                cpu_percent=hp.cpu_percent if hp else None,
                rss=hp.rss if hp else None,
                run=runs.get(pid, ""),
                create_time=hp.create_time if hp else None,
                gpu_detail="\n".join(_gpu_detail(i, m, s) for i, m, s in on),
            )
        )
    return rows


def _gpu_detail(index: int, mem: int | None, sm: float | None) -> str:
    parts = [format_bytes(mem) if mem is not None else "memory not reported"]
    if sm is not None:
        parts.append(f"{sm:.0f} % SM")
    return f"GPU {index}: " + ", ".join(parts)


def _display(row: ProcessRow, col: int) -> str:
    if col == COL_PID:
        return str(row.pid)
    if col == COL_USER:
        return row.user or "—"
    if col == COL_COMMAND:
        return row.command or "— (not visible to Costmeter)"
    if col == COL_GPU:
        return ", ".join(str(i) for i in row.gpus) if row.gpus else "—"
    if col == COL_GPU_MEM:
        return format_bytes(row.gpu_memory) if row.gpu_memory is not None else "—"
    if col == COL_SM:
        return f"{row.sm_util:.0f}" if row.sm_util is not None else "—"
    if col == COL_CPU:
        return f"{row.cpu_percent:.1f}" if row.cpu_percent is not None else "—"
    if col == COL_RSS:
        return format_bytes(row.rss) if row.rss is not None else "—"
    return row.run


def _sort_key(row: ProcessRow, col: int) -> float | str:
    def num(v: float | None) -> float:
        return _MISSING if v is None else float(v)

    if col == COL_PID:
        return float(row.pid)
    if col == COL_USER:
        return row.user.lower()
    if col == COL_COMMAND:
        return row.command.lower()
    if col == COL_GPU:
        # First GPU index, then how many: "0" < "0, 1" < "1".
        return row.gpus[0] + len(row.gpus) / 1000.0 if row.gpus else _MISSING
    if col == COL_GPU_MEM:
        return num(row.gpu_memory)
    if col == COL_SM:
        return num(row.sm_util)
    if col == COL_CPU:
        return num(row.cpu_percent)
    if col == COL_RSS:
        return num(row.rss)
    return row.run.lower()


class ProcessTableModel(QAbstractTableModel):
    """Rows keyed by PID; ``set_rows`` applies a new list as removals, changes and inserts."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[ProcessRow] = []

    # -- reading -----------------------------------------------------------------------------
    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def row(self, index: int) -> ProcessRow:
        return self._rows[index]

    def rows(self) -> list[ProcessRow]:
        return list(self._rows)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, col = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(row, col)
        if role == SORT_ROLE:
            return _sort_key(row, col)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == COL_COMMAND and row.command:
                return row.command
            if col in (COL_GPU, COL_GPU_MEM, COL_SM) and row.gpu_detail:
                return row.gpu_detail
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return header_data(
            section, orientation, role, columns=COLUMNS, numeric=_NUMERIC, tips=_HEADER_TIPS
        )

    # -- updating ----------------------------------------------------------------------------
    def set_rows(self, rows: list[ProcessRow]) -> None:
        """Make the model show ``rows`` (unique PIDs) with the fewest signals.

        Gone PIDs are removed (contiguous runs at once, from the bottom so indices stay valid),
        the rows that stay get one ``dataChanged`` over the span that changed, and new PIDs are
        appended; the proxy sorts them into place.
        """
        new = {r.pid: r for r in rows}
        i = len(self._rows) - 1
        while i >= 0:
            if self._rows[i].pid in new:
                i -= 1
                continue
            end = i
            while i >= 0 and self._rows[i].pid not in new:
                i -= 1
            self.beginRemoveRows(QModelIndex(), i + 1, end)
            del self._rows[i + 1 : end + 1]
            self.endRemoveRows()
        first = last = -1
        for k, old in enumerate(self._rows):
            fresh = new.pop(old.pid)
            if fresh != old:
                self._rows[k] = fresh
                first = k if first < 0 else first
                last = k
        if first >= 0:
            self.dataChanged.emit(
                self.index(first, 0),
                self.index(last, len(COLUMNS) - 1),
                [Qt.ItemDataRole.DisplayRole, SORT_ROLE, Qt.ItemDataRole.ToolTipRole],
            )
        if new:
            start = len(self._rows)
            self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
            self._rows.extend(new.values())
            self.endInsertRows()


class ProcessFilterProxy(QSortFilterProxyModel):
    """Sorts by ``SORT_ROLE`` and keeps rows whose command, user or PID contains the filter."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._needle = ""
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_filter_text(self, text: str) -> None:
        needle = text.strip().lower()
        if needle == self._needle:
            return
        self.beginFilterChange()
        self._needle = needle
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: ModelIndex) -> bool:
        if not self._needle:
            return True
        model = self.sourceModel()
        if not isinstance(model, ProcessTableModel):
            return True
        row = model.row(source_row)
        return (
            self._needle in row.command.lower()
            or self._needle in row.user.lower()
            or self._needle in str(row.pid)
        )
