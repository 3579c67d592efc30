"""The host selector at the top of the navigation: "All hosts", this machine, each remote host."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QWidget

ALL_HOSTS = "All hosts"


class HostSelector(QComboBox):
    #: The user chose a host: its name, or None for every host.
    host_chosen = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("host-selector")
        self.setToolTip("Show one host or all of them on every page")
        self.addItem(ALL_HOSTS, None)
        self._local: str | None = None
        self._names: list[str] = []
        self.currentIndexChanged.connect(self._changed)

    def host(self) -> str | None:
        data = self.currentData()
        return str(data) if data else None

    def names(self) -> list[str]:
        return list(self._names)

    def set_hosts(self, local: str | None, remote: Iterable[str]) -> None:
        """List ``local`` then ``remote`` (the current choice stays, listed even if unknown)."""
        current = self.host()
        names = ([local] if local else []) + sorted({n for n in remote if n and n != local})
        if current is not None and current not in names:
            names.append(current)  # a host chosen last session whose data has not come yet
        if names == self._names and local == self._local:
            return
        self._names, self._local = names, local
        self.blockSignals(True)
        try:
            while self.count() > 1:
                self.removeItem(1)
            for name in names:
                self.addItem(f"{name} (this machine)" if name == local else name, name)
            self._select(current)
        finally:
            self.blockSignals(False)

    def choose(self, host: str | None) -> None:
        """Select ``host`` (added to the list when it is not there yet) and say so."""
        if host is not None and host not in self._names:
            self.set_hosts(self._local, [*self._names, host])
        self._select(host)

    def _select(self, host: str | None) -> None:
        index = self.findData(host) if host is not None else 0
        self.setCurrentIndex(max(0, index))

    def _changed(self, _index: int) -> None:
        self.host_chosen.emit(self.host())
