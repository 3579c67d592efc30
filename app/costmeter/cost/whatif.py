"""What a measured workload would take and cost on each other priced GPU model (pure).

The estimate (docs/WHATIF.md) stands on the workload's measured facts and the published table
(``resources/gpu_specs.toml``):

- **fits**: peak memory + margin (10 % of the peak, at least 1 GiB) <= the model's memory.
- **balance**: ``u`` = mean GPU utilisation (share of time a kernel ran), ``m`` = mean
  memory-controller utilisation. The memory-bound share of the busy time is ``w_m = min(1, m/u)``
  (the share of kernel time the memory was busy), ``w_c = 1 - w_m``.
- **duration** = measured x ((1 - u) + u x (w_c x C_here/C_there + w_m x B_here/B_there)): the
  time no kernel ran (input, host code, waiting) does not scale; the busy time scales by the
  ratio of dense TFLOPS at the chosen precision (C) and of memory bandwidth (B).
- **cost** = duration x GPUs x the model's hourly price; the measured side is priced the same
  way (GPU-hours), so the two compare like for like; saving = measured - estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from costmeter.cost.gpu_specs import PRECISIONS, GpuSpec, GpuSpecs
from costmeter.cost.pricing import Pricing

GIB = 1024**3
#: Memory kept spare on the other model: a share of the peak, and at least a floor (allocator
#: fragmentation, a larger batch at the end of an epoch, the CUDA context of another driver).
MARGIN_SHARE = 0.10
MARGIN_MIN_BYTES = GIB
DEFAULT_PRECISION = "bf16"


@dataclass(frozen=True, slots=True)
class Workload:
    """What was measured of one run (or a device's recent work)."""

    #: The price row's model it ran on ("A100 80GB"), and the device's own name.
    model: str
    device_name: str
    duration_s: float
    gpu_count: int
    #: Peak memory used on one GPU (bytes), and what it was read from.
    peak_mem_bytes: int | None
    gpu_util_pct: float | None
    mem_util_pct: float | None
    peak_basis: str = "the GPU's memory used"


@dataclass(frozen=True, slots=True)
class Balance:
    """How the measured time splits: idle, compute-bound busy, memory-bound busy."""

    busy_share: float
    memory_share: float
    #: False when the memory-controller utilisation was not measured (then compute only).
    memory_known: bool

    @property
    def compute_share(self) -> float:
        return 1.0 - self.memory_share

    def factor(self, compute_ratio: float, bandwidth_ratio: float) -> float:
        """Duration there / duration here, from here/there throughput ratios."""
        busy = self.compute_share * compute_ratio + self.memory_share * bandwidth_ratio
        return (1.0 - self.busy_share) + self.busy_share * busy

    def text(self) -> str:
        if not self.memory_known:
            return (
                f"busy {self.busy_share:.0%} of the time; memory-controller utilisation not "
                "measured, so the busy time scales by compute alone"
            )
        return (
            f"busy {self.busy_share:.0%} of the time, {self.memory_share:.0%} of it "
            "memory-bound (memory-controller / kernel utilisation)"
        )


def balance(gpu_util_pct: float, mem_util_pct: float | None) -> Balance:
    u = min(1.0, max(0.0, gpu_util_pct / 100.0))
    if mem_util_pct is None:
        return Balance(u, 0.0, memory_known=False)
    m = min(1.0, max(0.0, mem_util_pct / 100.0))
    return Balance(u, min(1.0, m / u) if u > 0 else 0.0, memory_known=True)


@dataclass(frozen=True, slots=True)
class Option:
    """One GPU model's estimate; ``None`` where a figure it needs is unknown."""

    model: str
    hourly: float
    memory_gib: float | None
    fits: bool | None
    duration_s: float | None
    cost: float | None
    saving: float | None
    saving_share: float | None
    compute_ratio: float | None
    bandwidth_ratio: float | None
    #: Why it does not fit or has no estimate; "" when it has one.
    reason: str
    #: The figures it stands on ("BF16 312 -> 989.5 TFLOPS, 2039 -> 3350 GB/s").
    basis: str
    #: The model the workload ran on (its duration and cost are the measured ones).
    current: bool = False


@dataclass(frozen=True, slots=True)
class WhatIf:
    workload: Workload
    precision: str
    balance: Balance | None
    currency: str
    #: The measured duration x GPUs x this model's price; None when it is not priced.
    actual_cost: float | None
    #: Cheapest first; unestimated ones last.
    options: tuple[Option, ...]
    #: Sentences about what could not be estimated and why.
    notes: tuple[str, ...]

    def cheapest_fit(self) -> Option | None:
        """The cheapest other model that fits, with an estimate; None when there is none."""
        found = [o for o in self.options if not o.current and o.fits and o.cost is not None]
        return min(found, key=lambda o: o.cost or 0.0) if found else None

    def stands_on(self) -> str:
        bal = self.balance.text() if self.balance is not None else "no utilisation measured"
        return (
            f"an estimate from published dense {self.precision.upper()} TFLOPS and memory "
            f"bandwidth (resources/gpu_specs.toml) weighted by the measured balance: {bal}; "
            "not a benchmark, and communication between GPUs is not modelled"
        )


def margin_bytes(peak: int) -> int:
    return max(int(peak * MARGIN_SHARE), MARGIN_MIN_BYTES)


def estimate(
    workload: Workload,
    specs: GpuSpecs,
    pricing: Pricing,
    precision: str = DEFAULT_PRECISION,
) -> WhatIf:
    """Every priced model's estimate for ``workload``, cheapest first."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    notes: list[str] = []
    here = specs.for_model(workload.model)
    here_compute = here.compute(precision)[0] if here is not None else None
    bal = (
        balance(workload.gpu_util_pct, workload.mem_util_pct)
        if workload.gpu_util_pct is not None
        else None
    )
    if here is None:
        notes.append(
            f"'{workload.model or workload.device_name}' has no row in the GPU table: durations "
            "cannot be scaled from it (memory fit only)."
        )
    elif here_compute is None:
        notes.append(
            f"{here.model} has no published {precision.upper()} figure: durations cannot be "
            "scaled at that precision (try --precision fp16 or fp32)."
        )
    if bal is None:
        notes.append("GPU utilisation was not measured: durations cannot be scaled.")
    elif not bal.memory_known:
        notes.append(bal.text() + ".")
    here_row = pricing.row_for_model(workload.model) if workload.model else None
    gpu_hours = workload.duration_s * workload.gpu_count / 3600.0
    actual = gpu_hours * here_row.hourly if here_row is not None else None
    options: list[Option] = []
    seen: set[str] = set()
    for row in pricing.gpu_rows:
        if row.model.casefold() in seen or row.hourly <= 0:
            continue
        seen.add(row.model.casefold())
        there = specs.for_model(row.model)
        current = here_row is not None and row.model.casefold() == here_row.model.casefold()
        options.append(
            _option(workload, row.model, row.hourly, here, there, bal, precision, actual, current)
        )
    if any(not r.includes_energy for r in pricing.gpu_rows):
        notes.append(
            "Energy billed apart from a GPU's price is not estimated (the table has no power "
            "figure): both sides compare GPU-hours."
        )
    options.sort(key=lambda o: (o.cost is None, o.cost or 0.0, o.model))
    return WhatIf(workload, precision, bal, pricing.currency, actual, tuple(options), tuple(notes))


def _option(
    w: Workload,
    model: str,
    hourly: float,
    here: GpuSpec | None,
    there: GpuSpec | None,
    bal: Balance | None,
    precision: str,
    actual: float | None,
    current: bool,
) -> Option:
    memory = there.memory_gib if there is not None else None
    fits: bool | None = None
    reasons: list[str] = []
    if current:
        fits = True
    elif memory is None:
        reasons.append(f"no memory figure for {model} in the GPU table")
    elif w.peak_mem_bytes is None:
        reasons.append("peak memory not measured")
    else:
        need = w.peak_mem_bytes + margin_bytes(w.peak_mem_bytes)
        fits = need <= memory * GIB
        if not fits:
            reasons.append(
                f"needs {need / GIB:.1f} GiB ({w.peak_mem_bytes / GIB:.1f} peak + margin), "
                f"has {memory:g}"
            )
    duration: float | None = None
    c_ratio = b_ratio = None
    basis = ""
    if current:
        duration, c_ratio, b_ratio, basis = w.duration_s, 1.0, 1.0, "measured"
    elif there is None:
        reasons.append(f"no throughput figures for {model} in the GPU table")
    elif here is not None and bal is not None:
        c_here, col_here = here.compute(precision)
        c_there, col_there = there.compute(precision)
        bw_here, bw_there = here.bandwidth_gbs, there.bandwidth_gbs
        if c_there is None:
            reasons.append(f"no published {precision.upper()} figure for {model}")
        elif bal.memory_share > 0 and (bw_here is None or bw_there is None):
            reasons.append(f"no published memory bandwidth for {model}")
        elif c_here is not None:
            c_ratio = c_here / c_there
            b_ratio = bw_here / bw_there if bw_here and bw_there else 1.0
            duration = w.duration_s * bal.factor(c_ratio, b_ratio)
            col = col_there.upper() + (" (no TF32: FP32)" if col_there != col_here else "")
            basis = f"{col} {c_here:g} -> {c_there:g} TFLOPS"
            if bw_here and bw_there:
                basis += f", {bw_here:g} -> {bw_there:g} GB/s"
        else:
            reasons.append(f"no published {precision.upper()} figure for the GPU it ran on")
    else:
        reasons.append("the measured GPU or its utilisation is unknown: not scaled")
    cost = duration * w.gpu_count * hourly / 3600.0 if duration is not None else None
    if current:
        cost = actual
    saving = actual - cost if actual is not None and cost is not None else None
    share = saving / actual if saving is not None and actual else None
    return Option(
        model=model,
        hourly=hourly,
        memory_gib=memory,
        fits=fits,
        duration_s=duration,
        cost=cost,
        saving=saving,
        saving_share=share,
        compute_ratio=c_ratio,
        bandwidth_ratio=b_ratio,
        reason="; ".join(reasons),
        basis=basis,
        current=current,
    )
