"""The running monitor: samplers -> energy intervals -> store, reported to listeners.

Used by ``costmeter record`` and ``costmeter simulate`` now, by the desktop app and the agent later.
It owns no thread of its own besides the sampling loop's; the store's writer has its own, so a
tick never waits on the disk.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from costmeter.config import Config, RemoteHostConfig, SourceConfig
from costmeter.core import (
    Clock,
    DeviceInfo,
    HostInfo,
    HostSample,
    ProcessSample,
    SamplerUnavailable,
    SimulatedClock,
    SystemClock,
    Tick,
)
from costmeter.core.bounds import INTERVAL_S
from costmeter.cost.energy import EnergyTracker
from costmeter.sampling.host import HostSampler
from costmeter.sampling.loop import SamplingLoop
from costmeter.sampling.nvml import NvmlSampler
from costmeter.service.remote import HostStatus, RemoteCollector
from costmeter.service.remote.prom_source import PromSources
from costmeter.store import RetentionPolicy, Writer

if TYPE_CHECKING:  # the simulator is imported only when asked for (never on the NVML path)
    from costmeter.sampling.simulated import FakeNvml

Listener = Callable[[Tick], None]


class _HostSource(Protocol):
    def info(self) -> HostInfo: ...

    def sample(self, tracked_pids: frozenset[int] = ...) -> HostSample: ...


def _stderr(message: str) -> None:
    print(f"costmeter: {message}", file=sys.stderr, flush=True)


@dataclass
class MonitorOptions:
    db_path: Path
    config: Config
    interval_s: float | None = None
    #: A simulated-GPU SPEC (see ``costmeter.sampling.simulated.parse_spec``), or None for NVML.
    simulate: str | None = None
    seed: int = 0
    #: Run on a simulated clock that starts here (``costmeter simulate``); None = real time.
    simulated_start: float | None = None
    #: With ``simulated_start``: read the simulated GPUs' state directly after the first tick
    #: (``sampling/simulated/direct.py``) instead of through the NVML sampler (same values).
    direct_simulation: bool = False
    tracked_pids: set[int] = field(default_factory=set)
    #: Remote hosts to pull samples from (agents, Prometheus exporters), written by this writer.
    remote: tuple[RemoteHostConfig, ...] = ()
    #: False: no local samplers at all, only the remote hosts (``record --no-local``).
    local: bool = True
    #: Prometheus-compatible servers to read history from (``record --prometheus``, [sources]).
    sources: tuple[SourceConfig, ...] = ()


class Monitor:
    def __init__(
        self, options: MonitorOptions, *, on_message: Callable[[str], None] = _stderr
    ) -> None:
        self.options = options
        self._say = on_message
        given = options.interval_s
        # 0 is refused like any value out of bounds, never replaced by the configured interval.
        self.interval_s = INTERVAL_S.check(
            given if given is not None else options.config.interval_s, "The sampling interval"
        )
        self.clock: Clock = (
            SimulatedClock(options.simulated_start)
            if options.simulated_start is not None
            else SystemClock()
        )
        self.fake: FakeNvml | None = None
        self.gpu: NvmlSampler | None = None
        self.host_sampler: _HostSource | None = None
        self.host_info: HostInfo | None = None
        self.writer: Writer | None = None
        self.gpu_mode = "none"
        self._listeners: list[Listener] = []
        self._remote_listeners: list[Listener] = []
        self.remote: RemoteCollector | None = None
        self.sources: PromSources | None = None
        self._energy = EnergyTracker(max_gap_s=max(5.0, 5 * self.interval_s))
        self._loop: SamplingLoop | None = None
        #: Set by ``stop()``, even before a loop exists: a Ctrl-C between "recording ..." and
        #: the loop's start used to be lost, and the recorder then ran on until killed.
        self._stop_requested = False
        self.ticks = 0

    # -- set-up -----------------------------------------------------------------------------
    def open(self) -> None:
        """Start samplers and the writer. Raises StoreLockedError/StoreError for the database."""
        opts = self.options
        bulk = opts.simulated_start is not None
        hostname = "sim-host" if bulk else socket.gethostname()
        if not opts.local:
            self.gpu_mode = "none"
        elif opts.simulate is not None:
            from costmeter.sampling.simulated import make_fake_nvml

            self.fake = make_fake_nvml(opts.simulate, seed=opts.seed, clock=self.clock)
            if bulk and opts.direct_simulation:
                from costmeter.sampling.simulated.direct import DirectSimSampler

                self.gpu = DirectSimSampler(self.fake, host=hostname, clock=self.clock)
            else:
                self.gpu = NvmlSampler(self.fake, host=hostname, clock=self.clock)
            self.gpu_mode = "simulated"
        else:
            self.gpu = NvmlSampler(host=hostname, clock=self.clock)
            self.gpu_mode = "nvml"
        try:
            if self.gpu is not None:
                self.gpu.open()
        except SamplerUnavailable as exc:
            self._say(str(exc))
            self.gpu = None
            self.gpu_mode = "none"
        if bulk and self.fake is not None:
            from costmeter.sampling.simulated import SimulatedHostSampler

            self.host_sampler = SimulatedHostSampler(self.fake, clock=self.clock)
        else:
            self.host_sampler = HostSampler(
                clock=self.clock,
                hostname=hostname,
                process_scan_interval_s=opts.config.process_scan_interval_s,
                process_fallback=self._simulated_process if self.fake is not None else None,
            )
        self.host_info = self.host_sampler.info()
        retention = opts.config.retention
        self.writer = Writer(
            opts.db_path,
            clock=self.clock,
            retention=RetentionPolicy(
                raw_days=retention.raw_days,
                minute_days=retention.minute_days,
                hour_days=retention.hour_days,
            ),
            on_error=self._say,
        )
        self.writer.start()
        if self.writer.notice:  # a damaged file was moved aside: say where it went
            self._say(self.writer.notice)
        if opts.local:
            self.writer.register(self.host_info, self.devices)
        if opts.remote:
            self.set_remote_hosts(opts.remote)
        if any(s.enabled for s in opts.sources):
            self.sources = PromSources(
                opts.sources,
                self.writer,
                store_path=opts.db_path,
                cpu_tdp_w=self.cpu_tdp_w,
                skip_hosts=(self.host_info.hostname,) if opts.local else (),
                on_message=self._say,
            )
            self.sources.start()

    def _simulated_process(self, pid: int) -> ProcessSample | None:
        """The simulated side of a process psutil cannot read: only simulated PIDs have one (a
        real process put on a simulated GPU by a run has simply ended)."""
        if self.fake is None:
            return None
        from costmeter.sampling.simulated import PID_BASE

        return self.fake.process_sample(pid) if pid >= PID_BASE else None

    @property
    def devices(self) -> list[DeviceInfo]:
        return list(self.gpu.devices) if self.gpu is not None else []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_remote_listener(self, listener: Listener) -> None:
        """Called with each live tick of a remote host, from that host's collector thread.

        Apart from ``add_listener``: the GUI's listeners expect this machine's ticks only.
        """
        self._remote_listeners.append(listener)

    def _remote_tick(self, tick: Tick) -> None:
        for listener in self._remote_listeners:
            listener(tick)

    def set_remote_hosts(self, hosts: Iterable[RemoteHostConfig]) -> None:
        """Collect from ``hosts`` from now on (after ``open``; the GUI edits hosts live)."""
        hosts = tuple(hosts)
        self.options.remote = hosts
        if self.remote is not None:
            self.remote.set_hosts(hosts)
            return
        if self.writer is None or self.host_info is None or not hosts:
            return
        self.remote = RemoteCollector(
            self.writer,
            hosts,
            interval_s=self.interval_s,
            cpu_tdp_w=self.cpu_tdp_w,
            store_path=self.options.db_path,
            skip_hosts=(self.host_info.hostname,) if self.options.local else (),
            on_tick=self._remote_tick,
            on_message=self._say,
        )
        self.remote.start()

    def remote_statuses(self) -> list[HostStatus]:
        """The remote hosts and sources and their state (empty without any)."""
        hosts = self.remote.statuses() if self.remote is not None else []
        return hosts + (self.sources.statuses() if self.sources is not None else [])

    def set_tracked_pids(self, pids: Iterable[int]) -> None:
        """Sample these processes (and their children) from the next tick on: the runs' PIDs.

        Safe from any thread: the set is replaced, never changed in place.
        """
        self.options.tracked_pids = set(pids)

    # -- one tick ---------------------------------------------------------------------------
    def tick(self) -> Tick | None:
        """Sample this machine once; None with ``local=False`` (remote hosts have threads)."""
        if not self.options.local:
            return None
        assert self.host_sampler is not None and self.writer is not None and self.host_info
        devices = self.gpu.sample() if self.gpu is not None else ()
        if self.gpu is not None:
            messages = self.gpu.drain_messages()
            for message in messages:
                self._say(message)
            if messages:  # a metric went N/A or a GPU was lost: keep the store's record current
                lost = {d.uuid for d in devices if d.lost}
                attached = [d for d in self.devices if d.uuid not in lost]
                self.writer.register(self.host_info, attached)
        pids = {p.pid for d in devices for p in d.processes} | self.options.tracked_pids
        host = self.host_sampler.sample(frozenset(pids))
        tick = Tick(
            ts=host.ts,
            host=self.host_info.hostname,
            host_sample=host,
            devices=devices,
            device_intervals={d.uuid: self._energy.device_interval(d) for d in devices},
            host_interval=self._energy.host_interval(
                host, cpu_count=self.host_info.cpu_count, tdp_w=self.cpu_tdp_w
            ),
        )
        self.writer.submit(tick, wait=self.options.simulated_start is not None)
        self.ticks += 1
        for listener in self._listeners:
            listener(tick)
        return tick

    def _tick_and_forget(self) -> None:
        self.tick()

    @property
    def cpu_tdp_w(self) -> float:
        return self.options.config.pricing().cpu_tdp_w

    # -- running ----------------------------------------------------------------------------
    def make_loop(self) -> SamplingLoop:
        self._loop = SamplingLoop(
            self._tick_and_forget, interval_s=self.interval_s, clock=self.clock, on_error=self._say
        )
        return self._loop

    def run_until(self, end_ts: float | None) -> int:
        """Sample on the calling thread until ``end_ts`` (clock time) or ``stop()``, which may
        come from a signal handler or another thread at any moment, before this call too."""
        loop = self.make_loop()
        if self._stop_requested:  # after make_loop: a stop() from now on reaches the loop
            return loop.ticks
        opts = self.options
        if opts.simulated_start is not None and opts.direct_simulation and end_ts is not None:
            return self._run_in_batches(end_ts)
        return loop.run_until(end_ts)

    def _run_in_batches(self, end_ts: float) -> int:
        """``simulate``'s loop: the ticks ``SamplingLoop`` would make at the same times, the
        first through ``tick()``, the rest as ``TickBatch``es where the simulated fleet allows
        (``service/simulated_batches.py``), else tick by tick. Returns the ticks made."""
        from costmeter.service.simulated_batches import CHUNK_TICKS, SimulatedBatches

        assert self.writer is not None and self.host_info is not None
        t0, step = self.clock.now(), self.interval_s
        k = 0
        batches: SimulatedBatches | None = None
        while not self._stop_requested:
            due = t0 + k * step
            if due >= end_ts:
                self.clock.sleep_until(end_ts)
                break
            if batches is None:
                self.clock.sleep_until(due)
                tick = self.tick()
                k += 1
                if k == 1:
                    batches = SimulatedBatches.after(
                        self.gpu,
                        self.host_sampler,
                        self.clock,
                        self._energy,
                        tick,
                        cpu_count=self.host_info.cpu_count,
                        tdp_w=self.cpu_tdp_w,
                        tracked_pids=lambda: self.options.tracked_pids,
                    )
                continue
            times = [t0 + j * step for j in range(k, k + CHUNK_TICKS)]
            times = [t for t in times if t < end_ts]
            batch = batches.make(times)
            self.writer.submit_batch(batch, wait=True)
            self.ticks += len(batch)
            k += len(times)
            if self._listeners:
                last = batch.tick(len(batch) - 1)
                for listener in self._listeners:
                    listener(last)
        return k

    def stop(self) -> None:
        self._stop_requested = True
        loop = self._loop
        if loop is not None:
            loop.stop()

    def close(self) -> None:
        self.stop()
        if self.sources is not None:
            self.sources.stop()
            self.sources = None
        if self.remote is not None:
            self.remote.stop()
            self.remote = None
        if self.writer is not None:
            self.writer.stop()
            self.writer = None
        if self.gpu is not None:
            self.gpu.close()
            self.gpu = None
