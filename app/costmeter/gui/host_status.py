"""The state of every host the window knows: this machine, configured and recorded remote hosts.

Three sources, merged by host name: the ``[hosts.NAME]`` and ``[sources.NAME]`` tables of the
configuration (what the user asked for; a Prometheus source reports its status under its own
name, kind ``source``), the ``remote_hosts`` table (written by whichever process collects: this
window's monitor or a ``costmeter record`` elsewhere), and, when this window's own monitor
collects, its in-memory statuses, which are the freshest. Qt-free, so tests build rows directly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costmeter.config import Config, RemoteHostConfig, SourceConfig
from costmeter.service.remote import read_remote_hosts

#: States a remote host can be in (the collector's) and those the window adds.
CONNECTED, BACKFILLING, DISCONNECTED, ERROR = "connected", "backfilling", "disconnected", "error"
DISABLED, WAITING, RECORDING, NOT_RECORDING = "disabled", "waiting", "recording", "not recording"
#: States that mean "no data is coming": shown in red and in the window's banner.
DOWN_STATES = frozenset({DISCONNECTED, ERROR})

LOCAL_KIND = "this machine"
#: The kind a Prometheus source reports its status with (service.remote.prom_source).
SOURCE_KIND = "source"
#: "filling history: 40 % (at ...)": a backfilling source's progress.
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
#: A row of the table that nobody updated for this long: no recorder collects that host now.
STALE_S = 120.0


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One row of the ``remote_hosts`` table (or one in-memory status of the collector)."""

    name: str
    url: str
    kind: str
    state: str
    last_contact: float | None
    newest_sample: float | None
    error: str | None
    updated: float | None = None
    lag_s: float | None = None


@dataclass(frozen=True, slots=True)
class HostRow:
    """What the Hosts page shows of one host."""

    name: str
    url: str
    kind: str  # "agent", "prometheus" or LOCAL_KIND
    state: str
    last_contact: float | None
    newest_sample: float | None
    lag_s: float | None
    error: str | None
    #: The host has a [hosts.NAME] table (so it can be edited and removed here).
    configured: bool
    enabled: bool = True
    config: RemoteHostConfig | None = None
    #: The [sources.NAME] table, for a Prometheus source's row.
    source: SourceConfig | None = None

    @property
    def local(self) -> bool:
        return self.kind == LOCAL_KIND

    @property
    def is_source(self) -> bool:
        return self.kind == SOURCE_KIND

    @property
    def progress(self) -> float | None:
        """A backfilling row's progress in percent, when its status sentence gives one."""
        if self.state != BACKFILLING or not self.error:
            return None
        found = _PERCENT.search(self.error)
        return min(100.0, float(found.group(1))) if found else None

    @property
    def state_text(self) -> str:
        """ "backfilling 40 %" while a source fills history, else the state."""
        progress = self.progress
        return self.state if progress is None else f"{self.state} {progress:.0f} %"

    @property
    def down(self) -> bool:
        return self.state in DOWN_STATES


def read_status_table(db_path: Path) -> list[StatusRow]:
    """The ``remote_hosts`` table, read-only (an older database without it gives nothing)."""
    return [
        StatusRow(r.name, r.url, r.kind, r.state, r.last_contact, r.newest_sample, r.error,
                  r.updated)
        for r in read_remote_hosts(db_path)
    ]  # fmt: skip


def from_collector(statuses: Iterable[Any]) -> list[StatusRow]:
    """The collector's ``HostStatus`` objects (read by attribute, so a field it lacks is None)."""
    out = []
    for s in statuses:
        name = getattr(s, "name", None)
        if not name:
            continue
        out.append(
            StatusRow(
                name=str(name),
                url=str(getattr(s, "url", "") or ""),
                kind=str(getattr(s, "kind", "") or "agent"),
                state=str(getattr(s, "state", "") or WAITING),
                last_contact=getattr(s, "last_contact", None),
                newest_sample=getattr(s, "newest_sample", None),
                error=getattr(s, "error", None),
                lag_s=getattr(s, "lag_s", None),
            )
        )
    return out


