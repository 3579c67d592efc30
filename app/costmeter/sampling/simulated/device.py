"""One simulated GPU: its state second by second, and the counters that integrate it.

Everything a second shows is a pure function of (seed, device index, the processes on the
device, that whole second). Power is constant within a second, so the energy counter is the
exact sum of per-second power (mW x 1 s = mJ) plus the current second's share.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

from costmeter.sampling.simulated.models import MIB, GpuModel, MigProfile
from costmeter.sampling.simulated.noise import uniforms, uniforms8
from costmeter.sampling.simulated.profiles import PHASE_WINDOW_S, Profile


class SimProcess:
    """A process on a simulated GPU. ``cpu_acc`` is CPU percent-seconds integrated so far."""

    __slots__ = (
        "cmdline",
        "cpu_acc",
        "create_time",
        "instance",
        "name",
        "pid",
        "profile",
        "start_sec",
        "user",
        "window",
        "window_busy",
    )

    def __init__(
        self,
        pid: int,
        profile: Profile,
        *,
        name: str,
        cmdline: str,
        create_time: float,
        user: str = "sim",
        instance: int | None = None,
    ) -> None:
        self.pid = pid
        #: The MIG device (its slot) the process runs on; None without MIG.
        self.instance = instance
        self.profile = profile
        self.name = name
        self.cmdline = cmdline
        self.user = user
        self.create_time = create_time
        self.start_sec = math.floor(create_time)
        self.cpu_acc = 0.0
        self.window = -1
        self.window_busy = False


def load_fraction(gpu: float, mem: float) -> float:
    """How hard the board works (0..1) from SM and memory-controller utilisation (%).

    Mostly the SM; but heavy memory traffic (50%+ of the memory controller's time, more than
    the SM's) draws near-full power by itself, as memory-bound kernels do on HBM boards.
    """
    f = 0.8 * gpu + 0.2 * mem
    if mem >= 50.0 and mem > f:
        f = mem
    return f / 100.0


#: (process, GPU memory held in bytes, SM util %, memory util %, CPU % of one core)
ProcRow = tuple[SimProcess, int, int, int, float]


class DevState:
    """What one device shows during one whole second."""

    __slots__ = (
        "gpu_util",
        "mem_clock_mhz",
        "mem_used",
        "mem_util",
        "mig_used",
        "power_mw",
        "procs",
        "sec",
        "sm_clock_mhz",
        "temp_c",
    )

    def __init__(
        self,
        sec: int,
        gpu_util: int,
        mem_util: int,
        mem_used: int,
        power_mw: int,
        temp_c: int,
        sm_clock_mhz: int,
        mem_clock_mhz: int,
        procs: tuple[ProcRow, ...],
        mig_used: tuple[int, ...] = (),
    ) -> None:
        self.sec = sec
        #: Bytes used on each MIG device (its own overhead included), in slot order.
        self.mig_used = mig_used
        self.gpu_util = gpu_util
        self.mem_util = mem_util
        self.mem_used = mem_used
        self.power_mw = power_mw
        self.temp_c = temp_c
        self.sm_clock_mhz = sm_clock_mhz
        self.mem_clock_mhz = mem_clock_mhz
        self.procs = procs


class SimDevice:
    def __init__(
        self, index: int, model: GpuModel, *, seed: int, uuid: str, origin_sec: int
    ) -> None:
        self.index = index
        self.model = model
        self.seed = seed
        self.uuid = uuid
        #: Replaced, never mutated, so readers can iterate without the lock.
        self.processes: tuple[SimProcess, ...] = ()
        self.lost_at: float | None = None
        #: MIG devices by slot while MIG mode is on (set once, at creation).
        self.mig: tuple[MigProfile, ...] = ()
        self._total = model.memory_total
        self._reserved = model.memory_reserved
        self._lock = threading.RLock()
        self._cur: DevState | None = None
        self._prev: DevState | None = None
        # Integrals (energy, process CPU time) are valid at the start of second ``_i_sec``.
        self._i_sec = origin_sec
        self._energy_mj = 0
        self._last_energy = 0

    # -- per-second state -------------------------------------------------------------------

    def state(self, sec: int) -> DevState:
        cur = self._cur
        if cur is not None and cur.sec == sec:
            return cur
        with self._lock:
            prev = self._prev
            if prev is not None and prev.sec == sec:
                return prev
            new = self._compute(sec)
            if cur is None or sec > cur.sec:
                self._prev, self._cur = cur, new
            return new

    def _busy(self, p: SimProcess, sec: int) -> bool:
        window = sec // PHASE_WINDOW_S
        if p.window != window:
            p.window_busy = uniforms(self.seed, self.index, p.pid, -1 - window)[0] < 0.5
            p.window = window
        return p.window_busy

    def _loads(
        self, sec: int
    ) -> tuple[tuple[float, ...], list[ProcRow], float, float, int, list[int]]:
        """Device uniforms, process rows, GPU %, memory %, bytes held by processes, and bytes
        held on each MIG device. On a MIG device a process's share is of that device's memory,
        and its work counts for the physical GPU by the device's share of the compute slices."""
        seed, index, total, mig = self.seed, self.index, self._total, self.mig
        mig_held = [0] * len(mig)
        # One draw serves the device (v[0:3]) and its first process (v[3:6]); further
        # processes draw their own, keyed by PID.
        v = uniforms8(seed, index, -1, sec)
        gpu = mem = 0.0
        held = 0
        rows: list[ProcRow] = []
        for p in self.processes:
            if p.start_sec > sec:
                continue
            if rows:
                u0, u1, u2, _ = uniforms(seed, index, p.pid, sec)
            else:
                u0, u1, u2 = v[3], v[4], v[5]
            prof = p.profile
            busy = prof.phased and self._busy(p, sec)
            pg, pm, frac, cpu = prof.load(u0, u1, u2, sec - p.start_sec, busy)
            slot = p.instance
            if slot is not None and slot < len(mig):
                share = mig[slot].slices / 7.0
                used = int(frac * mig[slot].memory_mib * MIB) // MIB * MIB
                mig_held[slot] += used
            else:
                share = 1.0
                used = int(frac * total) // MIB * MIB
            held += used
            gpu += pg * share
            mem += pm * share
            rows.append((p, used, round(pg), round(pm), cpu))
        gpu = gpu if gpu < 100.0 else 100.0
        return v, rows, gpu, (mem if mem < 100.0 else 100.0), held, mig_held

    def _power_mw(self, noise: float, f: float) -> int:
        """Power for load fraction ``f``: idle + (limit - idle) x f, a little noise, clamped."""
        m = self.model
        span = m.power_limit_w - m.idle_w
        watts = m.idle_w + span * f + (noise - 0.5) * (1.0 + 0.03 * span * f)
        if watts > m.power_limit_w:
            watts = m.power_limit_w
        elif watts < 0.9 * m.idle_w:
            watts = 0.9 * m.idle_w
        return int(watts * 1000.0)

    def _compute(self, sec: int) -> DevState:
        m = self.model
        v, rows, gpu, mem, held, mig_held = self._loads(sec)
        f = load_fraction(gpu, mem)
        temp = m.idle_temp_c + (m.load_temp_c - m.idle_temp_c) * f + (v[1] - 0.5) * 2.0
        if gpu < 1.0:
            sm = m.idle_sm_mhz
        else:
            sm = int(m.max_sm_mhz * (1.0 - 0.06 * f) - 30.0 * v[2]) // 15 * 15
        # v1 "used": the driver's reservation, the MIG devices' own overhead, the processes.
        used = self._reserved + held
        mig_used: tuple[int, ...] = ()
        if self.mig:
            mig_used = tuple(
                h + p.idle_used_mib * MIB for h, p in zip(mig_held, self.mig, strict=True)
            )
            used += sum(p.idle_used_mib * MIB for p in self.mig)
        return DevState(
            sec,
            round(gpu),
            round(mem),
            used if used < self._total else self._total,
            self._power_mw(v[0], f),
            round(temp),
            sm,
            m.max_mem_mhz if rows else m.idle_mem_mhz,
            tuple(rows),
            mig_used,
        )

    # -- integrals --------------------------------------------------------------------------

    def _advance(self, sec: int) -> None:
        """Bring the integrals to the start of ``sec`` (caller holds the lock)."""
        s = self._i_sec
        if sec <= s:
            return
        energy = self._energy_mj
        cur, prev = self._cur, self._prev
        loads, power = self._loads, self._power_mw
        while s < sec:
            if cur is not None and cur.sec == s:
                st: DevState | None = cur
            elif prev is not None and prev.sec == s:
                st = prev
            else:
                st = None
            if st is not None:
                energy += st.power_mw
                rows: Iterable[ProcRow] = st.procs
            else:  # only what the integrals need: no temperature, clocks or DevState
                v, rows, gpu, mem, _, _ = loads(s)
                energy += power(v[0], load_fraction(gpu, mem))
            for row in rows:
                row[0].cpu_acc += row[4]
            s += 1
        self._energy_mj = energy
        self._i_sec = sec

    def energy_mj(self, t: float) -> int:
        """Total energy since the driver loaded, in mJ, at time ``t`` (never decreases)."""
        sec = math.floor(t)
        with self._lock:
            self._advance(sec)
            value = self._energy_mj + int(self.state(sec).power_mw * (t - sec))
            if value < self._last_energy:
                value = self._last_energy
            self._last_energy = value
            return value

    def integrals(self) -> tuple[int, int, int]:
        """(the second the integrals are valid at the start of, the energy counter then in mJ,
        the last counter value read): where a chunk simulated in columns starts."""
        with self._lock:
            return self._i_sec, self._energy_mj, self._last_energy

    def settle(
        self,
        sec: int,
        energy_mj: int,
        last_energy: int,
        cpu_acc: Iterable[tuple[SimProcess, float]],
    ) -> None:
        """Set the integrals to what a chunk simulated in columns reached: valid at the start
        of ``sec`` (energy ``energy_mj``, each process's ``cpu_acc``), the counter last read
        as ``last_energy``; as ``_advance`` and ``energy_mj`` would have left them."""
        with self._lock:
            self._i_sec = sec
            self._energy_mj = energy_mj
            self._last_energy = last_energy
            for proc, acc in cpu_acc:
                proc.cpu_acc = acc

    def cpu_time_s(self, proc: SimProcess, t: float) -> float:
        """CPU seconds ``proc`` has used up to time ``t``."""
        return self.cpu_now(proc, t)[1]

    def cpu_now(self, proc: SimProcess, t: float) -> tuple[float, float]:
        """``proc``'s CPU percent during the second of ``t`` (0 if it does not run then) and
        the CPU seconds it has used up to ``t``."""
        sec = math.floor(t)
        with self._lock:
            self._advance(sec)
            pct = 0.0
            for row in self.state(sec).procs:
                if row[0] is proc:
                    pct = row[4]
                    break
            return pct, max(0.0, (proc.cpu_acc + pct * (t - sec)) / 100.0)

    # -- changes ----------------------------------------------------------------------------

    def add_process(self, proc: SimProcess, now: float) -> None:
        with self._lock:
            self._advance(math.floor(now))
            self.processes = (*(p for p in self.processes if p.pid != proc.pid), proc)
            self._cur = self._prev = None

    def remove_process(self, pid: int, now: float) -> SimProcess | None:
        with self._lock:
            self._advance(math.floor(now))
            gone = next((p for p in self.processes if p.pid == pid), None)
            self.processes = tuple(p for p in self.processes if p.pid != pid)
            self._cur = self._prev = None
            return gone
