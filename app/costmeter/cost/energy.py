"""Energy per sampling interval, from hardware counters where they exist, else estimated.

A cumulative counter (NVML total energy, RAPL) gives measured energy; integrating power over time
or multiplying a CPU's TDP by its utilisation gives an estimate, labelled as such.
"""

from __future__ import annotations

from costmeter.core.model import DeviceSample, HostSample, Interval


def counter_delta(prev: int, cur: int, wrap: int | None) -> int | None:
    """How far a cumulative counter advanced from ``prev`` to ``cur``.

    A counter that went down wrapped around if its range ``wrap`` is known (RAPL's
    ``max_energy_range_uj``); without a range it was reset (NVML's 64-bit counter after a driver
    reload), and None says the caller should fall back to an estimate.
    """
    if cur >= prev:
        return cur - prev
    if wrap is not None and wrap > 0 and prev <= wrap:
        return cur + wrap - prev
    return None


def trapezoid_j(p0_w: float, p1_w: float, dt_s: float) -> float:
    """Energy in joules between two power readings ``dt_s`` apart, assuming a linear ramp."""
    return (p0_w + p1_w) / 2.0 * dt_s


class EnergyTracker:
    """Turns successive samples into ``Interval``s; keeps the previous sample of each source.

    A first sample, a sample more than ``max_gap_s`` after the previous one, or a sample that goes
    back in time starts afresh with ``dt_s = 0``: nothing is known about the time in between.
    """

    def __init__(self, max_gap_s: float) -> None:
        if max_gap_s <= 0:
            raise ValueError("max_gap_s must be greater than 0.")
        self.max_gap_s = max_gap_s
        self._devices: dict[str, DeviceSample] = {}
        self._host: HostSample | None = None

    def forget(self, uuid: str) -> None:
        """Drop what is known about one device (it was removed)."""
        self._devices.pop(uuid, None)

    def device_interval(self, sample: DeviceSample) -> Interval:
        if sample.lost:
            self._devices.pop(sample.uuid, None)
            return Interval(dt_s=0.0, energy_j=None, energy_measured=False)
        prev = self._devices.get(sample.uuid)
        self._devices[sample.uuid] = sample
        dt = self._dt(prev.ts if prev else None, sample.ts)
        if prev is None or dt is None:
            return _first(sample.energy_mj is not None, sample.power_w is not None)
        if prev.energy_mj is not None and sample.energy_mj is not None:
            delta_mj = counter_delta(prev.energy_mj, sample.energy_mj, None)
            if delta_mj is not None:
                return Interval(dt_s=dt, energy_j=delta_mj / 1000.0, energy_measured=True)
        return Interval(
            dt_s=dt, energy_j=_from_power(prev.power_w, sample.power_w, dt), energy_measured=False
        )

    def host_interval(self, sample: HostSample, *, cpu_count: int, tdp_w: float) -> Interval:
        """CPU energy since the previous host sample.

        Measured from the RAPL package counters when both samples have them; otherwise
        estimated as ``tdp_w x utilisation x dt``. ``cpu_percent`` is the whole machine's
        (0-100); a value above 100 is taken as a per-core sum and divided by ``cpu_count``.
        """
        prev = self._host
        self._host = sample
        dt = self._dt(prev.ts if prev else None, sample.ts)
        if prev is None or dt is None:
            return _first(sample.cpu_energy_uj is not None, True)
        measured_uj = _rapl_delta(prev, sample)
        if measured_uj is not None:
            return Interval(dt_s=dt, energy_j=measured_uj / 1e6, energy_measured=True)
        percent = sample.cpu_percent
        if percent > 100.0 and cpu_count > 1:
            percent /= cpu_count
        share = min(max(percent, 0.0), 100.0) / 100.0
        return Interval(dt_s=dt, energy_j=tdp_w * share * dt, energy_measured=False)

    def _dt(self, prev_ts: float | None, ts: float) -> float | None:
        """Seconds since the previous sample, or None when the interval cannot be trusted."""
        if prev_ts is None:
            return None
        dt = ts - prev_ts
        if dt <= 0 or dt > self.max_gap_s:
            return None
        return dt


def _first(has_counter: bool, has_power: bool) -> Interval:
    energy = 0.0 if (has_counter or has_power) else None
    return Interval(dt_s=0.0, energy_j=energy, energy_measured=has_counter)


def _from_power(p0: float | None, p1: float | None, dt: float) -> float | None:
    if p0 is not None and p1 is not None:
        return trapezoid_j(p0, p1, dt)
    if p0 is not None or p1 is not None:
        known = p1 if p1 is not None else p0
        assert known is not None
        return known * dt
    return None


def _rapl_delta(prev: HostSample, cur: HostSample) -> int | None:
    """Summed package energy in microjoules, or None if any package cannot be trusted."""
    a, b = prev.cpu_energy_uj, cur.cpu_energy_uj
    if a is None or b is None or len(a) != len(b) or not a:
        return None
    ranges = cur.cpu_energy_range_uj or prev.cpu_energy_range_uj
    total = 0
    for i, (p, c) in enumerate(zip(a, b, strict=True)):
        wrap = ranges[i] if ranges is not None and i < len(ranges) else None
        delta = counter_delta(p, c, wrap)
        if delta is None:
            return None
        total += delta
    return total
