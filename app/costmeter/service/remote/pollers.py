"""One poll of one remote host: an agent (with backfill) or a Prometheus scrape target.

A poller turns what the host serves into readings (the dicts ``NodeIngest`` writes) and says
when it wants to be polled next. Failures are :class:`RemoteError`; the worker thread in
``collector`` turns them into host states and backoff.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costmeter.config import RemoteHostConfig
from costmeter.core.model import DeviceInfo, HostInfo, Tick
from costmeter.sampling import node, wire
from costmeter.service.remote import dcgm, node_exporter, pods
from costmeter.service.remote.agent_client import BACKFILL_LIMIT, LIVE_LIMIT, AgentClient
from costmeter.service.remote.energy_spread import EnergySpreader
from costmeter.service.remote.http import PROTOCOL, Fetcher, RemoteError, netloc
from costmeter.service.remote.prom import (
    MAX_BYTES,
    MAX_LINE_BYTES,
    ParseStats,
    PromParseError,
    parse_metrics,
)
from costmeter.service.tokens import resolve_token

log = logging.getLogger(__name__)

Reading = dict[str, Any]
#: A remote clock further ahead than this is refused: its samples would hide later ones.
MAX_CLOCK_AHEAD_S = 300.0


@dataclass
class PollResult:
    readings: list[Reading]
    #: Seconds until the next poll.
    next_in: float
    #: True while the host still has buffered samples to send (another poll follows at once).
    backfilling: bool = False
    #: (device uuid, ts, XID code) seen in this poll.
    xids: Sequence[tuple[str, float, int]] = ()
    #: Something the user should read once (samples dropped from an agent's buffer).
    note: str | None = None


def renamed(reading: Reading, name: str) -> Reading:
    """The reading with every host name replaced by ``name`` (a ``[hosts.NAME]`` entry)."""
    host: HostInfo = reading["host"]
    if host.hostname == name:
        return reading
    tick: Tick = reading["tick"]
    return {
        **reading,
        "host": dataclasses.replace(host, hostname=name),
        "devices": tuple(dataclasses.replace(d, host=name) for d in reading["devices"]),
        "tick": dataclasses.replace(tick, host=name),
    }


class AgentPoller:
    """Pulls ``/v1/samples`` from where the store (or this poller) left off.

    ``start_from(name)`` gives the newest sample already stored for a host name, so a recorder
    restarted after an outage asks the agent for exactly what it missed.
    """

    kind = "agent"

    def __init__(
        self,
        config: RemoteHostConfig,
        *,
        interval_s: float,
        start_from: Callable[[str], float | None],
        timeout_s: float = 5.0,
        ca_file: Path | None = None,
    ) -> None:
        self.config = config
        self.interval_s = interval_s
        self._start_from = start_from
        self._timeout_s = timeout_s
        self._ca_file = ca_file
        self._client: AgentClient | None = None
        self.name: str | None = config.name or None
        self.since: float | None = None
        self._known_since = False
        self._need_info = True

    def reset(self) -> None:
        """After a failure: read the token again and ask for /v1/info on the next poll."""
        self._client = None
        self._need_info = True

    def poll(self) -> PollResult:
        if self._client is None:
            token = resolve_token(self.config)
            self._client = AgentClient(
                self.config.url, token=token, timeout_s=self._timeout_s, ca_file=self._ca_file
            )
        client = self._client
        note = None
        if self._need_info:
            info = client.info()
            self.interval_s = info.interval_s
            if self.name is None:
                self.name = info.host.hostname
            self._need_info = False
        assert self.name is not None
        if not self._known_since:
            self.since = self._start_from(self.name)
            self._known_since = True
        backfilling = self.since is not None and time.time() - self.since > 3 * self.interval_s
        page = client.samples(self.since, BACKFILL_LIMIT if backfilling else LIVE_LIMIT)
        if (
            self.since is not None
            and page.oldest is not None
            and page.oldest > self.since + 1.5 * self.interval_s
        ):
            note = (
                f"{self.name}: the agent's buffer no longer holds the samples from "
                f"{_clock(self.since)} to {_clock(page.oldest)}; they are lost (a longer "
                "--buffer-hours on the agent keeps more)."
            )
        if page.ticks and page.ticks[-1].ts > time.time() + MAX_CLOCK_AHEAD_S:
            raise RemoteError(
                f"{self.name}'s clock is more than {MAX_CLOCK_AHEAD_S:.0f} s ahead of this "
                "machine's (it sent samples from the future); synchronise the clocks (NTP).",
                PROTOCOL,
            )
        readings = [self._reading(page, t) for t in page.ticks]
        if page.ticks:
            self.since = page.ticks[-1].ts
        if page.more and page.ticks:  # "more" with nothing in the page would never end
            return PollResult(readings, 0.0, backfilling=True, note=note)
        return PollResult(readings, self._next_in(), note=note)

    def _reading(self, page: wire.SamplesPage, tick: Tick) -> Reading:
        reading: Reading = {
            "format": node.FORMAT,
            "host": page.host,
            "devices": page.devices,
            "tick": tick,
        }
        return renamed(reading, self.name) if self.name else reading

    def _next_in(self) -> float:
        """Poll just after the agent's next tick is due: lag stays near one interval."""
        iv = self.interval_s
        if self.since is None:
            return iv
        due = self.since + iv + min(0.25 * iv, 0.25) - time.time()
        return min(1.5 * iv, max(0.2 * iv, due))


