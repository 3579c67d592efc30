"""The host sampler: CPU, memory, disk, network and per-process use, through psutil.

Never calls the blocking ``cpu_percent(interval=...)``: every percentage is the non-blocking form,
measured since the previous call. Only tracked processes (those holding a GPU or belonging to a
run) are read every tick; the walk over all processes that finds a run's children happens once
every ``process_scan_interval_s``, because a full scan every tick costs ~5x the rest of the tick.
A process's owner (user, Slurm job, container, run; ``costmeter.sampling.owner``) is read once,
when the process is first seen, and put on every sample of it.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import psutil

from costmeter.core import Clock, HostInfo, HostSample, ProcessSample, SystemClock
from costmeter.core.owner import Owner
from costmeter.sampling.owner import ENV_FIELDS, read_owner
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
    """Samples this machine. ``sample()`` costs well under a millisecond without processes.

    ``read_owners``: read each process's owner on first sight (off: ``owner`` stays None and the
    user name is psutil's, read every tick). ``proc_root``: where ``/proc`` is, for the owners.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        hostname: str | None = None,
        rapl: RaplReader | None = None,
        process_scan_interval_s: float = 10.0,
        process_fallback: ProcessFallback | None = None,
        read_owners: bool = True,
        proc_root: str = "/proc",
    ) -> None:
        self._clock = clock or SystemClock()
        self._hostname = hostname or socket.gethostname()
        self._rapl = rapl if rapl is not None else RaplReader()
        self._scan_interval = process_scan_interval_s
        self._fallback = process_fallback
        self._procs: dict[int, psutil.Process] = {}
        self._read_owners = read_owners
        self._proc_root = proc_root
        #: pid -> (create_time, owner): read on first sight, dropped with the process.
        self._owners: dict[int, tuple[float, Owner]] = {}
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
            self._owners.clear()
            return ()
        pids = self._expand(roots, now)
        for gone in set(self._procs) - pids:
            del self._procs[gone]
        for gone in set(self._owners) - pids:
            del self._owners[gone]
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
                created = proc.create_time()
                owner = self._owner(pid, created) if self._read_owners else None
                if owner is not None:
                    user = _user_of(owner)
                else:
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
                    create_time=created,
                    name=proc.name(),
                    cmdline=cmdline,
                    user=user,
                    cpu_percent=proc.cpu_percent(interval=None),
                    rss=proc.memory_info().rss,
                    cpu_time_s=times.user + times.system,
                    owner=owner,
                )
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            self._owners.pop(pid, None)
            return None
        except psutil.AccessDenied:
            return None

    def _owner(self, pid: int, create_time: float) -> Owner | None:
        """The owner of this process (pid and start time), read on first sight only.

        A process seen within ``EXEC_SETTLE_S`` of its start with nothing from its environment
        may be in the middle of ``exec``, when ``/proc/PID/environ`` reads empty (a run's
        process right after it was launched): None then, and it is read again next time."""
        known = self._owners.get(pid)
        if known is not None and known[0] == create_time:
            return known[1]
        owner = read_owner(pid, self._proc_root)
        if not _has_environ(owner) and time.time() - create_time < EXEC_SETTLE_S:
            return None
        self._owners[pid] = (create_time, owner)
        return owner


#: Seconds after a process starts during which an owner without environment is read again.
EXEC_SETTLE_S = 1.0


def _has_environ(owner: Owner) -> bool:
    """Whether anything of the owner came from the process's environment."""
    return "environ" in owner.unreadable or any(
        getattr(owner, name) is not None for name in ENV_FIELDS.values()
    )


def _user_of(owner: Owner) -> str:
    """``ProcessSample.user`` as psutil spells it: the name, else the uid, else "?"."""
    if owner.user is not None:
        return owner.user
    return str(owner.uid) if owner.uid is not None else "?"
