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
from costmeter.core.owner import OWNER_FIELDS, Owner
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
    #: Who the process belongs to, as the sampler read it (None: not read).
    owner: Owner | None = None

    @property
    def job(self) -> str:
        """The Slurm job ("123", or "100_7" for an array task), "" when none."""
        return job_text(self.owner)

    @property
    def container(self) -> str:
        """The container's name or short id, with its pod; "" when none."""
        return container_text(self.owner)

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
    "Job",
    "Container",
)
(
    COL_PID,
    COL_USER,
    COL_COMMAND,
    COL_GPU,
    COL_GPU_MEM,
    COL_SM,
    COL_CPU,
    COL_RSS,
    COL_RUN,
    COL_JOB,
    COL_CONTAINER,
) = range(len(COLUMNS))
_NUMERIC = frozenset({COL_PID, COL_GPU, COL_GPU_MEM, COL_SM, COL_CPU, COL_RSS})
_HEADER_TIPS = {
    COL_GPU: "Indices of the GPUs this process holds memory on",
    COL_GPU_MEM: "GPU memory held by the process, summed over its GPUs",
    COL_SM: "Share of the GPU's streaming multiprocessors the process kept busy "
    "(averaged over its GPUs)",
    COL_CPU: "CPU use in percent of one core (over 100 % uses several cores)",
    COL_RSS: "Resident memory on the host",
    COL_RUN: "The Costmeter run the process belongs to (Runs page, or costmeter run)",
    COL_JOB: "The Slurm job the process belongs to (its environment or its cgroup)",
    COL_CONTAINER: "The container (name or short id) and Kubernetes pod the process runs in",
}
#: An owner filter's dimensions the rows can be matched on (see ``owner_matches``).
OWNER_FILTER_DIMENSIONS = ("user", "job", "account", "container", "pod", "namespace")


def job_text(owner: Owner | None) -> str:
    if owner is None:
        return ""
    if owner.array_job_id and owner.array_task_id:
        return f"{owner.array_job_id}_{owner.array_task_id}"
    return owner.job_id or ""


def _short_container(owner: Owner) -> str:
    return owner.container or (owner.container_id[:12] if owner.container_id else "")


def container_text(owner: Owner | None) -> str:
    if owner is None:
        return ""
    name, pod = _short_container(owner), owner.pod or (owner.pod_uid or "")[:8]
    if name and pod:
        return f"{name} (pod {pod})"
    return name or (f"pod {pod}" if pod else "")


def owner_tooltip(owner: Owner | None) -> str:
    """Every identifier read for the process, and what could not be read."""
    if owner is None:
        return "Owner not read for this process"
    lines = [
        f"{name}: {value}" for name in OWNER_FIELDS if (value := getattr(owner, name)) is not None
    ]
    if owner.unreadable:
        lines.append("could not read: " + ", ".join(sorted(owner.unreadable)))
    return "\n".join(lines) or "Nothing is known about who owns this process"


def owner_matches(row: ProcessRow, key: Mapping[str, str | None]) -> bool:
    """Whether ``row`` belongs to the owner ``key`` (dimension -> value), as chargeback groups
    owners; dimensions a live process cannot tell (run, tag, project, host) are not checked."""
    o = row.owner
    for dim, value in key.items():
        if dim not in OWNER_FILTER_DIMENSIONS:
            continue
        if dim == "user":
            users = {row.user} | ({o.user, o.job_user} if o is not None else set())
            if value not in users:
                return False
            continue
        if o is None:
            return False
        have = {
            "job": job_text(o),
            "account": o.account,
            "container": _short_container(o),
            "pod": o.pod or o.pod_uid,
            "namespace": o.namespace,
        }[dim]
        if (have or None) != value:
            return False
    return True


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
                owner=hp.owner if hp else None,
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
    if col == COL_JOB:
        return row.job
    if col == COL_CONTAINER:
        return row.container
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
    if col == COL_JOB:
        return row.job.lower()
    if col == COL_CONTAINER:
        return row.container.lower()
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
            if col in (COL_USER, COL_JOB, COL_CONTAINER):
                return owner_tooltip(row.owner)
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
    """Sorts by ``SORT_ROLE`` and keeps rows whose command, user, job, container or PID contains
    the filter (and that belong to the owner chosen on the Who pays page, when one is)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._needle = ""
        self._owner: Mapping[str, str | None] | None = None
        self._pids: frozenset[int] | None = None
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_filter_text(self, text: str) -> None:
        needle = text.strip().lower()
        if needle == self._needle:
            return
        self.beginFilterChange()
        self._needle = needle
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_owner_filter(
        self, key: Mapping[str, str | None] | None, pids: frozenset[int] | None = None
    ) -> None:
        """Keep only the processes of the owner ``key`` (None: every owner) and, when given, of
        ``pids`` (an owner the rows cannot tell, a project or a tag: its processes by PID)."""
        self.beginFilterChange()
        self._owner = dict(key) if key else None
        self._pids = pids
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    @property
    def owner_filter(self) -> Mapping[str, str | None] | None:
        return self._owner if self._owner is not None or self._pids is None else {}

    def filterAcceptsRow(self, source_row: int, source_parent: ModelIndex) -> bool:
        if not self._needle and self._owner is None and self._pids is None:
            return True
        model = self.sourceModel()
        if not isinstance(model, ProcessTableModel):
            return True
        row = model.row(source_row)
        if self._owner is not None and not owner_matches(row, self._owner):
            return False
        if self._pids is not None and row.pid not in self._pids:
            return False
        return not self._needle or any(
            self._needle in text
            for text in (
                row.command.lower(),
                row.user.lower(),
                row.job.lower(),
                row.container.lower(),
                str(row.pid),
            )
        )
