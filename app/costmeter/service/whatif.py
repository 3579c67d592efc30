"""``costmeter whatif``: read a run's (or a device's recent) measured facts from the store and
estimate them on every priced GPU model (``costmeter.cost.whatif``).

The facts come from the store's named queries in one call per question: ``device_windows``
(utilisation, memory-controller utilisation and memory used per GPU over the run's lifetime) and
``RunStore.samples`` (the memory the run's own processes held). Reading only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

from costmeter.config import Config
from costmeter.core.errors import CostmeterError
from costmeter.core.hostnames import same_host
from costmeter.cost.gpu_specs import load_gpu_specs
from costmeter.cost.pricing import Pricing
from costmeter.cost.whatif import DEFAULT_PRECISION, WhatIf, Workload, estimate
from costmeter.store import DeviceWindow, Store, device_windows
from costmeter.store.store import DeviceRecord

__all__ = ["WhatIf", "WhatIfError", "whatif_device", "whatif_run"]

METRICS = ("gpu_util", "mem_util", "mem_used")
MAX_POINTS = 2000


class WhatIfError(CostmeterError):
    """The question cannot be answered from the database (said in words)."""


def whatif_run(
    store: Store, config: Config, run_id: int, precision: str = DEFAULT_PRECISION
) -> WhatIf:
    """The estimate for finished run ``run_id`` on every priced model."""
    runs = store.runs()
    row = runs.get(run_id)
    if row is None:
        raise WhatIfError(f"there is no run {run_id} in {store.path}.")
    if row.started is None or row.ended is None:
        raise WhatIfError(
            f"run {run_id} is {row.status}: ask again when it has finished (its whole "
            "duration is what is scaled)."
        )
    host = row.node or row.host or ""
    gpus = list(row.gpus)
    samples = runs.samples(row)
    if not gpus:  # placed on none: the GPUs its processes showed up on
        gpus = [d.index for d in samples.devices]
    if not gpus:
        raise WhatIfError(f"run {run_id} used no GPU: there is nothing to move to another model.")
    records = _records(store, host, gpus)
    if not records:
        raise WhatIfError(f"no GPU of run {run_id} ({host}: {gpus}) was ever sampled.")
    windows = device_windows(
        store,
        [(r.id, row.started, row.ended) for r in records],
        metrics=METRICS,
        max_points=MAX_POINTS,
    )
    held = [m for d in samples.devices for s in d.rows if (m := s.run_mem) is not None and m > 0]
    workload = _workload(
        records,
        [windows[(r.id, row.started, row.ended)] for r in records],
        config.pricing(),
        duration_s=row.ended - row.started,
        run_peak=max(held) if held else None,
    )
    return estimate(workload, load_gpu_specs(), config.pricing(), precision)


def whatif_device(
    store: Store,
    config: Config,
    device: str,
    since_s: float,
    precision: str = DEFAULT_PRECISION,
    now: float | None = None,
) -> WhatIf:
    """The estimate for what GPU ``HOST:INDEX`` did over the last ``since_s`` seconds."""
    host, _, index_text = device.rpartition(":")
    if not host or not index_text.isdigit():
        raise WhatIfError(f"--device takes HOST:INDEX (gpu-01:0), not {device!r}.")
    records = _records(store, host, [int(index_text)])
    if not records:
        known = ", ".join(f"{d.host}:{d.index}" for d in store.devices()) or "none"
        raise WhatIfError(f"no GPU {device} in {store.path} (known: {known}).")
    end = time.time() if now is None else now
    span = store.time_range()
    start = end - since_s
    if span is not None:
        start, end = max(start, span[0]), min(end, span[1])
    window = device_windows(store, [(records[0].id, start, end)], metrics=METRICS)
    stored = window.get((records[0].id, start, end))
    ts = stored.series["gpu_util"].ts if stored is not None else []
    if stored is None or len(ts) < 2:
        raise WhatIfError(f"GPU {device} has no samples in that window.")
    step = (ts[-1] - ts[0]) / (len(ts) - 1)
    workload = _workload(
        records, [stored], config.pricing(), duration_s=ts[-1] - ts[0] + step, run_peak=None
    )
    return estimate(workload, load_gpu_specs(), config.pricing(), precision)


def _records(store: Store, host: str, indices: Iterable[int]) -> list[DeviceRecord]:
    wanted = set(indices)
    found = [d for d in store.devices() if d.index in wanted and d.host == host]
    if not found and host:  # the same machine under its short or fully qualified name
        found = [d for d in store.devices() if d.index in wanted and same_host(d.host, host)]
    return sorted(found, key=lambda d: d.index)


def _mean(values: Sequence[float]) -> float | None:
    known = [v for v in values if not math.isnan(v)]
    return sum(known) / len(known) if known else None


def _workload(
    records: Sequence[DeviceRecord],
    windows: Sequence[DeviceWindow],
    pricing: Pricing,
    *,
    duration_s: float,
    run_peak: int | None,
) -> Workload:
    """Means over the GPUs' samples (each GPU alike), the peak of any one GPU."""
    utils = [_mean(w.series["gpu_util"].avg) for w in windows]
    mems = [_mean(w.series["mem_util"].avg) for w in windows]
    peaks = [v for w in windows for v in w.series["mem_used"].max if not math.isnan(v)]
    gpu_util = _mean([u for u in utils if u is not None])
    mem_util = _mean([m for m in mems if m is not None])
    name = records[0].name
    match = pricing.gpu_price(name)
    peak: int | None
    if run_peak is not None:
        peak, basis = run_peak, "the run's processes"
    else:
        peak = int(max(peaks)) if peaks else None
        basis = "the GPU's memory used"
    return Workload(
        model=match.row.model if match.row is not None else "",
        device_name=name,
        duration_s=max(0.0, duration_s),
        gpu_count=len(records),
        peak_mem_bytes=peak,
        gpu_util_pct=gpu_util,
        mem_util_pct=mem_util,
        peak_basis=basis,
    )
