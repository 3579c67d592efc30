"""Rules about GPU memory: memory-headroom (too much GPU) and memory-pressure (too little)."""

from __future__ import annotations

from costmeter.advice.facts import AdviceFacts, DeviceFacts, GpuOption
from costmeter.advice.model import Action, Evidence, Recommendation, Savings
from costmeter.advice.rules.common import in_use, peak_mem_pct, subjects
from costmeter.advice.savings import device_savings, price_difference
from costmeter.advice.stats import (
    confidence,
    enough,
    evidence_series,
    fmt_minutes,
    fmt_pct,
    gib,
    share,
    stretches_of,
)
from costmeter.advice.thresholds import Thresholds

GIB = 1024**3


def cheapest_fit(catalog: tuple[GpuOption, ...], need_gb: float, hourly: float) -> GpuOption | None:
    """The cheapest model with at least ``need_gb`` of memory that costs less than ``hourly``."""
    fits = [o for o in catalog if o.memory_gb >= need_gb and o.hourly < hourly]
    return min(fits, key=lambda o: (o.hourly, o.memory_gb)) if fits else None


def memory_headroom(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """Peak memory under ``headroom_peak_pct`` of the board. Savings: the price difference to
    the cheapest model holding peak x ``headroom_fit_factor``; none when no cheaper one fits
    (then: a larger batch, whose gain must be measured)."""
    out = []
    for s in subjects(facts):
        dev = s.dev
        pct = peak_mem_pct(dev)
        if pct is None or not enough(dev, t) or not in_use(dev, t):
            continue
        if pct >= t.headroom_peak_pct:
            continue
        peak = gib(max(dev.mem_used.known()))
        need = peak * t.headroom_fit_factor
        option = cheapest_fit(facts.catalog, need, dev.hourly_price)
        hours = dev.seconds / 3600.0
        if option is not None:
            savings = price_difference(
                hours=hours,
                hourly=dev.hourly_price,
                cheaper_hourly=option.hourly,
                cheaper_model=option.model,
                window_s=s.window_s,
                currency=facts.currency,
            )
            action = Action(
                f"Move it to a {option.model} ({option.memory_gb:g} GB holds the "
                f"{need:.1f} GiB needed), or raise the batch size to use the memory."
            )
        else:
            savings = Savings(
                0.0,
                facts.currency,
                0.0,
                f"no cheaper GPU in the price table holds {peak:.1f} GiB x "
                f"{t.headroom_fit_factor:g}; a larger batch may finish sooner, but by how "
                "much must be measured, so no saving is counted",
            )
            action = Action(
                "Raise the batch size (and the learning rate with it) to use the memory: "
                "more samples per step usually means more throughput."
            )
        used = dev.memory_gb or 0.0
        out.append(
            Recommendation(
                rule="memory-headroom",
                title=f"{s.about} uses at most {pct:.0f} % of its memory",
                target=s.target,
                evidence=Evidence(
                    start=dev.start,
                    end=dev.end,
                    facts=(
                        ("Peak memory", f"{peak:.1f} GiB of {used:.0f} GiB"),
                        ("Peak share", fmt_pct(pct)),
                        ("Needed with margin", f"{need:.1f} GiB"),
                        ("Cheapest model that fits", option.model if option else "none cheaper"),
                    ),
                    values={"peak_mem_pct": pct, "peak_gib": peak, "need_gib": need},
                    series=(
                        evidence_series(
                            "Memory used",
                            "GiB",
                            dev.mem_used,
                            scale=1 / GIB,
                            threshold=used * t.headroom_peak_pct / 100 if used else None,
                        ),
                    ),
                ),
                savings=savings,
                confidence=confidence(dev.seconds, 1.0, t),
                action=action,
                detail=(
                    f"Its peak, {peak:.1f} GiB, leaves {100 - pct:.0f} % of the board unused "
                    "the whole time."
                ),
            )
        )
    return out


def memory_pressure(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """Memory above ``pressure_mem_pct`` for ``pressure_minutes``, or a run that died out of
    memory. Savings: the GPU-hours of runs lost to out-of-memory (to be run again)."""
    out = []
    seen_runs: set[int] = set()
    for s in subjects(facts):
        dev = s.dev
        run = s.run
        oom = run is not None and run.oom
        if not dev.memory_total or not (enough(dev, t) or oom):
            continue
        limit = dev.memory_total * t.pressure_mem_pct / 100.0
        full = [
            (a, b)
            for a, b in stretches_of(dev.mem_used, [v >= limit for v in dev.mem_used.values])
            if b - a >= t.pressure_minutes * 60.0
        ]
        if not full and not oom:
            continue
        if run is not None and run.id in seen_runs:
            continue
        full_s = sum(b - a for a, b in full)
        pct = peak_mem_pct(dev) or 0.0
        hours = dev.seconds / 3600.0
        if oom:
            assert run is not None
            seen_runs.add(run.id)
            n = max(1, len(run.devices))
            savings = device_savings(
                dev,
                facts,
                s.window_s,
                gpu_hours=hours * n,
                kwh=dev.energy_kwh * n,
                why=f"{n} GPU x {hours:.2f} h lost when the run died out of memory",
                gpus=n,
            )
        else:
            savings = Savings(
                0.0,
                facts.currency,
                0.0,
                "nothing lost yet: the run has not crashed; the fix avoids losing its "
                "GPU-hours to an out-of-memory error",
            )
        why = "died out of memory" if oom else f"ran above {t.pressure_mem_pct:g} % memory"
        out.append(
            Recommendation(
                rule="memory-pressure",
                title=f"{s.about} {why}",
                target=s.target,
                evidence=Evidence(
                    start=dev.start,
                    end=dev.end,
                    facts=(
                        ("Peak memory", fmt_pct(pct)),
                        (f"Time above {t.pressure_mem_pct:g} %", fmt_minutes(full_s)),
                        ("Out-of-memory exit", "yes" if oom else "no"),
                    ),
                    values={"peak_mem_pct": pct, "full_s": full_s, "oom": float(oom)},
                    series=(
                        evidence_series(
                            "Memory used",
                            "GiB",
                            dev.mem_used,
                            scale=1 / GIB,
                            threshold=limit / GIB,
                        ),
                    ),
                ),
                savings=savings,
                confidence=1.0 if oom else confidence(dev.seconds, share_full(dev, limit), t),
                action=Action(
                    "Use mixed precision (torch.autocast with bf16/fp16), activation "
                    "checkpointing, or a smaller batch; if memory grows steadily, look for "
                    "tensors kept across steps (a leak)."
                ),
                detail=(
                    f"The run died out of memory after {fmt_minutes(dev.seconds)}: its "
                    "GPU-hours are lost and it must run again."
                    if oom
                    else f"Memory stayed above {t.pressure_mem_pct:g} % for "
                    f"{fmt_minutes(full_s)}: one more allocation and it crashes out of memory, "
                    "throwing away the GPU-hours spent so far."
                ),
            )
        )
    return out


def share_full(dev: DeviceFacts, limit: float) -> float:
    """Steadiness of a pressure finding: at least 0.5, more the longer memory stays high."""
    return 0.5 + 0.5 * share(dev.mem_used.known(), lambda v: v >= 0.8 * limit)
