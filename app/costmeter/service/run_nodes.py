"""Samples of the machines a service's runs execute on, when that is not this machine.

A backend with ``Capability.NODE_SAMPLES`` (Ray) samples each node it runs work on with
Costmeter's own :class:`~costmeter.sampling.node.NodeSampler` and hands the readings back from
``node_samples(handle, since_ts)``. :class:`RunNodes` asks for them about once a second, for
each node that has a run of the service going (one run's handle per node: every run on a node
returns that node's readings), writes them through the monitor's writer
(:class:`~costmeter.service.node_ingest.NodeIngest`) and, when a run ends, asks once more until
the node's readings cover its end, so that its cost is computed from complete samples.

This machine's own name is never ingested: a run whose node is this machine (a Ray instance
started here) is sampled by the local monitor like a local run.

Without a monitor of ours (another recorder holds the database) nothing can be written: that is
said once, and runs on other nodes are priced from what the database has (their reserved CPUs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from costmeter.core.hostnames import same_host
from costmeter.plugin_api import Backend, Capability, RunHandle
from costmeter.service.monitor import Monitor
from costmeter.service.node_ingest import NodeIngest

log = logging.getLogger(__name__)

#: Readings taken this long before a run started are asked for with its first poll.
LEAD_S = 5.0


class _NodeSampling(Protocol):
    def __call__(self, handle: RunHandle, since_ts: float) -> list[dict[str, Any]]: ...


class RunNodes:
    """Polls node samples for the runs on other machines; thread-safe."""

    def __init__(
        self,
        backend: Backend,
        *,
        monitor: Monitor | None,
        hostname: str,
        interval_s: float = 1.0,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.hostname = hostname
        self.interval_s = interval_s
        self._say = on_message or log.warning
        self.backend_name = str(getattr(backend, "name", "") or backend.metadata.name)
        method = getattr(backend, "node_samples", None)
        self._fetch_fn: _NodeSampling | None = (
            method
            if callable(method) and Capability.NODE_SAMPLES in backend.metadata.capabilities
            else None
        )
        self.monitor = monitor
        writer = monitor.writer if monitor is not None else None
        self.ingest: NodeIngest | None = None
        if self._fetch_fn is not None and writer is not None and monitor is not None:
            self.ingest = NodeIngest(
                writer,
                cpu_tdp_w=monitor.cpu_tdp_w,
                interval_s=interval_s,
                skip_hosts={hostname},
            )
        self._lock = threading.Lock()
        self._fetching = threading.Lock()  # one node_samples call and ingest at a time
        self._runs: dict[int, tuple[str, RunHandle]] = {}
        self._since: dict[str, float] = {}
        self._said: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def sampling(self) -> bool:
        """Whether node samples are asked for and written."""
        return self.ingest is not None

    @property
    def fetches(self) -> bool:
        """Whether the backend hands back node samples (``Capability.NODE_SAMPLES``)."""
        return self._fetch_fn is not None

    def is_remote(self, node: str | None) -> bool:
        """Whether ``node`` is another machine (a Slurm node name may be this machine's short
        name while this host knows itself by its FQDN, or the other way round)."""
        return node is not None and not same_host(node, self.hostname)

    def started(self, key: int, node: str, handle: RunHandle | None, since_ts: float) -> None:
        """Run ``key`` executes on ``node`` (not this machine): poll its node from now on."""
        if self.ingest is None or handle is None:
            self._say_once(node, self._why_not(node))
            return
        with self._lock:
            self._runs[key] = (node, handle)
            self._since.setdefault(node, since_ts - LEAD_S)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._loop, name="costmeter-node-samples", daemon=True
                )
                self._thread.start()

    def finished(self, key: int) -> None:
        with self._lock:
            self._runs.pop(key, None)

    def settle(self, node: str, handle: RunHandle | None, ended: float, timeout_s: float) -> None:
        """Fetch ``node``'s readings until they reach ``ended`` (or ``timeout_s`` passes), then
        let the writer store them."""
        if self.ingest is None or handle is None:
            return
        deadline = time.monotonic() + timeout_s
        while self._fetch(node, handle):
            with self._lock:
                reached = self._since.get(node, float("-inf")) >= ended
            if reached or time.monotonic() >= deadline:
                break
            time.sleep(min(0.1, self.interval_s / 4))
        writer = self.monitor.writer if self.monitor is not None else None
        if writer is not None:
            try:
                writer.flush(timeout=5.0)
            except Exception:
                log.exception("Flushing node samples failed.")

    def poll(self) -> None:
        """One round: each node with a run going, asked once."""
        with self._lock:
            nodes: dict[str, RunHandle] = {}
            for node, handle in self._runs.values():
                nodes.setdefault(node, handle)
        for node, handle in nodes.items():
            self._fetch(node, handle)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    # -- inside ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # never let the thread die: the next round may work
                log.exception("Polling node samples failed.")

    def _fetch(self, node: str, handle: RunHandle) -> bool:
        """Ask for ``node``'s new readings and write them; False when that failed."""
        fetch, ingest = self._fetch_fn, self.ingest
        if fetch is None or ingest is None:
            return False
        with self._fetching:
            with self._lock:
                since = self._since.get(node, 0.0)
            try:
                readings = fetch(handle, since)
            except Exception as exc:
                self._say_once(
                    f"{node}:{exc}",
                    f"The samples of node {node} could not be read ({exc}); runs there are "
                    "priced from what was sampled before.",
                )
                return False
            try:
                ingest.ingest(readings)
            except Exception:
                log.exception("Samples of node %s could not be written.", node)
                return False
            newest = max((t for t in map(_tick_ts, readings) if t is not None), default=since)
            with self._lock:
                self._since[node] = max(self._since.get(node, since), newest)
            for message in ingest.messages:
                self._say_once(message, message)
            ingest.messages.clear()
        return True

    def _why_not(self, node: str) -> str:
        if self._fetch_fn is None:
            return (
                f"A run executes on node {node}, whose usage backend '{self.backend_name}' does "
                "not report: its cost counts only the CPUs it reserved."
            )
        return (
            f"A run executes on node {node}, but this Costmeter does not record the database "
            "itself (another recorder holds it), so that node's samples cannot be written: runs "
            "there are priced from what the database has (the CPUs they reserved)."
        )

    def _say_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._said:
                return
            self._said.add(key)
        try:
            self._say(message)
        except Exception:
            log.exception("A message could not be shown: %s", message)


def _tick_ts(reading: object) -> float | None:
    tick = reading.get("tick") if isinstance(reading, dict) else None
    ts = getattr(tick, "ts", None)
    return float(ts) if isinstance(ts, int | float) else None