def split_urls(text: str) -> list[str]:
    """A Prometheus host's url may list several exporters of one machine (comma or space)."""
    return [u for u in re.split(r"[\s,]+", text.strip()) if u]


def _wanted(name: str) -> bool:
    return dcgm.wanted(name) or node_exporter.wanted(name)


class ScrapePoller:
    """Reads exporters' /metrics each interval; DCGM and node_exporter series make one tick.

    Several URLs of one machine (dcgm-exporter and node_exporter) are one target. The
    Kubernetes workloads dcgm-exporter maps to GPUs become the tick's processes, with their
    owners (``costmeter.service.remote.pods``). The host is named, in order of preference,
    by a Kubernetes node label on the DCGM series, by node_exporter's ``nodename``, by
    dcgm-exporter's ``Hostname``/``hostname`` label (in Kubernetes that can be the exporter
    pod's name, which changes on every rollout), else by the first URL's host:port. Messages
    about the page (values dropped, devices cut, no ``modelName``) are given once each as
    notes.
    """

    kind = "prometheus"

    def __init__(
        self,
        config: RemoteHostConfig,
        *,
        interval_s: float,
        timeout_s: float = 5.0,
        ca_file: Path | None = None,
        max_hold_s: float = 120.0,
    ) -> None:
        self.config = config
        self.interval_s = interval_s
        self.urls = [u if "/metrics" in u else u.rstrip("/") + "/metrics" for u in split_urls(
            config.url
        )]  # fmt: skip
        self._timeout_s = timeout_s
        self._ca_file = ca_file
        self._fetcher: Fetcher | None = None
        self._dcgm = dcgm.DcgmMapper()
        self._node = node_exporter.NodeExporterMapper()
        self._spread = EnergySpreader(max_hold_s=max_hold_s)
        self.name: str | None = config.name or None
        #: (metric, reason) -> values dropped since the start (DCGM blanks, impossible values).
        self.dropped: Counter[tuple[str, str]] = Counter()
        #: GPU uuid -> the Kubernetes workloads dcgm-exporter last saw on it.
        self.pods: Mapping[str, tuple[dcgm.PodRef, ...]] = {}
        self._said: set[str] = set()
        self._pending: list[str] = []

    def reset(self) -> None:
        self._fetcher = None

    def flush(self) -> list[Reading]:
        """Readings held back to spread an energy step (given to the store when stopping)."""
        return self._spread.flush()

    def poll(self) -> PollResult:
        started = time.monotonic()
        if self._fetcher is None:
            self._fetcher = Fetcher(
                token=resolve_token(self.config), timeout_s=self._timeout_s, ca_file=self._ca_file
            )
        samples: dict[str, list[Any]] = {}
        stats = ParseStats()
        for url in self.urls:
            body = self._fetcher.get(url, max_bytes=MAX_BYTES, accept="text/plain")
            try:
                for key, value in parse_metrics(body, keep=_wanted, stats=stats).items():
                    samples.setdefault(key, []).extend(value)
            except PromParseError as err:
                raise RemoteError(f"{netloc(url)}: {err}", PROTOCOL) from None
        ts = time.time()
        if self.name is None:
            self.name = self._pick_name(samples)
        name = self.name
        gpus = self._dcgm.map(samples, host=name, ts=ts)
        host = self._node.map(samples, host=name, ts=ts)
        if not gpus.devices and host.info is None:
            raise RemoteError(
                f"{netloc(self.urls[0])} serves none of the DCGM_FI_* (dcgm-exporter) or node_* "
                "(node_exporter) series Costmeter reads.",
                PROTOCOL,
            )
        self.pods = gpus.pods
        notes = self._notes(name, gpus, stats, samples)
        info = host.info or HostInfo(hostname=name, cpu_count=1, cpu_model="", memory_total=0)
        devices: tuple[DeviceInfo, ...] = gpus.devices
        gpu_samples, workloads = pods.attach(gpus.samples, gpus.pods)
        tick = Tick(
            ts=ts, host=name, host_sample=host.sample, devices=gpu_samples, processes=workloads
        )
        reading: Reading = {"format": node.FORMAT, "host": info, "devices": devices, "tick": tick}
        elapsed = time.monotonic() - started
        return PollResult(
            self._spread.push(renamed(reading, name)),
            max(0.0, self.interval_s - elapsed),
            xids=[(uuid, ts, code) for uuid, code in gpus.xids],
            note="\n".join(notes) or None,
        )

    def _pick_name(self, samples: dict[str, list[Any]]) -> str:
        node_label = _dcgm_label(samples, dcgm.NODE_LABELS)
        if node_label:
            return node_label
        nodename = _nodename(samples)
        if nodename:
            return nodename
        hostname = _dcgm_label(samples, dcgm.HOST_LABELS)
        if hostname:
            if "dcgm-exporter" in hostname:
                self._say_once(
                    f"{netloc(self.urls[0])} names its host {hostname}, which looks like "
                    "the dcgm-exporter pod's name and changes on every rollout: give the node's "
                    "name with [hosts.NAME] (or set NODE_NAME in the exporter's pod), or scrape "
                    "node_exporter with it (--scrape 'DCGM_URL,NODE_EXPORTER_URL')."
                )
            return hostname
        return netloc(self.urls[0])

    def _notes(
        self,
        name: str,
        gpus: dcgm.DcgmReading,
        stats: ParseStats,
        samples: dict[str, list[Any]],
    ) -> list[str]:
        self.dropped.update(gpus.dropped)
        new = {k: n for k, n in gpus.dropped.items() if f"dropped {k}" not in self._said}
        for key in new:
            self._said.add(f"dropped {key}")
        if new:
            self._say_once(
                f"{name}: dropped values that are not readings: "
                + "; ".join(dcgm.describe_dropped(new))
                + ". They are left out (counted in the recorder's log), not stored."
            )
        if gpus.devices_skipped:
            self._say_once(
                f"{name}: the page names more than {dcgm.MAX_DEVICES} GPUs; the first "
                f"{dcgm.MAX_DEVICES} are read and {gpus.devices_skipped} more are left out."
            )
        if stats.long_lines:
            self._say_once(
                f"{name}: {stats.long_lines} line(s) of the metrics page were longer than "
                f"{MAX_LINE_BYTES // 1024} KiB and were skipped."
            )
        if gpus.devices and _dcgm_label(samples, dcgm.MODEL_LABELS) is None:
            self._say_once(
                f"{name}: dcgm-exporter sends no modelName label (2.x does not), so its GPUs "
                "are named 'NVIDIA GPU' and get no price: use dcgm-exporter 3.x or later."
            )
        out, self._pending = self._pending, []
        return out

    def _say_once(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self._pending = [*self._pending, text]
            log.warning("%s", text)


def _dcgm_label(samples: dict[str, list[Any]], names: tuple[str, ...]) -> str | None:
    """The first value of a label (in any of its spellings ``names``) on a DCGM series."""
    for metric, series in samples.items():
        if dcgm.wanted(metric):
            for s in series:
                found = dcgm.label(s.labels, names)
                if found:
                    return found[:255]
    return None


def _nodename(samples: dict[str, list[Any]]) -> str | None:
    for s in samples.get("node_uname_info", ()):
        if s.labels.get("nodename"):
            return str(s.labels["nodename"])[:255]
    return None


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))
