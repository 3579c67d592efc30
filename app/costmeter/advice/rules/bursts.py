"""bursty-load: GPUs that work in bursts (serving replicas between requests), judged together.

Replicas of one GPU model are one group: their utilisation is summed per minute (the work the
group did, in GPUs' worth), and the group is sized for that load at ``burst_target_util_pct``:
a fixed number of GPUs (consolidation) or a number that follows the load with a floor for the
lulls (autoscaling). A lone bursty GPU is advised to share its GPU when its memory allows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from costmeter.advice.facts import AdviceFacts, DeviceFacts, Series
from costmeter.advice.model import Action, Evidence, EvidenceSeries, Recommendation, Target
from costmeter.advice.rules.common import (
    busy_share,
    copies_that_fit,
    held_basis,
    held_gib,
    is_bursty,
    quiet_stretches,
    short_name,
    subjects,
)
from costmeter.advice.savings import device_savings
from costmeter.advice.stats import (
    confidence,
    enough,
    evidence_series,
    fmt_minutes,
    fmt_pct,
    mean,
    percentile,
    step_s,
)
from costmeter.advice.thresholds import Thresholds


@dataclass(frozen=True, slots=True)
class GroupLoad:
    """A group's work per time bucket: summed utilisation (%) and GPUs seen, oldest first."""

    ts: tuple[float, ...]
    util_sum: tuple[float, ...]
    present: tuple[int, ...]
    bucket_s: float

    @property
    def held_gpu_hours(self) -> float:
        return sum(self.present) * self.bucket_s / 3600.0


def group_load(devs: Sequence[DeviceFacts]) -> GroupLoad:
    """Utilisation summed across ``devs`` per minute (or per sample step when coarser); a GPU
    with no sample in a bucket is not counted as held there."""
    bucket = max([60.0] + [step_s(d.gpu_util) for d in devs])
    sums: dict[float, float] = defaultdict(float)
    present: dict[float, int] = defaultdict(int)
    floor = math.floor
    for d in devs:
        known = [(t, v) for t, v in zip(d.gpu_util.ts, d.gpu_util.values, strict=True) if v == v]
        keys = [floor(t / bucket) * bucket for t, _v in known]
        if len(set(keys)) == len(keys):  # one sample per bucket: it is the bucket's mean
            for key, (_t, v) in zip(keys, known, strict=True):
                sums[key] += v
                present[key] += 1
            continue
        per: dict[float, list[float]] = defaultdict(list)
        for key, (_t, v) in zip(keys, known, strict=True):
            per[key].append(v)
        for key, vals in per.items():
            sums[key] += math.fsum(vals) / len(vals)
            present[key] += 1
    keys = sorted(sums)
    return GroupLoad(
        tuple(keys), tuple(sums[k] for k in keys), tuple(present[k] for k in keys), bucket
    )


def autoscaled_gpu_hours(load: GroupLoad, t: Thresholds) -> float:
    """GPU-hours if the group were resized every ``burst_scale_minutes`` to the GPUs its peak
    minute in that interval needs at the target utilisation, never under the floor and never
    over the GPUs it held then."""
    interval = max(load.bucket_s, t.burst_scale_minutes * 60.0)
    by_interval: dict[float, list[int]] = defaultdict(list)
    for i, ts in enumerate(load.ts):
        by_interval[math.floor(ts / interval)].append(i)
    total = 0.0
    for idx in by_interval.values():
        peak = max(load.util_sum[i] for i in idx)
        need = max(t.burst_floor_gpus, math.ceil(peak / t.burst_target_util_pct - 1e-9))
        total += sum(min(need, load.present[i]) for i in idx) * load.bucket_s / 3600.0
    return total


def _groups(facts: AdviceFacts, t: Thresholds) -> dict[tuple[str, int | None], list[DeviceFacts]]:
    groups: dict[tuple[str, int | None], list[DeviceFacts]] = defaultdict(list)
    for s in subjects(facts):
        if s.run is None and enough(s.dev, t) and is_bursty(s.dev, t):
            groups[(s.dev.name, s.dev.memory_total)].append(s.dev)
    return groups