def merge_rows(
    config: Config,
    table: Sequence[StatusRow],
    live: Sequence[StatusRow] = (),
    *,
    now: float | None = None,
) -> list[HostRow]:
    """Configured hosts in file order, then configured Prometheus sources, then hosts and
    sources only the table knows (recorded from the command line elsewhere), with the freshest
    status of each."""
    now = time.time() if now is None else now
    by_table = {r.name: r for r in table}
    by_live = {r.name: r for r in live}
    rows = []
    for host in config.hosts:
        status = by_live.get(host.name) or by_table.get(host.name)
        rows.append(_row(host.name, host.url, host.kind, status, now, host))
    for source in config.sources:
        status = by_live.get(source.name) or by_table.get(source.name)
        rows.append(_row(source.name, source.url, SOURCE_KIND, status, now, None, source))
    names = {h.name for h in config.hosts} | {s.name for s in config.sources}
    for name in sorted((set(by_table) | set(by_live)) - names):
        status = by_live.get(name) or by_table[name]
        rows.append(_row(name, status.url, status.kind, status, now, None))
    return rows


def _row(
    name: str,
    url: str,
    kind: str,
    status: StatusRow | None,
    now: float,
    host: RemoteHostConfig | None,
    source: SourceConfig | None = None,
) -> HostRow:
    table = host if host is not None else source
    enabled = table.enabled if table is not None else True
    if not enabled:
        state = DISABLED
    elif status is None:
        state = WAITING
    elif status.updated is not None and now - status.updated > STALE_S:
        state = NOT_RECORDING  # its recorder stopped: what the row says is old news
    else:
        state = status.state
    newest = status.newest_sample if status is not None else None
    lag = status.lag_s if status is not None else None
    if lag is None and newest is not None and enabled:
        lag = max(0.0, now - newest)
    return HostRow(
        name=name,
        url=url,
        kind=kind,
        state=state,
        last_contact=status.last_contact if status is not None else None,
        newest_sample=newest,
        lag_s=lag if enabled else None,
        error=status.error if status is not None and enabled else None,
        configured=table is not None,
        enabled=enabled,
        config=host,
        source=source,
    )


def local_row(hostname: str, newest: float | None, interval_s: float, now: float) -> HostRow:
    """This machine: recording while its newest sample is recent."""
    lag = None if newest is None else max(0.0, now - newest)
    if newest is None:
        state = WAITING
    elif lag is not None and lag <= max(5.0, 5 * interval_s):
        state = RECORDING
    else:
        state = NOT_RECORDING
    return HostRow(
        name=hostname,
        url="—",
        kind=LOCAL_KIND,
        state=state,
        last_contact=newest,
        newest_sample=newest,
        lag_s=lag,
        error=None,
        configured=False,
    )


def ago(ts: float | None, now: float) -> str:
    """ "12 s ago", "5 min ago", "3 h ago", "2 d ago"; "never" for None."""
    if ts is None:
        return "never"
    s = max(0.0, now - ts)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 90 * 60:
        return f"{s / 60:.0f} min ago"
    if s < 36 * 3600:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} d ago"


def lag_text(lag_s: float | None) -> str:
    if lag_s is None:
        return "—"
    if lag_s < 100:
        return f"{lag_s:.1f} s"
    return ago(0.0, lag_s).removesuffix(" ago")


def down_sentence(row: HostRow) -> str:
    """ "gpu-box-1 disconnected since 12:03: connection refused" (for the banner)."""
    since = (
        f" since {time.strftime('%H:%M', time.localtime(row.last_contact))}"
        if row.last_contact is not None
        else " (never reached)"
    )
    reason = f": {row.error.rstrip('. ')}" if row.error else ""
    return f"{row.name} {row.state}{since}{reason}"
