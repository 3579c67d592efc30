"""cheaper-gpu: the same work on another GPU model would cost at least a set share less.

The estimate is worked out by the service (``DeviceFacts.whatif``: published dense TFLOPS and
memory bandwidth weighted by the measured compute/memory balance, memory fit with a margin);
this rule picks the cheapest alternative, checks the share and states what it stands on.
"""

from __future__ import annotations

from costmeter.advice.facts import AdviceFacts, GpuAlternative, WhatIfFacts
from costmeter.advice.model import HOURS_PER_MONTH, Action, Evidence, Recommendation, Savings
from costmeter.advice.rules.common import Subject, in_use, subjects
from costmeter.advice.savings import month_factor
from costmeter.advice.stats import confidence, enough, evidence_series, fmt_minutes, fmt_pct
from costmeter.advice.thresholds import Thresholds


def article(model: str) -> str:
    """ "an" before a model name read letter by letter with a vowel sound (an H100, an L4)."""
    return "an" if model[:1].upper() in "AEFHILMNORSX" else "a"


def cheaper_gpu(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """A GPU in use alone, or the GPU of a run that succeeded on one GPU, whose work another
    priced model is estimated to do for at least ``cheaper_gpu_min_saving`` less, with its
    peak memory (plus a margin) fitting. Savings: the GPU's hours in the window scaled to a
    month (capped at a month) x its price x the estimated share saved."""
    out = []
    for s in subjects(facts):
        dev, w = s.dev, s.dev.whatif
        if w is None or not w.alternatives or w.cost <= 0:
            continue
        if s.run is not None and (s.run.status != "succeeded" or len(s.run.devices) > 1):
            # Still going or failed: its whole work is not known. On several GPUs: the
            # communication between them is not modelled (whatif shows it, with that caveat).
            continue
        if not enough(dev, t) or not in_use(dev, t):
            continue
        best = w.alternatives[0]
        share = 1.0 - best.cost / w.cost
        if share < t.cheaper_gpu_min_saving:
            continue
        out.append(_recommendation(s, w, best, share, facts, t))
    return out


def _savings(s: Subject, w: WhatIfFacts, best: GpuAlternative, share: float, cur: str) -> Savings:
    dev = s.dev
    hours = dev.seconds / 3600.0
    f = month_factor(s.window_s)
    hours_m = min(hours * f, HOURS_PER_MONTH)
    money = hours_m * dev.hourly_price * share
    formula = (
        f"{hours:.2f} GPU-h in {s.window_s / 3600:.1f} h observed x {f:.1f} = "
        f"{hours_m:.1f} GPU-h/month (at most {HOURS_PER_MONTH}) x {dev.hourly_price:.2f} "
        f"{cur}/h x {share:.0%} estimated saving on {best.model} = {money:.2f} {cur}/month "
        "(GPU-hours only: energy billed apart is not estimated)"
    )
    return Savings(money, cur, 0.0, formula)


def _recommendation(
    s: Subject,
    w: WhatIfFacts,
    best: GpuAlternative,
    share: float,
    facts: AdviceFacts,
    t: Thresholds,
) -> Recommendation:
    dev = s.dev
    cur = facts.currency
    balance = (
        f"{w.busy_share:.0%} busy, {w.memory_share:.0%} of it memory-bound"
        if w.memory_known
        else f"{w.busy_share:.0%} busy (memory-controller not measured: compute only)"
    )
    slower = best.duration_s / dev.seconds if dev.seconds > 0 else 1.0
    return Recommendation(
        rule="cheaper-gpu",
        title=f"{s.about} would cost about {share:.0%} less on {article(best.model)} "
        f"{best.model} (estimate)",
        target=s.target,
        evidence=Evidence(
            start=dev.start,
            end=dev.end,
            facts=(
                ("Ran on", w.model),
                ("Measured balance", balance),
                ("Peak memory", f"{w.peak_gib:.1f} GiB + {w.margin_gib:.1f} GiB margin"),
                (f"{best.model} memory", f"{best.memory_gb:g} GiB"),
                ("Table figures", best.basis),
                ("Observed", fmt_minutes(dev.seconds)),
                ("Est. duration there", f"{slower:.2f} x the measured"),
                ("Est. cost", f"{best.cost:.4g} {cur} instead of {w.cost:.4g} {cur}"),
                ("Saving", fmt_pct(share * 100.0)),
            ),
            values={
                "saving_share": share,
                "busy_share": w.busy_share,
                "memory_share": w.memory_share,
                "duration_factor": slower,
                "cost_here": w.cost,
                "cost_there": best.cost,
                "peak_gib": w.peak_gib,
            },
            series=(
                evidence_series("GPU utilisation", "%", dev.gpu_util),
                evidence_series("Memory-controller utilisation", "%", dev.mem_util),
            ),
        ),
        savings=_savings(s, w, best, share, cur),
        confidence=confidence(dev.seconds, 1.0, t),
        action=Action(
            f"Run work like this on {article(best.model)} {best.model} ({best.hourly:.2f} "
            f"{cur}/h instead of {dev.hourly_price:.2f}): about {slower:.1f}x the time for "
            f"{share:.0%} less. "
            "Measure one run there before moving everything."
        ),
        detail=(
            f"This is {w.stands_on}. Its peak memory with the margin fits the "
            f"{best.model}'s {best.memory_gb:g} GiB."
        ),
    )