def bursty_members(facts: AdviceFacts, t: Thresholds) -> set[str]:
    """UUIDs of the GPUs ``bursty_load`` judges in a group (whether or not it advises one)."""
    return {d.uuid for devs in _groups(facts, t).values() for d in devs}


def _target(devs: Sequence[DeviceFacts]) -> Target:
    hosts = sorted({d.host for d in devs})
    first = devs[0]
    if len(devs) == 1:
        return Target(host=first.host, device=first.index, uuid=first.uuid, device_name=first.name)
    host = hosts[0] if len(hosts) == 1 else f"{len(hosts)} hosts"
    # Keyed by the model, not the count, so a dismissal survives a replica more or less.
    return Target(host=host, group=first.name)


def bursty_load(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """Bursty GPUs of one model, sized together for their summed per-minute load. Savings: the
    GPU-hours held beyond the autoscaled need, scaled to a month, at most the group's month."""
    out = []
    window = max(1.0, facts.end - facts.start)
    for (_name, _total), devs in sorted(_groups(facts, t).items(), key=lambda kv: kv[0][0]):
        load = group_load(devs)
        if not load.ts:
            continue
        rec = _group_advice(facts, t, devs, load, window) if len(devs) > 1 else None
        if rec is None and len(devs) == 1:
            rec = _share_advice(facts, t, devs[0], load, window)
        if rec is not None:
            out.append(rec)
    return out


def _load_series(load: GroupLoad) -> tuple[EvidenceSeries, ...]:
    work = Series(load.ts, tuple(v / 100.0 for v in load.util_sum))
    held = Series(load.ts, tuple(float(n) for n in load.present))
    return (
        evidence_series("Work done (GPUs' worth)", "GPUs", work),
        evidence_series("GPUs held", "GPUs", held),
    )


def _figures(
    t: Thresholds, devs: Sequence[DeviceFacts], load: GroupLoad
) -> tuple[list[tuple[str, str]], dict[str, float]]:
    p50, p99 = percentile(load.util_sum, 50), percentile(load.util_sum, 99)
    peak = max(load.util_sum)
    busy = percentile([busy_share(d, t) for d in devs], 50)
    lull = max(max((b - a for a, b in quiet_stretches(d, t)), default=0.0) for d in devs)
    held = percentile([held_gib(d) for d in devs], 50)
    facts = [
        ("Busy share of a GPU (median)", fmt_pct(busy * 100)),
        ("Longest lull", fmt_minutes(lull)),
        (
            "Work/min p50/p99/max",
            f"{p50 / 100:.1f} / {p99 / 100:.1f} / {peak / 100:.1f} GPUs",
        ),
        ("Memory held per GPU (median)", f"{held:.1f} GiB"),
        ("Memory held from", held_basis(devs[0])),
    ]
    values = {
        "busy_share": busy,
        "longest_lull_s": lull,
        "util_sum_p50": p50,
        "util_sum_p99": p99,
        "util_sum_max": peak,
        "held_gib": held,
    }
    return facts, values


def _group_advice(
    facts: AdviceFacts,
    t: Thresholds,
    devs: Sequence[DeviceFacts],
    load: GroupLoad,
    window: float,
) -> Recommendation | None:
    target_pct = t.burst_target_util_pct
    n = len(devs)
    p99 = percentile(load.util_sum, 99)
    fixed = max(1, math.ceil(p99 / target_pct - 1e-9))
    held_h = load.held_gpu_hours
    auto_h = autoscaled_gpu_hours(load, t)
    saved_h = max(0.0, held_h - auto_h)
    mean_held = mean([float(x) for x in load.present])
    if saved_h <= 0.05 * held_h:
        return None  # the group is already about the size its load needs
    first = devs[0]
    span = load.ts[-1] + load.bucket_s - load.ts[0]
    floor = int(t.burst_floor_gpus)
    savings = device_savings(
        first,
        facts,
        max(window, span),
        gpu_hours=saved_h,
        kwh=0.0,
        why=(
            f"{held_h:.1f} GPU-h held - {auto_h:.1f} GPU-h autoscaled (resized every "
            f"{t.burst_scale_minutes:g} min for its peak minute at {target_pct:g} %, floor "
            f"{floor})"
        ),
        gpus=n,
    )
    figures, values = _figures(t, devs, load)
    figures = [
        ("GPUs in the group", f"{n} (about {mean_held:.1f} held at a time)"),
        *figures,
        (f"GPUs needed (p99, {target_pct:g} %)", str(fixed)),
        ("GPU-hours held / autoscaled", f"{held_h:.1f} / {auto_h:.1f}"),
    ]
    values.update(
        {
            "gpus": float(n),
            "mean_held_gpus": mean_held,
            "gpus_needed_p99": float(fixed),
            "held_gpu_hours": held_h,
            "autoscaled_gpu_hours": auto_h,
        }
    )
    name = short_name(first.name)
    return Recommendation(
        rule="bursty-load",
        title=f"{n} {name} GPUs work in bursts: their load needs {fixed} at {target_pct:g} %",
        target=_target(devs),
        evidence=Evidence(
            start=load.ts[0],
            end=load.ts[-1] + load.bucket_s,
            facts=tuple(figures),
            values=values,
            series=_load_series(load),
        ),
        savings=savings,
        confidence=round(confidence(span, 1.0, t) * 0.8, 2),
        action=Action(
            f"Autoscale the replicas on load between {floor} and {max(fixed, floor)} GPUs "
            f"(keep {floor} warm for the lulls)"
            + (f", or consolidate onto {fixed}" if fixed < n else "")
            + "; replicas that serve small models can also share a GPU (MPS or time-slicing)."
        ),
        detail=(
            f"Summed per minute, the {n} GPUs did at most {p99 / 100:.2f} GPUs' worth of work "
            f"in 99 % of minutes, yet about {mean_held:.1f} stayed held, lulls included. "
            "The autoscaled figure assumes a replica starts within the scaling interval."
        ),
    )


def _share_advice(
    facts: AdviceFacts,
    t: Thresholds,
    dev: DeviceFacts,
    load: GroupLoad,
    window: float,
) -> Recommendation | None:
    """One bursty GPU: share it with another job like it when compute and memory allow."""
    avg = mean(dev.gpu_util.known())
    fit = copies_that_fit(dev, t)
    if math.isnan(avg) or fit is None:
        return None
    k = min(4, fit, math.floor(t.burst_target_util_pct / max(avg, 1.0)))
    if k < 2:
        return None
    hours = dev.seconds / 3600.0
    savings = device_savings(
        dev,
        facts,
        max(window, dev.seconds),
        gpu_hours=hours * (1 - 1 / k),
        kwh=0.0,
        why=f"{hours:.2f} GPU-h x (1 - 1/{k}) by sharing the GPU between {k} such jobs",
    )
    figures, values = _figures(t, [dev], load)
    figures.extend([("Mean utilisation", fmt_pct(avg)), ("Copies its memory holds", str(fit))])
    values.update({"mean_util_pct": avg, "copies_fit": float(fit), "k": float(k)})
    return Recommendation(
        rule="bursty-load",
        title=f"GPU {dev.index} ({short_name(dev.name)}) works in bursts: share it between {k} "
        "such jobs",
        target=_target([dev]),
        evidence=Evidence(
            start=dev.start,
            end=dev.end,
            facts=tuple(figures),
            values=values,
            series=_load_series(load),
        ),
        savings=savings,
        confidence=round(confidence(dev.seconds, 1.0, t) * 0.8, 2),
        action=Action(
            f"Run {k} jobs like this one on the GPU (MPS or time-slicing): its memory holds "
            f"{fit} copies and its mean load is {avg:.0f} %."
        ),
        detail=(
            "Its bursts are real work, so it is not idle; between them the GPU waits. "
            "Bursts of jobs sharing a GPU can collide: measure the latency you need."
        ),
    )
