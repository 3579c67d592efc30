"""``Tick`` objects gathered into a ``TickBatch``: for the benchmarks and tests that hold the
columnar path equal to the per-tick one, and for producers that have ticks in hand."""

from __future__ import annotations

from collections.abc import Sequence

from costmeter.core.model import Tick
from costmeter.core.tick_batch import DEVICE_FIELDS, HOST_FIELDS, TickBatch
from costmeter.store.bulk_rows import numpy_module


def batch_of(ticks: Sequence[Tick]) -> TickBatch | None:
    """``ticks`` as one batch, or None when numpy is missing or they are not of a batch's
    shape (one host, the same GPUs in the same order, each sampled at its tick's time, no
    lost GPU, every value and interval known, no processes known by owner only)."""
    np = numpy_module()
    if np is None or not ticks:
        return None
    first = ticks[0]
    devices = tuple((s.uuid, s.index) for s in first.devices)
    for t in ticks:
        hs, hiv = t.host_sample, t.host_interval
        if t.host != first.host or hs is None or hiv is None or hs.ts != t.ts or t.processes:
            return None
        if tuple((s.uuid, s.index) for s in t.devices) != devices:
            return None
        if any(s.lost or s.ts != t.ts or s.uuid not in t.device_intervals for s in t.devices):
            return None
        if hs.cpu_energy_uj is not None or hiv.energy_j is None:
            return None
        if any(t.device_intervals[s.uuid].energy_j is None for s in t.devices):
            return None
    device: dict[str, object] = {}
    for name in DEVICE_FIELDS:
        values = [[getattr(s, name) for s in t.devices] for t in ticks]
        if any(v is None for row in values for v in row):
            if name == "energy_mj":
                continue  # not stored: may be left out
            return None
        device[name] = np.array(values).reshape(len(ticks), len(devices))
    ivs = [[t.device_intervals[s.uuid] for s in t.devices] for t in ticks]
    host_samples = [t.host_sample for t in ticks]
    host = {name: np.array([getattr(hs, name) for hs in host_samples]) for name in HOST_FIELDS}
    host_ivs = [t.host_interval for t in ticks]
    gpu_procs = tuple(tuple(s.processes for s in t.devices) for t in ticks)
    host_procs = tuple(hs.processes for hs in host_samples if hs is not None)
    shape = (len(ticks), len(devices))
    return TickBatch(
        host=first.host,
        devices=devices,
        ts=np.array([t.ts for t in ticks], np.float64),
        device=device,
        dt_s=np.array([[iv.dt_s for iv in row] for row in ivs], np.float64).reshape(shape),
        energy_j=np.array([[iv.energy_j for iv in row] for row in ivs], np.float64).reshape(shape),
        energy_measured=np.array(
            [[iv.energy_measured for iv in row] for row in ivs], np.bool_
        ).reshape(shape),
        host_values=host,
        host_dt_s=np.array([iv.dt_s for iv in host_ivs if iv is not None], np.float64),
        host_energy_j=np.array([iv.energy_j for iv in host_ivs if iv is not None], np.float64),
        host_energy_measured=np.array(
            [iv.energy_measured for iv in host_ivs if iv is not None], np.bool_
        ),
        host_processes=host_procs if any(host_procs) else (),
        gpu_processes=gpu_procs if any(any(g) for g in gpu_procs) else (),
    )
