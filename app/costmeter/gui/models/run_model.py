"""The Runs table: one row per run, from the database, this window's queue and live figures.

``merge`` makes the row the table shows from what is known of a run: its database row (earlier
runs, and the cost once priced), the latest event of this window's queue (state changes arrive
before the database is read again) and its live figures (cost so far, ETA, forecast). Rows are
keyed by run id and updated in place, as on the Processes page, so sorting and selection stay.
"""

from __future__ import annotations

import shlex
import time
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
from PySide6.QtGui import QColor, QGuiApplication, QPalette

from costmeter.advice.rules.storage import size_text
from costmeter.core.units import format_duration
from costmeter.cost.run_cost import format_cost
from costmeter.gui.models.headers import header_data
from costmeter.runs.events import RunInfo
from costmeter.service.reading import UNFINISHED, RunRow
from costmeter.service.run_costs import LiveRun

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ModelIndex = QModelIndex | QPersistentModelIndex

COLUMNS = (
    "ID",
    "Name",
    "Backend",
    "Status",
    "GPUs",
    "Started",
    "Duration",
    "Cost",
    "ETA",
    "To complete",
    "Stored",
    "Exit / message",
)
(
    COL_ID,
    COL_NAME,
    COL_BACKEND,
    COL_STATUS,
    COL_GPUS,
    COL_STARTED,
    COL_DURATION,
    COL_COST,
    COL_ETA,
    COL_TO_COMPLETE,
    COL_STORED,
    COL_MESSAGE,
) = range(len(COLUMNS))
_NUMERIC = frozenset({COL_ID, COL_DURATION, COL_COST, COL_ETA, COL_TO_COMPLETE, COL_STORED})
_HEADER_TIPS = {
    COL_GPUS: "GPU indices the run was placed on (none: it was not placed on a GPU)",
    COL_COST: "Final cost once the run has ended and been priced; while it runs, its cost so far",
    COL_ETA: "Time left, from the progress the run reports (costmeter.progress.report)",
    COL_TO_COMPLETE: "What the rest of the run should cost, from its cost so far and progress",
    COL_STORED: "Its output folders (--output-dir) as last measured, and what keeping them costs "
    "per month at the storage price (not part of Cost, which is paid once)",
}
#: Status colours for light and dark backgrounds: readable on both themes' base colours.
_STATUS_COLOURS = {
    "queued": ("#6b7280", "#9ca3af"),
    "starting": ("#1d4ed8", "#60a5fa"),
    "running": ("#1d4ed8", "#60a5fa"),
    "succeeded": ("#15803d", "#4ade80"),
    "failed": ("#b91c1c", "#f87171"),
    "cancelled": ("#b45309", "#fbbf24"),
    "lost": ("#7e22ce", "#c084fc"),
}


@dataclass(frozen=True, slots=True)
class RunView:
    """What the table shows about one run."""

    id: int
    name: str
    backend: str
    status: str
    gpus: tuple[int, ...] = ()
    started: float | None = None
    ended: float | None = None
    #: The final cost once priced, else the cost so far (None: not known yet).
    cost: float | None = None
    cost_final: bool = False
    currency: str = "USD"
    eta_s: float | None = None
    forecast: float | None = None
    fraction: float | None = None
    exit_code: int | None = None
    message: str = ""
    command: str = ""
    sweep: str | None = None
    estimate: float | None = None
    estimate_runs: int | None = None
    #: Launched by this window (it can cancel it).
    ours: bool = False
    run_dir: str | None = None
    #: No sample covered the run: its cost is elapsed time x GPUs x price (a batch job).
    cost_estimated: bool = False
    #: Why it is estimated, or what the samples lack.
    cost_note: str = ""
    #: Its output folders, last measured, and keeping them a month (None: not measured).
    storage_bytes: int | None = None
    storage_files: int | None = None
    storage_cost: float | None = None

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED

    @property
    def to_complete(self) -> float | None:
        if self.forecast is None or self.cost is None or self.finished:
            return None
        return max(0.0, self.forecast - self.cost)

    def duration(self, now: float | None = None) -> float | None:
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else (now or time.time())
        return max(0.0, end - self.started)


