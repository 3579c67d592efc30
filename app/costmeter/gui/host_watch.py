"""The window's view of its hosts: the host selector's list, remote records for the live state,
and a banner plus a status-bar count when a remote host is down.

Kept apart from the main window so that file stays about navigation and pages. Everything that
touches the database goes through the reader; nothing here waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel

from costmeter.config import Config
from costmeter.core import Tick
from costmeter.gui.context import AppContext
from costmeter.gui.host_status import (
    HostRow,
    down_sentence,
    from_collector,
    merge_rows,
    read_status_table,
)
from costmeter.gui.widgets.banner import Banner
from costmeter.gui.widgets.host_selector import HostSelector
from costmeter.service.live_seed import recent_series, remote_records
from costmeter.service.reading import Store

#: Remote hosts' states are read this often (for the banner and the status bar).
HOST_STATUS_MS = 5000
#: A remote host whose records the live state lacks is looked up again at most this often.
REMOTE_LOOKUP_S = 3.0
#: The banner's sentence ends so; the watch hides only a banner of its own.
BANNER_END = " See Hosts."


class HostWatch(QObject):
    #: A sentence for the status bar.
    message = Signal(str)

    def __init__(
        self,
        ctx: AppContext,
        selector: HostSelector,
        banner: Banner,
        status: QLabel,
        show_hosts: Callable[[], None],
        on_records: Callable[[], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.selector = selector
        self.banner = banner
        self.status = status
        self._show_hosts = show_hosts
        self._on_records = on_records
        #: Remote hosts that are down, as last read.
        self.down: list[HostRow] = []
        self._down_shown: tuple[str, ...] = ()
        self._lookup_at = 0.0
        self._seeded: set[str] = set()
        self.timer = QTimer(self)
        self.timer.setInterval(HOST_STATUS_MS)
        self.timer.timeout.connect(self.check)
        self.timer.start()
        ctx.signals.config_changed.connect(self._config_changed)

    def stop(self) -> None:
        self.timer.stop()

    # -- the selector and the live state -----------------------------------------------------
    def update_selector(self) -> None:
        live = self.ctx.live
        self.selector.set_hosts(
            live.local_host, [*live.hosts(), *(h.name for h in self.ctx.config.hosts)]
        )

    def on_tick(self, tick: Tick) -> None:
        live = self.ctx.live
        if live.is_local(tick.host):
            return
        if tick.host not in self.selector.names():
            self.update_selector()
        if time.monotonic() - self._lookup_at > REMOTE_LOOKUP_S:
            self._look_up_remote()

    def _look_up_remote(self) -> None:
        """Read the records of remote hosts whose GPUs the live state does not know yet."""
        live = self.ctx.live
        missing = live.missing_info()
        if not missing:
            return
        self._lookup_at = time.monotonic()
        end = time.time()
        start, points, seeded = end - live.window_s, live.capacity, set(self._seeded)

        def job(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
            found = remote_records(store, missing)
            past = {  # the plots' recent past, once per host, as this machine's is prefilled
                host: recent_series(store, [d.uuid for d in devices], host, start, end, points)
                for host, (_info, devices) in found.items()
                if devices and host not in seeded
            }
            return found, past

        def done(result: tuple[dict[str, Any], dict[str, Any]]) -> None:
            found, past = result
            for host, (info, devices) in found.items():
                live.set_remote(host, info, devices)
            for host, (device_series, host_series) in past.items():
                live.seed_remote(host, device_series, host_series)
                self._seeded.add(host)
            self._on_records()

        self.ctx.reader.submit("live-remote-records", job, done)

    def _config_changed(self, config: Config) -> None:
        self.update_selector()
        bridge = self.ctx.monitor_bridge
        applied = bridge is not None and bridge.apply_hosts(config)
        if bridge is not None and bridge.running and not applied and config.hosts:
            self.message.emit(
                "The host list is saved; it is recorded from the next start of Costmeter."
            )
        self.check()

    # -- states ------------------------------------------------------------------------------
    def check(self) -> None:
        """Read the remote hosts' states (reader thread); a down host shows in the banner."""
        config = self.ctx.config
        bridge = self.ctx.monitor_bridge
        live = from_collector(bridge.remote_statuses()) if bridge is not None else []

        def job(store: Store) -> list[HostRow]:
            return merge_rows(config, read_status_table(store.path), live)

        self.ctx.reader.submit("window-host-status", job, self.show)

    def show(self, rows: list[HostRow]) -> None:
        enabled = [r for r in rows if r.enabled]
        down = [r for r in enabled if r.down]
        self.down = down
        self.status.setText(
            f"{len(enabled) - len(down)} of {len(enabled)} remote hosts connected"
            if enabled
            else ""
        )
        self.status.setStyleSheet("color: #b91c1c;" if down else "")
        names = tuple(sorted(r.name for r in down))
        if names == self._down_shown:
            return  # a dismissed banner stays dismissed until another host goes down
        self._down_shown = names
        if down:
            more = f"; and {len(down) - 3} more" if len(down) > 3 else ""
            self.banner.show_message(
                "; ".join(down_sentence(r) for r in down[:3]) + more + "." + BANNER_END,
                "warning",
                "Show hosts",
                self._show_hosts,
            )
        elif self.banner.isVisible() and self.banner.label.text().endswith(BANNER_END):
            self.banner.hide()
