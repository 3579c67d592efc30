"""The ``cheaper-gpu`` rule's facts: each GPU's gathered work estimated on the other priced
models (``costmeter.cost.whatif``). Worked out from the series already read for the rules
(``device_windows``, one bulk call): no query of its own."""

from __future__ import annotations

import dataclasses
import math

from costmeter.advice.facts import DeviceFacts, GpuAlternative, Series, WhatIfFacts
from costmeter.cost.gpu_specs import GpuSpecs, load_gpu_specs
from costmeter.cost.pricing import Pricing
from costmeter.cost.whatif import DEFAULT_PRECISION, GIB, Workload, estimate, margin_bytes


def _mean(series: Series) -> float | None:
    known = series.known()
    return sum(known) / len(known) if known else None


def with_whatif(
    dev: DeviceFacts,
    pricing: Pricing,
    specs: GpuSpecs | None = None,
    precision: str = DEFAULT_PRECISION,
) -> DeviceFacts:
    """``dev`` with its ``whatif`` facts when they can be worked out (else unchanged)."""
    facts = whatif_facts(dev, pricing, specs or load_gpu_specs(), precision)
    return dev if facts is None else dataclasses.replace(dev, whatif=facts)


def whatif_facts(
    dev: DeviceFacts, pricing: Pricing, specs: GpuSpecs, precision: str
) -> WhatIfFacts | None:
    peaks = dev.mem_used.known()
    util = _mean(dev.gpu_util)
    if dev.price_model is None or not peaks or util is None or dev.seconds <= 0:
        return None
    peak = int(max(peaks))
    workload = Workload(
        model=dev.price_model,
        device_name=dev.name,
        duration_s=dev.seconds,
        gpu_count=1,
        peak_mem_bytes=peak,
        gpu_util_pct=util,
        mem_util_pct=_mean(dev.mem_util),
    )
    result = estimate(workload, specs, pricing, precision)
    if result.actual_cost is None or result.balance is None:
        return None
    alternatives = tuple(
        GpuAlternative(
            model=o.model,
            hourly=o.hourly,
            memory_gb=o.memory_gib or math.nan,
            duration_s=o.duration_s or 0.0,
            cost=o.cost or 0.0,
            compute_ratio=o.compute_ratio or math.nan,
            bandwidth_ratio=o.bandwidth_ratio or math.nan,
            basis=o.basis,
        )
        for o in result.options
        if not o.current
        and o.fits
        and o.cost is not None
        and o.duration_s is not None
        and o.cost < result.actual_cost
    )
    return WhatIfFacts(
        model=dev.price_model,
        precision=precision,
        cost=result.actual_cost,
        busy_share=result.balance.busy_share,
        memory_share=result.balance.memory_share,
        memory_known=result.balance.memory_known,
        peak_gib=peak / GIB,
        margin_gib=margin_bytes(peak) / GIB,
        stands_on=result.stands_on(),
        alternatives=alternatives,
    )
