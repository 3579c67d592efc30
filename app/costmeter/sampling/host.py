"""The host sampler: CPU, memory, disk, network and per-process use, through psutil.

Never calls the blocking ``cpu_percent(interval=...)``: every percentage is the non-blocking form,
measured since the previous call. Only tracked processes (those holding a GPU or belonging to a
run) are read every tick; the walk over all processes that finds a run's children happens once
every ``process_scan_interval_s``, because a full scan every tick costs ~5x the rest of the tick.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass

import psutil

from costmeter.core import Clock, HostInfo, HostSample, ProcessSample, SystemClock
from costmeter.sampling.rapl import RaplReader

#: Provides samples for processes psutil cannot see (simulated GPU processes).
ProcessFallback = Callable[[int], ProcessSample | None]


@dataclass
class _Counters:
    ts: float
    disk_read: int
    disk_write: int
    net_rx: int
    net_tx: int


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class HostSampler:
    """Samples this machine. ``sample()`` costs well under a millisecond without processes."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        hostname: str | None = None,
        rapl: RaplReader | None = None,
        process_scan_interval_s: float = 10.0,
        process_fallback: ProcessFallback | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._hostname = hostname or socket.gethostname()
        self._rapl = rapl if rapl is not None else RaplReader()
        self._scan_interval = process_scan_interval_s
        self._fallback = process_fallback
        self._procs: dict[int, psutil.Process] = {}
        self._children: dict[int, set[int]] = {}
        self._last_scan = float("-inf")
        self._prev: _Counters | None = None
        # Prime the non-blocking percentages: the first call of each returns a meaningless 0.
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)
        self._prev = self._counters()

    @property
    def rapl(self) -> RaplReader:
        return self._rapl

    def info(self) -> HostInfo:
        return HostInfo(
            hostname=self._hostname,
            cpu_count=psutil.cpu_count(logical=True) or 1,
            cpu_model=_cpu_model(),
            memory_total=psutil.virtual_memory().total,
            physical_cores=psutil.cpu_count(logical=False),
        )

    def _counters(self) -> _Counters:
        disk = psutil.disk_io_counters()
        net = psutil.net_io_counters()
        return _Counters(
            ts=self._clock.now(),
            disk_read=disk.read_bytes if disk else 0,
            disk_write=disk.write_bytes if disk else 0,
            net_rx=net.bytes_recv if net else 0,
            net_tx=net.bytes_sent if net else 0,
        )

    def sample(self, tracked_pids: Collection[int] = ()) -> HostSample:
        """One reading. ``tracked_pids``: GPU holders and run roots (their children are found)."""
        cur = self._counters()
        prev, self._prev = self._prev, cur
        dt = cur.ts - prev.ts if prev else 0.0

        def rate(a: int, b: int) -> float:
            return max(0.0, (b - a) / dt) if dt > 0 else 0.0

        mem = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        energy = self._rapl.read() if self._rapl.available else None
        return HostSample(
            ts=cur.ts,
            cpu_percent=psutil.cpu_percent(interval=None),
            per_core=tuple(psutil.cpu_percent(interval=None, percpu=True)),
            load1=load1,
            load5=load5,
            load15=load15,
            mem_used=mem.total - mem.available,
            mem_total=mem.total,
            swap_used=psutil.swap_memory().used,
            disk_read_bps=rate(prev.disk_read, cur.disk_read) if prev else 0.0,
            disk_write_bps=rate(prev.disk_write, cur.disk_write) if prev else 0.0,
            net_rx_bps=rate(prev.net_rx, cur.net_rx) if prev else 0.0,
            net_tx_bps=rate(prev.net_tx, cur.net_tx) if prev else 0.0,
            cpu_energy_uj=energy[0] if energy else None,
            cpu_energy_range_uj=energy[1] if energy else None,
            processes=self._sample_processes(tracked_pids, cur.ts),
        )

    def _expand(self, roots: Collection[int], now: float) -> set[int]:
        """Roots plus their descendants; descendants are refreshed once per scan interval."""
        if now - self._last_scan >= self._scan_interval:
            self._last_scan = now
            self._children = {}
            for pid in roots:
                try:
                    kids = psutil.Process(pid).children(recursive=True)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self._children[pid] = {k.pid for k in kids}
        pids = set(roots)
        for pid in roots:
            pids |= self._children.get(pid, set())
        return pids

    def _sample_processes(self, roots: Collection[int], now: float) -> tuple[ProcessSample, ...]:
        if not roots:
            self._procs.clear()
            return ()
        pids = self._expand(roots, now)
        for gone in set(self._procs) - pids:
            del self._procs[gone]
        out: list[ProcessSample] = []
        for pid in sorted(pids):
            sample = self._read_process(pid)
            if sample is None and self._fallback is not None:
                sample = self._fallback(pid)
            if sample is not None:
                out.append(sample)
        return tuple(out)

    def _read_process(self, pid: int) -> ProcessSample | None:
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = psutil.Process(pid)
                proc.cpu_percent(interval=None)  # prime; the first reading is 0
                self._procs[pid] = proc
            with proc.oneshot():
                times = proc.cpu_times()
                try:
                    user = proc.username()
                except (psutil.AccessDenied, KeyError):
                    user = "?"
                try:
                    cmdline = " ".join(proc.cmdline())
                except psutil.AccessDenied:
                    cmdline = ""
                return ProcessSample(
                    pid=pid,
                    create_time=proc.create_time(),
                    name=proc.name(),
                    cmdline=cmdline,
                    user=user,
                    cpu_percent=proc.cpu_percent(interval=None),
                    rss=proc.memory_info().rss,
                    cpu_time_s=times.user + times.system,
                )
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return None
        except psutil.AccessDenied:
            return None
