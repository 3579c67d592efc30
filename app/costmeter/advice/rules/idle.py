"""Rules about a GPU held while it computes nothing: idle-gpu (it did essentially nothing over
the window) and kept-allocation (it worked, then kept its memory after the work ended).

A pause between bursts is neither: a serving replica idle for twenty minutes between requests
is doing its job; its advice is about the bursts (``rules/bursts.py``).
"""

from __future__ import annotations

import math

from costmeter.advice.facts import AdviceFacts, DeviceFacts
from costmeter.advice.model import Action, Evidence, Recommendation
from costmeter.advice.rules.common import (
    busy_share,
    did_nothing,
    held_basis,
    held_between,
    kept_span,
    quiet_stretches,
    subjects,
)
from costmeter.advice.rules.compute import util_series
from costmeter.advice.savings import device_savings, one_off
from costmeter.advice.stats import (
    confidence,
    enough,
    fmt_minutes,
    fmt_pct,
    mean,
    within,
)
from costmeter.advice.thresholds import Thresholds

GIB = 1024**3


def _power_during(dev: DeviceFacts, spans: list[tuple[float, float]]) -> float:
    watts = mean(
        [
            v
            for v, inside in zip(dev.power_w.values, within(dev.power_w.ts, spans), strict=True)
            if inside
        ]
    )
    return 0.0 if math.isnan(watts) else watts


def idle_gpu(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """Memory held while at most ``idle_max_busy_share`` of the samples reach ``idle_util_pct``
    over at least ``idle_minutes`` of quiet. Savings: the GPU's price for the quiet hours,
    scaled to a month (the GPU is held like this all along), at most the GPU's month."""
    out = []
    for s in subjects(facts):
        dev = s.dev
        if not enough(dev, t) or not did_nothing(dev, t) or _kept(dev, t) is not None:
            continue  # a GPU that worked, then kept its memory, is kept-allocation's case
        quiet = quiet_stretches(dev, t)
        idle_s = sum(b - a for a, b in quiet)
        held = held_between(dev, quiet)
        if idle_s < t.idle_minutes * 60.0 or held * 1024 < t.idle_held_mib:
            continue
        longest = max(b - a for a, b in quiet)
        watts = _power_during(dev, quiet)
        kwh = watts * idle_s / 3.6e6
        idle_share = idle_s / max(1.0, dev.seconds)
        busy = busy_share(dev, t)
        savings = device_savings(
            dev,
            facts,
            s.window_s,
            gpu_hours=idle_s / 3600.0,
            kwh=kwh,
            why=f"1 GPU x {idle_s / 3600:.2f} h idle while holding memory",
        )
        out.append(
            Recommendation(
                rule="idle-gpu",
                title=f"Release {s.about}: it holds {held:.1f} GiB and computes nothing",
                target=s.target,
                evidence=Evidence(
                    start=dev.start,
                    end=dev.end,
                    facts=(
                        ("Idle while holding memory", fmt_minutes(idle_s)),
                        ("Share of the time", fmt_pct(idle_share * 100)),
                        (f"Samples at {t.idle_util_pct:g} % or more", fmt_pct(busy * 100)),
                        ("Longest idle stretch", fmt_minutes(longest)),
                        ("Memory held while idle (median)", f"{held:.1f} GiB"),
                        ("Memory held from", held_basis(dev)),
                        ("Power while idle", f"{watts:.0f} W"),
                    ),
                    values={
                        "idle_s": idle_s,
                        "idle_share": idle_share,
                        "busy_share": busy,
                        "longest_idle_s": longest,
                        "held_gib": held,
                        "idle_power_w": watts,
                    },
                    series=util_series(s, t.idle_util_pct),
                ),
                savings=savings,
                confidence=confidence(idle_s, min(1.0, 0.5 + idle_share), t),
                action=Action(
                    "Stop the process holding the GPU (a notebook kernel, a replica nobody "
                    "calls, a finished job), or free its tensors; give the GPU back if it is "
                    "rented."
                ),
                detail=(
                    f"For {fmt_minutes(idle_s)} of {fmt_minutes(dev.seconds)} the GPU ran under "
                    f"{t.idle_util_pct:g} % while {held:.1f} GiB stayed held on it, so "
                    "nobody else could use it."
                ),
            )
        )
    return out


def _kept(dev: DeviceFacts, t: Thresholds) -> tuple[tuple[float, float], float] | None:
    """``kept_span`` and the memory held during it (GiB), when that is real memory."""
    span = kept_span(dev, t)
    if span is None:
        return None
    held = held_between(dev, [span])
    return (span, held) if held * 1024 >= t.idle_held_mib else None


def kept_allocation(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """A GPU that worked and has been quiet since, holding memory, for ``kept_span``. Savings:
    what that stretch cost, once: it is a waste that happened, not a monthly pattern."""
    out = []
    for s in subjects(facts):
        dev = s.dev
        kept = _kept(dev, t) if enough(dev, t) else None
        if kept is None:
            continue
        span, held = kept
        a, b = span
        kept_s = b - a
        watts = _power_during(dev, [span])
        kwh = watts * kept_s / 3.6e6
        pauses = quiet_stretches(dev, t)[:-1]
        longest_pause = max((y - x for x, y in pauses), default=0.0)
        savings = one_off(
            dev,
            facts,
            gpu_hours=kept_s / 3600.0,
            kwh=kwh,
            why=f"1 GPU x {kept_s / 3600:.2f} h held since its last work",
        )
        out.append(
            Recommendation(
                rule="kept-allocation",
                title=f"{s.about} has held {held:.1f} GiB for {fmt_minutes(kept_s)} since its "
                "work ended",
                target=s.target,
                evidence=Evidence(
                    start=dev.start,
                    end=dev.end,
                    facts=(
                        ("Quiet since its last work", fmt_minutes(kept_s)),
                        ("Longest pause before that", fmt_minutes(longest_pause)),
                        ("Memory held since (median)", f"{held:.1f} GiB"),
                        ("Memory held from", held_basis(dev)),
                        ("Busy share before", fmt_pct(busy_share(dev, t) * 100)),
                    ),
                    values={
                        "kept_s": kept_s,
                        "kept_start": a,
                        "longest_pause_s": longest_pause,
                        "held_gib": held,
                        "idle_power_w": watts,
                    },
                    series=util_series(s, t.idle_util_pct),
                ),
                savings=savings,
                confidence=confidence(kept_s, 1.0, t),
                action=Action(
                    "The work ended but the memory is still held: stop the process (or scale "
                    "the replica in) and give the GPU back if it is rented. If more work is "
                    "coming soon, snooze this."
                ),
                detail=(
                    f"The GPU worked until {fmt_minutes(kept_s)} before the end of the window "
                    f"and has been quiet since, {t.kept_lull_factor:g}x longer than any pause "
                    f"before, with {held:.1f} GiB held. The cost shown is that stretch, once."
                ),
            )
        )
    return out
