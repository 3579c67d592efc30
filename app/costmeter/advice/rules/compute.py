"""Rules about how busy a GPU is: underused-gpu, input-bound, power-cap (idle: ``idle.py``)."""

from __future__ import annotations

import math

from costmeter.advice.facts import AdviceFacts
from costmeter.advice.model import Action, Evidence, EvidenceSeries, Recommendation, Savings
from costmeter.advice.rules.common import (
    Subject,
    copies_that_fit,
    held_basis,
    held_series,
    in_use,
    is_bursty,
    subjects,
)
from costmeter.advice.savings import device_savings, month_factor
from costmeter.advice.stats import (
    confidence,
    enough,
    evidence_series,
    fmt_minutes,
    fmt_pct,
    mean,
    percentile,
    share,
)
from costmeter.advice.thresholds import Thresholds

GIB = 1024**3


def util_series(s: Subject, threshold: float) -> tuple[EvidenceSeries, ...]:
    """The evidence of the utilisation rules: utilisation with its threshold, and memory held."""
    return (
        evidence_series("GPU utilisation", "%", s.dev.gpu_util, threshold=threshold),
        evidence_series("Memory held", "GiB", held_series(s.dev), scale=1 / GIB),
    )


def underused_gpu(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """p95 utilisation under ``underused_p95_pct`` on a GPU in use. Savings: pack K such jobs on
    one GPU (K = 100 / p95, at most 4, and no more than its memory holds), saving 1 - 1/K of
    its hours. None when two copies do not fit its memory, and none for a GPU that works in
    bursts (``bursty-load`` speaks for it)."""
    out = []
    for s in subjects(facts):
        dev = s.dev
        if not enough(dev, t) or not in_use(dev, t) or is_bursty(dev, t):
            continue
        util = dev.gpu_util.known()
        p95 = percentile(util, 95)
        if math.isnan(p95) or p95 >= t.underused_p95_pct:
            continue
        fit = copies_that_fit(dev, t)
        k = min(4, math.floor(100.0 / max(p95, 1.0)), fit if fit is not None else 4)
        if k < 2:
            continue  # a second copy would not fit its memory
        hours = dev.seconds / 3600.0
        savings = device_savings(
            dev,
            facts,
            s.window_s,
            gpu_hours=hours * (1 - 1 / k),
            kwh=0.0,
            why=f"{hours:.2f} GPU-h x (1 - 1/{k}) by packing {k} such jobs on one GPU",
        )
        avg = mean(util)
        out.append(
            Recommendation(
                rule="underused-gpu",
                title=f"{s.about} is mostly unused (p95 {p95:.0f} %): share it or use a "
                "smaller GPU",
                target=s.target,
                evidence=Evidence(
                    start=dev.start,
                    end=dev.end,
                    facts=(
                        ("p95 GPU utilisation", fmt_pct(p95)),
                        ("Mean GPU utilisation", fmt_pct(avg)),
                        ("Observed", fmt_minutes(dev.seconds)),
                        ("Jobs like it per GPU", str(k)),
                        ("Copies its memory holds", "unknown" if fit is None else str(fit)),
                        ("Memory held from", held_basis(dev)),
                    ),
                    values={
                        "p95_util_pct": p95,
                        "mean_util_pct": avg,
                        "k": float(k),
                        **({"copies_fit": float(fit)} if fit is not None else {}),
                    },
                    series=util_series(s, t.underused_p95_pct),
                ),
                savings=savings,
                confidence=confidence(
                    dev.seconds, share(util, lambda v: v < t.underused_p95_pct), t
                ),
                action=Action(
                    f"Run up to {k} jobs like this on one GPU (or use MPS/MIG), or move it to a "
                    "smaller, cheaper GPU.",
                    kind="relaunch" if s.run is not None else "none",
                    changes={"per_gpu": k} if s.run is not None else {},
                ),
                detail=(
                    f"Even its busiest 5 % of samples stay under {t.underused_p95_pct:g} %: "
                    f"{k} such jobs would fit on one GPU, in compute and in memory."
                ),
            )
        )
    return out


def input_bound(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """Mean utilisation under ``input_util_pct`` while the GPU's processes keep at least
    ``input_cpu_cores`` cores busy. Savings: the same work at ``input_fed_util_pct``."""
    out = []
    for s in subjects(facts):
        dev = s.dev
        if not enough(dev, t) or not in_use(dev, t):
            continue
        util = dev.gpu_util.known()
        cpu = dev.proc_cpu.known()
        avg = mean(util)
        cores = percentile(cpu, 50) / 100.0 if cpu else math.nan
        if math.isnan(avg) or math.isnan(cores):
            continue
        if avg >= t.input_util_pct or cores < t.input_cpu_cores:
            continue
        hours = dev.seconds / 3600.0
        saved = hours * max(0.0, 1.0 - avg / t.input_fed_util_pct)
        savings = device_savings(
            dev,
            facts,
            s.window_s,
            gpu_hours=saved,
            kwh=0.0,
            why=(
                f"{hours:.2f} GPU-h x (1 - {avg:.0f} % / {t.input_fed_util_pct:g} % fed "
                "utilisation)"
            ),
        )
        agree = share(cpu, lambda v: v / 100.0 >= t.input_cpu_cores)
        out.append(
            Recommendation(
                rule="input-bound",
                title=f"{s.about} waits for data: the CPU side is the bottleneck",
                target=s.target,
                evidence=Evidence(
                    start=dev.start,
                    end=dev.end,
                    facts=(
                        ("Mean GPU utilisation", fmt_pct(avg)),
                        ("CPU of its processes (median)", f"{cores:.1f} cores"),
                        ("Observed", fmt_minutes(dev.seconds)),
                    ),
                    values={"mean_util_pct": avg, "proc_cpu_cores": cores},
                    series=(
                        evidence_series(
                            "GPU utilisation", "%", dev.gpu_util, threshold=t.input_util_pct
                        ),
                        evidence_series(
                            "CPU of its processes",
                            "cores",
                            dev.proc_cpu,
                            scale=0.01,
                            threshold=t.input_cpu_cores,
                        ),
                    ),
                ),
                savings=savings,
                confidence=confidence(dev.seconds, agree, t),
                action=Action(
                    "Feed the GPU faster: more data-loader workers (num_workers), "
                    "pin_memory=True, cache decoded data, or move augmentation to the GPU.",
                ),
                detail=(
                    f"The GPU averaged {avg:.0f} % while its processes kept {cores:.1f} CPU "
                    "cores busy: it waits for the input pipeline. A smaller GPU would not help."
                ),
            )
        )
    return out


def power_cap(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """A memory-bound GPU (memory-controller use high, kernel use moderate) near its power limit.
    Energy at the lower limit: P_new x T x (1 + slowdown) against P_now x T."""
    out = []
    for s in subjects(facts):
        dev = s.dev
        limit = dev.power_limit_w
        if not enough(dev, t) or not in_use(dev, t) or not limit:
            continue
        mem_u, sm_u, power = (
            mean(dev.mem_util.known()),
            mean(dev.gpu_util.known()),
            mean(dev.power_w.known()),
        )
        if any(math.isnan(v) for v in (mem_u, sm_u, power)):
            continue
        if mem_u < t.powercap_mem_util_pct or sm_u > t.powercap_sm_max_pct:
            continue
        if power < t.powercap_power_share * limit:
            continue
        new_limit = t.powercap_target_share * limit
        slow = t.powercap_expected_slowdown
        hours = dev.seconds / 3600.0
        kwh = max(0.0, (power - new_limit * (1 + slow)) * hours / 1000.0)
        f = month_factor(s.window_s)
        kwh_m = kwh * f
        energy_money = 0.0 if dev.energy_in_price else kwh_m * facts.tariff_per_kwh
        time_money = slow * hours * f * dev.hourly_price
        money = max(0.0, energy_money - time_money)
        formula = (
            f"energy: ({power:.0f} W - {new_limit:.0f} W x {1 + slow:.2f}) x {hours:.2f} h "
            f"observed x {f:.1f} = {kwh_m:.1f} kWh/month"
            + (
                " (included in the GPU's price)"
                if dev.energy_in_price
                else f" x {facts.tariff_per_kwh:.3f} = {energy_money:.2f} {facts.currency}"
            )
            + f"; time: {slow:.0%} longer x {hours * f:.1f} GPU-h/month x "
            f"{dev.hourly_price:.2f} = {time_money:.2f} {facts.currency}; "
            f"net {money:.2f} {facts.currency}/month (never below 0)"
        )
        if kwh <= 0:
            continue
        share_time = share(dev.mem_util.known(), lambda v: v >= t.powercap_mem_util_pct)
        index = dev.index
        out.append(
            Recommendation(
                rule="power-cap",
                title=f"Lower the power limit of {s.about}: it is memory-bound at "
                f"{power / limit:.0%} power",
                target=s.target,
                evidence=Evidence(
                    start=dev.start,
                    end=dev.end,
                    facts=(
                        ("Memory-controller utilisation", fmt_pct(mem_u)),
                        ("Kernel (SM) utilisation", fmt_pct(sm_u)),
                        ("Mean power", f"{power:.0f} W of {limit:.0f} W"),
                        ("Suggested limit", f"{new_limit:.0f} W"),
                        ("Expected time change", f"+{slow:.0%}"),
                        (
                            "Expected energy change",
                            f"-{kwh / max(1e-9, power * hours / 1000):.0%}",
                        ),
                    ),
                    values={
                        "mem_util_pct": mem_u,
                        "sm_util_pct": sm_u,
                        "power_w": power,
                        "power_limit_w": limit,
                        "suggested_limit_w": new_limit,
                        "expected_slowdown": slow,
                    },
                    series=(
                        evidence_series("Power", "W", dev.power_w, threshold=new_limit),
                        evidence_series(
                            "Memory-controller utilisation",
                            "%",
                            dev.mem_util,
                            threshold=t.powercap_mem_util_pct,
                        ),
                    ),
                ),
                savings=Savings(money, facts.currency, kwh_m, formula),
                confidence=confidence(dev.seconds, share_time, t) * 0.8,
                action=Action(
                    f"Set a lower power limit (sudo nvidia-smi -i {index} -pl "
                    f"{new_limit:.0f}), then measure: compare the run's time per step and "
                    "the energy counter (nvidia-smi --query-gpu=total_energy_consumption) "
                    "before and after over the same number of steps."
                ),
                detail=(
                    "Memory-bound kernels wait on memory, not on the SM clock: a lower power "
                    f"limit should cost about {slow:.0%} in time and save energy. This is an "
                    "estimate: measure it on your GPU."
                ),
            )
        )
    return out
