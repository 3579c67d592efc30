"""``RemoteCollector``: one thread per remote host, writing through the monitor's writer.

Each host's thread polls (an agent's /v1/samples, or exporters' /metrics), writes the ticks
through a :class:`~costmeter.service.node_ingest.NodeIngest` of its own (host and device
registration, energy intervals from the cumulative counters), reports its status, and on a
failure retries with exponential backoff. Threads spend their time blocked on sockets, so 32
hosts cost little (see bench/bench_remote.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from costmeter.config import RemoteHostConfig
from costmeter.core.errors import CostmeterError
from costmeter.core.model import DeviceInfo, HostInfo, Tick
from costmeter.service.node_ingest import NodeIngest, TickSink
from costmeter.service.remote.backoff import Backoff
from costmeter.service.remote.http import UNREACHABLE, RemoteError, netloc
from costmeter.service.remote.pollers import AgentPoller, PollResult, ScrapePoller
from costmeter.service.remote.status import (
    BACKFILLING,
    CONNECTED,
    DISCONNECTED,
    ERROR,
    HostStatus,
)
from costmeter.service.remote.status_db import StatusTable, newest_sample

#: The longest a scrape target's ticks are held back to spread an energy counter's step.
HOLD_S = 120.0

log = logging.getLogger(__name__)

StatusCallback = Callable[[HostStatus], None]
TickCallback = Callable[[Tick], None]


class _Sink:
    """The writer, waiting while it is far behind (a long backfill must not fill memory), and
    the live listener for ticks that are recent (backfilled ones go to the store only)."""

    def __init__(self, writer: TickSink, on_tick: TickCallback | None, live_s: float) -> None:
        self.writer = writer
        self.on_tick = on_tick
        self.live_s = live_s

    def register(self, host: HostInfo, devices: Sequence[DeviceInfo]) -> None:
        self.writer.register(host, devices)

    def submit(self, tick: Tick, *, wait: bool = False) -> None:
        self.writer.submit(tick, wait=True)
        if self.on_tick is not None and tick.ts >= time.time() - self.live_s:
            try:
                self.on_tick(tick)
            except Exception:
                log.exception("A remote tick listener failed.")


class _HostWorker:
    def __init__(self, collector: RemoteCollector, config: RemoteHostConfig) -> None:
        self.collector = collector
        self.config = config
        self.poller: AgentPoller | ScrapePoller
        if config.kind == "prometheus":
            self.poller = ScrapePoller(config, interval_s=collector.interval_s, max_hold_s=HOLD_S)
        else:
            self.poller = AgentPoller(
                config,
                interval_s=collector.interval_s,
                start_from=collector._start_from,
            )
        self._new_ingest(collector.interval_s)
        self.stop_event = threading.Event()
        self.backoff = Backoff(collector.backoff_initial_s, collector.backoff_max_s)
        self.placeholder = config.name or netloc(config.url)
        self.status = HostStatus(
            name=self.placeholder,
            url=config.url,
            kind=config.kind,
            state=DISCONNECTED,
            error="not reached yet",
        )
        self.notes: set[str] = set()
        self.thread = threading.Thread(
            target=self._run, name=f"costmeter-remote-{self.placeholder}", daemon=True
        )

    def _new_ingest(self, interval_s: float) -> None:
        """Energy intervals are cut at gaps of 5 intervals: the host's own interval counts."""
        self.ingest_interval_s = interval_s
        self.ingest = NodeIngest(
            self.collector._sink,
            cpu_tdp_w=self.collector.cpu_tdp_w,
            interval_s=interval_s,
            skip_hosts=self.collector.skip_hosts,
        )

    @property
    def name(self) -> str:
        return self.poller.name or self.placeholder

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                result = self.poller.poll()
                delay = self._apply(result)
                self.backoff.reset()
            except RemoteError as err:
                self.poller.reset()
                state = DISCONNECTED if err.kind == UNREACHABLE else ERROR
                delay = self._failed(state, str(err))
            except CostmeterError as err:  # the token file or keyring
                self.poller.reset()
                delay = self._failed(ERROR, str(err))
            except Exception as err:  # a bug must not end the thread: report and retry
                log.exception("Collecting from %s failed.", self.config.url)
                self.poller.reset()
                delay = self._failed(ERROR, f"collecting failed unexpectedly: {err}")
            if delay > 0:
                self.stop_event.wait(delay)
        self._flush()

    def _flush(self) -> None:
        """Write what the poller held back (ticks whose energy step had not come yet)."""
        if not isinstance(self.poller, ScrapePoller):
            return
        held = self.poller.flush()
        if held and self.collector._names.get(self.name) is self:
            try:
                self.ingest.ingest(held)
            except Exception:
                log.exception("Writing the last readings of %s failed.", self.config.url)

    def _apply(self, result: PollResult) -> float:
        name = self.name
        if name in self.collector.skip_hosts:
            raise RemoteError(
                f"{netloc(self.config.url)} reports the host name {name}, which is this "
                "machine's own: give the agent --name NAME (or name it in [hosts.NAME]), or "
                "record with --no-local.",
                "config",
            )
        holder = self.collector._claim(name, self)
        if holder is not None:
            raise RemoteError(_same_name(name, self.config, holder.config), "config")
        if result.readings:
            if self.poller.interval_s != self.ingest_interval_s:  # the agent said its own
                self._new_ingest(self.poller.interval_s)
            self.ingest.ingest(result.readings)
        table = self.collector.status_table
        if table is not None:
            for uuid, ts, code in result.xids:
                table.add_xid(uuid, ts, code)
        if result.note and result.note not in self.notes:
            self.notes.add(result.note)
            self.collector._say(result.note)
        now = time.time()
        newest = result.readings[-1]["tick"].ts if result.readings else self.status.newest_sample
        if newest is not None:
            self.collector._newest[name] = max(newest, self.collector._newest.get(name, 0.0))
        self._set(
            HostStatus(
                name=name,
                url=self.config.url,
                kind=self.config.kind,
                state=BACKFILLING if result.backfilling else CONNECTED,
                last_contact=now,
                newest_sample=newest,
                lag_s=None if newest is None else max(0.0, now - newest),
            )
        )
        return result.next_in

    def _failed(self, state: str, message: str) -> float:
        old = self.status
        now = time.time()
        self._set(
            HostStatus(
                name=self.name,
                url=self.config.url,
                kind=self.config.kind,
                state=state,
                last_contact=old.last_contact,
                newest_sample=old.newest_sample,
                lag_s=None if old.newest_sample is None else max(0.0, now - old.newest_sample),
                error=message,
            )
        )
        return self.backoff.next()

    def _set(self, status: HostStatus) -> None:
        old = self.status
        self.status = status
        changed = old.state != status.state or old.error != status.error
        table = self.collector.status_table
        if table is not None:
            table.put(status, urgent=changed)
        if changed and self.collector.on_status is not None:
            try:
                self.collector.on_status(status)
            except Exception:
                log.exception("The remote status callback failed.")


