"""``[sources.NAME]``: history read from a Prometheus-compatible server, backfilled then followed.

Status. Each source reports one :class:`HostStatus` through the hosts' status mechanism (the
``remote_hosts`` table, keyed by URL): ``name`` is the source's name (``[sources.NAME]``, or the
URL's host:port for ``record --prometheus``), ``url`` its URL, ``kind`` is ``"source"``
(SOURCE_KIND). States: ``backfilling`` while more than a few steps behind, with the progress
as a sentence in ``error`` ("filling history: 40 % ..."); ``connected`` when caught up;
``disconnected`` (unreachable, retried with backoff) or ``error`` (refused, a bad answer, a bad
token) with the reason in ``error``. ``newest_sample`` is the newest step written for any of
its hosts. The hosts it finds are stored as ordinary hosts (their own names).

Engine. Each cycle: find the hosts (``/api/v1/series`` of a few marker series, again every
``REDISCOVER_S``), start each host where the store's samples of it stop (``newest_sample``), or
``backfill_s`` ago for a host never seen, and read up to now (less ``settle_s``, so the last
scrape is in) with ``query_range`` at ``step_s``, in time windows and host batches sized so one
answer holds at most about POINTS_PER_QUERY points (1,000 GPUs x 7 days is read in bounded
memory, window after window). Readings go through ``NodeIngest`` (energy intervals, host and
device registration) to the writer, which is waited for when it is far behind. The step at a
host's stored newest point is read again but not written: it primes the energy counters, so a
restart or an outage leaves no gap and writes nothing twice. Then it follows, one step at a
time; a failure is retried with :class:`Backoff` and the next cycle resumes from where each
host's samples stop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from costmeter.config import RemoteHostConfig, SourceConfig
from costmeter.core.errors import CostmeterError
from costmeter.core.model import DeviceInfo, HostInfo, Tick
from costmeter.service.node_ingest import NodeIngest, TickSink
from costmeter.service.remote import dcgm
from costmeter.service.remote import prom_series as ps
from costmeter.service.remote.backoff import Backoff
from costmeter.service.remote.http import UNREACHABLE, RemoteError, netloc
from costmeter.service.remote.prom_api import MAX_POINTS_PER_SERIES, PromApi
from costmeter.service.remote.status import (
    BACKFILLING,
    CONNECTED,
    DISCONNECTED,
    ERROR,
    HostStatus,
)
from costmeter.service.remote.status_db import StatusTable, newest_sample
from costmeter.service.tokens import resolve_token

log = logging.getLogger(__name__)

SOURCE_KIND = "source"
#: Points one query_range answer may hold (about 25 bytes of JSON each).
POINTS_PER_QUERY = 400_000
#: A batch reads at most this many GPUs and hosts together.
MAX_BATCH_GPUS = 64
MAX_BATCH_HOSTS = 16
#: Series per host assumed for node_exporter's per-CPU query (128 logical CPUs).
NODE_SERIES_PER_HOST = 128
#: DCGM series per GPU (fields read, with pod and MIG series more).
DCGM_SERIES_PER_GPU = 16
#: How often the set of hosts is looked for again while following.
REDISCOVER_S = 300.0
#: A first look for hosts covers at least this much history (hosts stored before and idle).
MIN_DISCOVERY_S = 86400.0


class _FloorSink:
    """The writer, waited for when far behind; a tick at or before a host's stored newest
    sample is not written again (it only primed the energy counters)."""

    def __init__(self, writer: TickSink) -> None:
        self.writer = writer
        self.floors: dict[str, float] = {}

    def register(self, host: HostInfo, devices: Sequence[DeviceInfo]) -> None:
        self.writer.register(host, devices)

    def submit(self, tick: Tick, *, wait: bool = False) -> None:
        if tick.ts <= self.floors.get(tick.host, -math.inf):
            return
        self.writer.submit(tick, wait=True)


class SourceRunner:
    """Reads one source on a thread of its own (``start``/``stop``), or one cycle at a time
    (``cycle``, for tests)."""

    def __init__(
        self,
        config: SourceConfig,
        writer: TickSink,
        *,
        store_path: Path | None,
        cpu_tdp_w: float,
        skip_hosts: Iterable[str] = (),
        status_table: StatusTable | None = None,
        on_status: Callable[[HostStatus], None] | None = None,
        on_message: Callable[[str], None] | None = None,
        settle_s: float | None = None,
        timeout_s: float = 30.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.step = config.step_s
        self.settle_s = min(self.step, 5.0) if settle_s is None else settle_s
        self.store_path = store_path
        self.status_table = status_table
        self.on_status = on_status
        self.on_message = on_message
        self.timeout_s = timeout_s
        self.clock = clock
        self.backoff = backoff or Backoff(1.0, 30.0)
        self._sink = _FloorSink(writer)
        self.ingest = NodeIngest(
            self._sink, cpu_tdp_w=cpu_tdp_w, interval_s=self.step, skip_hosts=skip_hosts
        )
        self._api: PromApi | None = None
        self._hosts: dict[str, ps.HostTargets] = {}
        self._mappers: dict[str, ps.HostMapper] = {}
        #: Host -> the newest step read for it (stored, or written by this runner).
        self._last: dict[str, float] = {}
        self._discovered_at: float | None = None
        self._discovered_to: float | None = None
        self._said: set[str] = set()
        self.started_at = clock()
        #: Set once a cycle has read up to a time after this runner started.
        self.caught_up = threading.Event()
        #: Set when caught up, or when a try failed (``record --once`` stops then).
        self.settled = threading.Event()
        self.stop_event = threading.Event()
        self.status = HostStatus(
            name=config.name,
            url=config.url,
            kind=SOURCE_KIND,
            state=DISCONNECTED,
            error="not reached yet",
        )
        self.thread = threading.Thread(
            target=self._run, name=f"costmeter-source-{config.name}", daemon=True
        )

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        self._set(self.status)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            delay = self.run_once()
            if delay > 0:
                self.stop_event.wait(delay)

    def run_once(self) -> float:
        """One cycle with its failure turned into a status; seconds until the next try."""
        try:
            delay = self.cycle()
            self.backoff.reset()
            return delay
        except RemoteError as err:
            self._api = None
            return self._failed(DISCONNECTED if err.kind == UNREACHABLE else ERROR, str(err))
        except CostmeterError as err:  # the token file or keyring
            self._api = None
            return self._failed(ERROR, str(err))
        except Exception as err:  # a bug must not end the thread: report and retry
            log.exception("Reading the source %s failed.", self.config.url)
            self._api = None
            return self._failed(ERROR, f"reading failed unexpectedly: {err}")

    # -- one cycle --------------------------------------------------------------------------
    def cycle(self) -> float:
        """Read from where each host stops up to now; returns seconds until the next cycle."""
        api = self._connect()
        now = self.clock()
        end = math.floor((now - self.settle_s) / self.step) * self.step
        if self._discovery_due(now):
            self._discover(api, end, now)
            self._discovered_at = now
        hosts = [h for h in self._hosts.values() if h.name not in self.ingest.skip_hosts]
        groups = ps.batches(hosts, max_gpus=MAX_BATCH_GPUS, max_hosts=MAX_BATCH_HOSTS)
        starts = [min(self._start(name, end) for name in group) for group in groups]
        window = self._window(groups)
        first = min(starts, default=end)
        t = first
        while t <= end and not self.stop_event.is_set():
            if end - t > 3 * self.step:
                self._progress(first, t, end)
            upto = min(end, t + window)
            for group, start in zip(groups, starts, strict=True):
                if start <= upto:
                    self._read(api, group, max(start, t), upto)
            t = upto + self.step
        if not self.stop_event.is_set():
            self._connected(now)
            if end >= self.started_at - self.settle_s - self.step:
                self.caught_up.set()
                self.settled.set()
        return max(0.2, end + self.step + self.settle_s - self.clock())

    def _connect(self) -> PromApi:
        if self._api is None:
            token = resolve_token(
                RemoteHostConfig(
                    name=self.config.name,
                    url=self.config.url,
                    kind="prometheus",
                    token_file=self.config.token_file,
                    token_keyring=self.config.token_keyring,
                )
            )
            self._api = PromApi(self.config.url, token=token, timeout_s=self.timeout_s)
        return self._api

    def _discovery_due(self, now: float) -> bool:
        return self._discovered_at is None or now - self._discovered_at >= max(
            REDISCOVER_S, 10 * self.step
        )

    def _discover(self, api: PromApi, end: float, now: float) -> None:
        """The hosts with series between a day (or the backfill) before ``end`` and ``now``."""
        if self._discovered_to is None:
            start = end - max(self.config.backfill_s, MIN_DISCOVERY_S)
        else:
            start = self._discovered_to - self.step
        gpu = api.series(
            [ps.selector(ps.names(ps.GPU_MARKERS), self.config.match)], start=start, end=now
        )
        nodes = api.series(
            [ps.selector(ps.names(ps.NODE_MARKERS), self.config.match)], start=start, end=now
        )
        found = ps.targets(gpu, nodes)
        if not found and not self._hosts:
            raise RemoteError(
                f"{netloc(self.config.url)} holds none of the DCGM_FI_* (dcgm-exporter) or "
                "node_* (node_exporter) series Costmeter reads"
                + (f" matching {self.config.match}" if self.config.match else "")
                + ".",
                "protocol",
            )
        for name, host in found.items():
            known = self._hosts.get(name)
            if known is None:
                self._hosts[name] = host
                self._mappers[name] = ps.HostMapper(name)
                stored = newest_sample(self.store_path, name) if self.store_path else None
                if stored is not None:
                    self._sink.floors[name] = stored
                    self._last[name] = stored
            else:
                for label, uuids in host.gpus.items():
                    known.gpus.setdefault(label, set()).update(uuids)
                known.instances.update(host.instances)
        self._discovered_to = end

    def _start(self, host: str, end: float) -> float:
        """Where reading ``host`` starts: its newest step (read again to prime counters)."""
        last = self._last.get(host)
        if last is None:
            last = end - self.config.backfill_s
        return min(end, math.floor(last / self.step) * self.step)

    def _window(self, groups: Sequence[Sequence[str]]) -> float:
        """Seconds of history per query, so that no answer holds more than POINTS_PER_QUERY."""
        widest = 1
        for group in groups:
            gpus = sum(self._hosts[n].gpu_count for n in group)
            nodes = sum(1 for n in group if self._hosts[n].instances)
            widest = max(widest, gpus * DCGM_SERIES_PER_GPU, nodes * NODE_SERIES_PER_HOST)
        steps = max(1, min(MAX_POINTS_PER_SERIES - 1, POINTS_PER_QUERY // widest - 1))
        return steps * self.step

    def _read(self, api: PromApi, group: Sequence[str], start: float, end: float) -> None:
        batch = [self._hosts[n] for n in group]
        steps = ps.StepSamples({h.name: h for h in batch})
        for kind, query in ps.queries(batch, self.config.match):
            steps.add(kind, api.query_range(query, start=start, end=end, step=self.step))
        for name in group:
            by_ts = steps.by_host.pop(name, None)
            if not by_ts:
                continue
            mapped = self._mappers[name].map(by_ts)
            self.ingest.ingest(mapped.readings)
            if mapped.readings:
                newest = mapped.readings[-1]["tick"]
                assert isinstance(newest, Tick)
                self._last[name] = max(newest.ts, self._last.get(name, -math.inf))
            if self.status_table is not None:
                for uuid, ts, code in mapped.xids:
                    self.status_table.add_xid(uuid, ts, code)
            if mapped.dropped:
                self._say_once(
                    f"{self.config.name}: {name}: dropped values that are not readings: "
                    + "; ".join(dcgm.describe_dropped(mapped.dropped))
                    + ". They are left out, not stored.",
                    key=f"dropped {name}",
                )

    # -- status -----------------------------------------------------------------------------
    def _newest(self) -> float | None:
        return max(self._last.values(), default=None)

    def _progress(self, first: float, t: float, end: float) -> None:
        share = 100.0 * (t - first) / (end - first) if end > first else 100.0
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
        hosts = len(self._hosts)
        self._set(
            self._status(
                BACKFILLING,
                f"filling history: {share:.0f} % (at {stamp}, {hosts} host"
                f"{'s' if hosts != 1 else ''})",
                contact=self.clock(),
            )
        )

    def _connected(self, now: float) -> None:
        self._set(self._status(CONNECTED, None, contact=now))

    def _failed(self, state: str, message: str) -> float:
        self._set(self._status(state, message, contact=self.status.last_contact))
        self.settled.set()
        return self.backoff.next()

    def _status(self, state: str, error: str | None, *, contact: float | None) -> HostStatus:
        newest = self._newest()
        now = self.clock()
        return HostStatus(
            name=self.config.name,
            url=self.config.url,
            kind=SOURCE_KIND,
            state=state,
            last_contact=contact,
            newest_sample=newest,
            lag_s=None if newest is None else max(0.0, now - newest),
            error=error,
        )

    def _set(self, status: HostStatus) -> None:
        old = self.status
        self.status = status
        changed = old.state != status.state or old.error != status.error
        if self.status_table is not None:
            self.status_table.put(status, urgent=changed and status.state != BACKFILLING)
        if changed and self.on_status is not None:
            try:
                self.on_status(status)
            except Exception:
                log.exception("The source status callback failed.")

    def _say_once(self, text: str, *, key: str) -> None:
        if key in self._said:
            return
        self._said.add(key)
        log.warning("%s", text)
        if self.on_message is not None:
            self.on_message(text)


class PromSources:
    """Every enabled source, each on its own thread, sharing one status table."""

    def __init__(
        self,
        sources: Iterable[SourceConfig],
        writer: TickSink,
        *,
        store_path: Path | None,
        cpu_tdp_w: float,
        skip_hosts: Iterable[str] = (),
        on_status: Callable[[HostStatus], None] | None = None,
        on_message: Callable[[str], None] | None = None,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.status_table = StatusTable(store_path, on_error=on_message) if store_path else None
        self.runners = [
            SourceRunner(
                s,
                writer,
                store_path=store_path,
                cpu_tdp_w=cpu_tdp_w,
                skip_hosts=skip_hosts,
                status_table=self.status_table,
                on_status=on_status,
                on_message=on_message,
                backoff=Backoff(1.0, backoff_max_s),
            )
            for s in sources
            if s.enabled
        ]

    def start(self) -> None:
        if self.status_table is not None:
            self.status_table.start()
        for r in self.runners:
            r.start()

    def stop(self, timeout: float = 30.0) -> None:
        for r in self.runners:
            r.stop()
        deadline = time.monotonic() + timeout
        for r in self.runners:
            if r.thread.is_alive():
                r.thread.join(max(0.0, deadline - time.monotonic()))
        if self.status_table is not None:
            for r in self.runners:
                self.status_table.put(r.status)
            self.status_table.stop()

    def statuses(self) -> list[HostStatus]:
        return sorted((r.status for r in self.runners), key=lambda s: s.name)

    def wait_settled(self, stop: threading.Event | None = None) -> bool:
        """Block until every source has read up to the time it started or has failed once;
        True when all are caught up (False on a failure, or when ``stop`` is set)."""
        for r in self.runners:
            while not r.settled.wait(0.2):
                if stop is not None and stop.is_set():
                    return False
        return all(r.caught_up.is_set() for r in self.runners)


def source_from_url(
    url: str,
    *,
    token_file: Path | None = None,
    match: str | None = None,
    backfill_s: float = 7 * 86400.0,
    step_s: float = 60.0,
) -> SourceConfig:
    """``record --prometheus URL``: a source named after the URL's host:port."""
    return SourceConfig(
        name=netloc(url),
        url=url.rstrip("/"),
        token_file=token_file,
        match=match,
        backfill_s=backfill_s,
        step_s=step_s,
    )