def merge(
    row: RunRow | None,
    info: RunInfo | None,
    live: LiveRun | None,
    currency: str,
    *,
    note: str = "",
) -> RunView:
    """One run's table row from whatever is known of it (at least ``row`` or ``info``)."""
    if row is not None:
        run_id, name, backend = row.id, row.name, row.backend
        argv = [str(a) for a in row.spec.get("argv", [])]
    elif info is not None:
        run_id, name, backend = info.key, info.name, info.backend
        argv = list(info.spec.argv)
    else:
        raise ValueError("merge needs a database row or a queue snapshot")
    status = row.status if row is not None else ""
    if info is not None and (row is None or status in UNFINISHED):
        status = info.state.value  # the queue knows first; a finished row is final
    cost: float | None = None
    final = False
    estimated, cost_note = False, ""
    if row is not None and row.cost is not None:
        cost, final = row.cost, True
        estimated, cost_note = row.estimated, row.cost_note
    elif live is not None:
        cost = live.cost.cost
        estimated, cost_note = live.cost.estimated, live.cost.note
    started = row.started if row is not None else None
    if info is not None and info.started is not None and (started is None or status in UNFINISHED):
        started = info.started
    ended = row.ended if row is not None else None
    if info is not None and info.state.finished and info.ended is not None and ended is None:
        ended = info.ended
    message = (info.message if info is not None else "") or (row.message if row else "")
    exit_code = row.exit_code if row is not None else None
    if exit_code is None and info is not None:
        exit_code = info.exit_code
    gpus = tuple(row.gpus) if row is not None else ()
    if info is not None and info.gpu_indices:
        gpus = tuple(info.gpu_indices)
    return RunView(
        id=run_id,
        name=name,
        backend=backend,
        status=status,
        gpus=gpus,
        started=started,
        ended=ended,
        cost=cost,
        cost_final=final,
        currency=(row.currency if row is not None and row.currency else currency),
        eta_s=live.eta_s if live is not None and status in UNFINISHED else None,
        forecast=live.forecast if live is not None else None,
        fraction=live.fraction if live is not None else None,
        exit_code=exit_code,
        message=note or message,
        command=shlex.join(argv),
        sweep=row.sweep if row is not None else None,
        estimate=row.estimate if row is not None else None,
        estimate_runs=row.estimate_runs if row is not None else None,
        ours=info is not None,
        run_dir=row.run_dir if row is not None else str(info.run_dir) if info else None,
        cost_estimated=estimated,
        cost_note=cost_note,
        storage_bytes=row.storage_bytes if row is not None else None,
        storage_files=row.storage_files if row is not None else None,
        storage_cost=row.storage_cost if row is not None else None,
    )


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    local = time.localtime(ts)
    if time.strftime("%Y-%m-%d", local) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%d %b %H:%M", local)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else format_duration(s)


def display(view: RunView, col: int, now: float | None = None) -> str:
    if col == COL_ID:
        return str(view.id)
    if col == COL_NAME:
        return view.name
    if col == COL_BACKEND:
        return view.backend
    if col == COL_STATUS:
        if view.status == "running" and view.fraction is not None:
            return f"running {view.fraction:.0%}"
        return view.status
    if col == COL_GPUS:
        return ", ".join(f"#{i}" for i in view.gpus) if view.gpus else "—"
    if col == COL_STARTED:
        return _when(view.started)
    if col == COL_DURATION:
        d = view.duration(now)
        return _seconds(d) if d is not None else "—"
    if col == COL_COST:
        if view.cost is None:
            return "pricing…" if view.finished and view.ours and view.started else "—"
        text = format_cost(view.cost, view.currency)
        if view.cost_estimated:
            text = f"~{text} est."
        return text if view.cost_final or view.finished else f"{text} so far"
    if col == COL_ETA:
        return format_duration(view.eta_s) if view.eta_s is not None else "—"
    if col == COL_TO_COMPLETE:
        rest = view.to_complete
        return format_cost(rest, view.currency) if rest is not None else "—"
    if col == COL_STORED:
        if view.storage_bytes is None:
            return "—"
        text = size_text(view.storage_bytes)
        if view.storage_cost is not None:
            text += f" · {format_cost(view.storage_cost, view.currency)}/mo"
        return text
    parts = []
    if view.exit_code is not None and f"code {view.exit_code}" not in view.message:
        parts.append(f"exit {view.exit_code}")
    if view.message:
        parts.append(view.message)
    return " — ".join(parts)