class RemoteCollector:
    """Collects from remote hosts into ``sink`` (the monitor's ``Writer``).

    ``store_path``: the database, to find where each agent's samples stop (backfill after a
    restart) and to keep the ``remote_hosts``/``device_events`` tables; None keeps status in
    memory only. ``skip_hosts``: host names that must not be written (this machine's, when it
    is sampled locally). ``on_tick``: called with each recent remote tick, from the host's
    thread. ``on_status``: called on each state change, from the host's thread.
    """

    def __init__(
        self,
        sink: TickSink,
        hosts: Iterable[RemoteHostConfig],
        *,
        interval_s: float,
        cpu_tdp_w: float,
        store_path: Path | None = None,
        skip_hosts: Iterable[str] = (),
        on_status: StatusCallback | None = None,
        on_tick: TickCallback | None = None,
        on_message: Callable[[str], None] | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.interval_s = interval_s
        self.cpu_tdp_w = cpu_tdp_w
        self.store_path = store_path
        self.skip_hosts = frozenset(skip_hosts)
        self.on_status = on_status
        self.on_message = on_message
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        # Scrape targets hold ticks back while spreading an energy step (up to HOLD_S).
        self._sink = _Sink(sink, on_tick, live_s=max(5.0, 5 * interval_s) + HOLD_S)
        self._hosts = [h for h in hosts if h.enabled]
        self._workers: dict[tuple[str, str, str], _HostWorker] = {}
        self._newest: dict[str, float] = {}
        self._names: dict[str, _HostWorker] = {}
        self._lock = threading.Lock()
        self.status_table = StatusTable(store_path, on_error=on_message) if store_path else None
        self._started = False

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            if self.status_table is not None:
                self.status_table.start()
            for host in self._hosts:
                self._add(host)

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
            self._started = False
        for w in workers:
            w.stop_event.set()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
        if self.status_table is not None:
            self.status_table.stop()

    def set_hosts(self, hosts: Iterable[RemoteHostConfig]) -> None:
        """Collect from ``hosts`` from now on: new ones start, removed or changed ones stop."""
        wanted = [h for h in hosts if h.enabled]
        keys = {_key(h) for h in wanted}
        with self._lock:
            self._hosts = wanted
            if not self._started:
                return
            for key in [k for k in self._workers if k not in keys]:
                worker = self._workers.pop(key)
                worker.stop_event.set()
                if self.status_table is not None:
                    self.status_table.forget(worker.config.url)
            for host in wanted:
                if _key(host) not in self._workers:
                    self._add(host)

    def statuses(self) -> list[HostStatus]:
        with self._lock:
            workers = list(self._workers.values())
        now = time.time()
        out = []
        for w in workers:
            s = w.status
            lag = None if s.newest_sample is None else max(0.0, now - s.newest_sample)
            out.append(
                HostStatus(s.name, s.url, s.kind, s.state, s.last_contact, s.newest_sample, lag,
                           s.error)
            )  # fmt: skip
        return sorted(out, key=lambda s: s.name)

    # -- internals --------------------------------------------------------------------------
    def _add(self, host: RemoteHostConfig) -> None:
        worker = _HostWorker(self, host)
        self._workers[_key(host)] = worker
        if self.status_table is not None:
            self.status_table.put(worker.status)
        worker.thread.start()

    def _claim(self, name: str, worker: _HostWorker) -> _HostWorker | None:
        """Give ``name`` to ``worker``; returns the other worker already holding it, if any."""
        with self._lock:
            holder = self._names.get(name)
            if holder is None or holder is worker or holder.stop_event.is_set():
                self._names[name] = worker
                return None
            return holder

    def _start_from(self, name: str) -> float | None:
        known = self._newest.get(name)
        if known is not None:
            return known
        return newest_sample(self.store_path, name) if self.store_path else None

    def _say(self, text: str) -> None:
        if self.on_message is not None:
            self.on_message(text)
        else:
            log.warning("%s", text)


def _same_name(name: str, mine: RemoteHostConfig, theirs: RemoteHostConfig) -> str:
    """Why a second source of one host name is refused, and what to do instead."""
    if mine.kind == theirs.kind == "prometheus":
        return (
            f"{netloc(mine.url)} and {netloc(theirs.url)} are exporters of the same host, "
            f"{name}: give them as one scrape target so their series make one host, "
            f"--scrape '{theirs.url},{mine.url}' (or url = \"{theirs.url} {mine.url}\" in "
            f"[hosts.{name}])."
        )
    return (
        f"{netloc(mine.url)} reports the host name {name}, which {netloc(theirs.url)} "
        "already has: give each agent its own --name (or name them in [hosts.NAME] tables)."
    )


def _key(host: RemoteHostConfig) -> tuple[str, str, str]:
    token = str(host.token_file) if host.token_file else ("keyring" if host.token_keyring else "")
    return (host.name or host.url, host.url, host.kind + "|" + token)