def tooltip(view: RunView, col: int) -> str | None:
    if col in (COL_NAME, COL_ID):
        lines = [view.command]
        if view.sweep:
            lines.append(f"Sweep {view.sweep}")
        if view.run_dir:
            lines.append(f"Output in {view.run_dir}")
        return "\n".join(lines)
    if col == COL_STATUS and not view.ours and not view.finished:
        return (
            "Launched by another Costmeter process or an earlier session: this window shows "
            "it but does not control it."
        )
    if col == COL_COST:
        lines = []
        if view.cost is not None and not view.cost_final:
            lines.append("Cost so far; the final cost is worked out when the run ends.")
        if view.cost_note:
            lines.append(view.cost_note)
        if view.estimate is not None and view.estimate_runs:
            money = format_cost(view.estimate, view.currency)
            runs = view.estimate_runs
            lines.append(f"Estimated before it started: {money} (from {runs} past run(s)).")
        return "\n".join(lines) or None
    if col in (COL_ETA, COL_TO_COMPLETE) and not view.finished:
        if view.fraction is None:
            return "The run reports no progress, so its end cannot be foreseen."
        text = f"{view.fraction:.0%} done"
        if view.forecast is not None:
            text += f"; on course to cost {format_cost(view.forecast, view.currency)} in all"
        return text + "."
    if col == COL_STORED and view.storage_bytes is not None:
        return (
            f"{view.storage_files or 0} files, {view.storage_bytes:,} bytes in its output "
            "folders; `costmeter checkpoints --run "
            f"{view.id}` lists the checkpoints later ones supersede."
        )
    if col == COL_MESSAGE and view.message:
        return view.message
    return None


def sort_key(view: RunView, col: int) -> float | str:
    missing = -1.0
    if col == COL_ID:
        return float(view.id)
    if col == COL_NAME:
        return view.name.lower()
    if col == COL_BACKEND:
        return view.backend
    if col == COL_STATUS:
        return view.status
    if col == COL_GPUS:
        return view.gpus[0] + len(view.gpus) / 1000 if view.gpus else missing
    if col == COL_STARTED:
        return view.started if view.started is not None else missing
    if col == COL_DURATION:
        d = view.duration()
        return d if d is not None else missing
    if col == COL_COST:
        return view.cost if view.cost is not None else missing
    if col == COL_ETA:
        return view.eta_s if view.eta_s is not None else missing
    if col == COL_TO_COMPLETE:
        rest = view.to_complete
        return rest if rest is not None else missing
    if col == COL_STORED:
        return float(view.storage_bytes) if view.storage_bytes is not None else missing
    return display(view, col).lower()


def status_colour(status: str) -> QColor | None:
    pair = _STATUS_COLOURS.get(status)
    if pair is None:
        return None
    dark = QGuiApplication.palette().color(QPalette.ColorRole.Base).lightness() < 128
    return QColor(pair[1] if dark else pair[0])


class RunTableModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[RunView] = []

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def row(self, index: int) -> RunView:
        return self._rows[index]

    def rows(self) -> list[RunView]:
        return list(self._rows)

    def find(self, run_id: int) -> RunView | None:
        return next((r for r in self._rows if r.id == run_id), None)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        view, col = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return display(view, col)
        if role == SORT_ROLE:
            return sort_key(view, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == COL_STATUS:
            return status_colour(view.status)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return tooltip(view, col)
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return header_data(
            section, orientation, role, columns=COLUMNS, numeric=_NUMERIC, tips=_HEADER_TIPS
        )

    def set_rows(self, rows: list[RunView]) -> None:
        """Show ``rows`` (unique ids): gone ids removed, changed rows updated, new ones added."""
        new = {r.id: r for r in rows}
        for i in range(len(self._rows) - 1, -1, -1):
            if self._rows[i].id not in new:
                self.beginRemoveRows(QModelIndex(), i, i)
                del self._rows[i]
                self.endRemoveRows()
        first = last = -1
        for k, old in enumerate(self._rows):
            fresh = new.pop(old.id)
            if fresh != old:
                self._rows[k] = fresh
                first = k if first < 0 else first
                last = k
        if first >= 0:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))
        if new:
            start = len(self._rows)
            self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
            self._rows.extend(new.values())
            self.endInsertRows()

    def tick(self) -> None:
        """Durations of running runs move on: repaint that column."""
        running = [i for i, r in enumerate(self._rows) if r.started and r.ended is None]
        if running:
            self.dataChanged.emit(
                self.index(min(running), COL_DURATION), self.index(max(running), COL_DURATION)
            )


class RunSortProxy(QSortFilterProxyModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)
