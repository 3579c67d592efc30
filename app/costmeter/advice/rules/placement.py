"""Rules about how runs are placed on GPUs: overallocated, pack-sweep."""

from __future__ import annotations

import math
from collections import defaultdict

from costmeter.advice.facts import AdviceFacts, DeviceFacts, RunFacts
from costmeter.advice.model import Action, Evidence, Recommendation, Target
from costmeter.advice.rules.common import in_use, peak_mem_pct
from costmeter.advice.savings import device_savings
from costmeter.advice.stats import confidence, enough, evidence_series, fmt_pct, mean
from costmeter.advice.thresholds import Thresholds


def _unused(dev: DeviceFacts, t: Thresholds) -> bool:
    avg = mean(dev.gpu_util.known())
    return not in_use(dev, t) and (math.isnan(avg) or avg < t.overallocated_util_pct)


def overallocated(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """A run asked for N GPUs and some stayed unused (no process memory, utilisation under
    ``overallocated_util_pct``). Savings: the unused GPUs' hours."""
    window = max(1.0, facts.end - facts.start)
    out = []
    for run in facts.runs:
        devs = [d for d in run.devices if enough(d, t)]
        if len(run.gpus) < 2 or not devs:
            continue
        unused = [d for d in devs if _unused(d, t)]
        if not unused or len(unused) == len(devs):
            continue  # all unused is idle/broken, not over-allocation
        hours = sum(d.seconds for d in unused) / 3600.0
        first = unused[0]
        savings = device_savings(
            first,
            facts,
            window,
            gpu_hours=hours,
            kwh=sum(d.energy_kwh for d in unused),
            why=f"{len(unused)} unused GPU(s) x {hours / len(unused):.2f} h",
            gpus=len(unused),
        )
        keep = len(run.gpus) - len(unused)
        idx = ", ".join(str(d.index) for d in unused)
        out.append(
            Recommendation(
                rule="overallocated",
                title=f"Run {run.id} ({run.name}) asked for {len(run.gpus)} GPUs and left "
                f"{len(unused)} unused",
                target=Target(host=run.host, run=run.id, run_name=run.name, sweep=run.sweep),
                evidence=Evidence(
                    start=min(d.start for d in devs),
                    end=max(d.end for d in devs),
                    facts=(
                        ("GPUs asked for", str(len(run.gpus))),
                        ("GPUs unused", f"{len(unused)} (index {idx})"),
                        *(
                            (f"GPU {d.index} mean utilisation", fmt_pct(mean(d.gpu_util.known())))
                            for d in devs
                        ),
                    ),
                    values={
                        "gpus": float(len(run.gpus)),
                        "unused": float(len(unused)),
                        **{f"unused_gpu_{d.index}": 1.0 for d in unused},
                    },
                    series=tuple(
                        evidence_series(f"GPU {d.index} utilisation", "%", d.gpu_util) for d in devs
                    ),
                ),
                savings=savings,
                confidence=confidence(max(d.seconds for d in devs), 1.0, t),
                action=Action(
                    f"Ask for {keep} GPU{'s' if keep != 1 else ''} (--gpus {keep}), or make the "
                    "program use all it gets (DistributedDataParallel, device_map).",
                    kind="relaunch",
                    changes={"gpus": keep},
                ),
                detail=f"GPU {idx} held no memory of the run and did no work.",
            )
        )
    return out


def pack_sweep(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """A sweep of at least ``pack_min_runs`` runs, each under ``pack_util_pct`` mean utilisation
    and ``pack_mem_pct`` peak memory: run K per GPU. Savings: 1 - 1/K of the sweep's GPU-hours."""
    window = max(1.0, facts.end - facts.start)
    sweeps: dict[str, list[RunFacts]] = defaultdict(list)
    for run in facts.runs:
        if run.sweep:
            sweeps[run.sweep].append(run)
    out = []
    for name, runs in sorted(sweeps.items()):
        devs = [d for r in runs for d in r.devices if enough(d, t) and in_use(d, t)]
        if len(runs) < t.pack_min_runs or not devs or len(devs) < len(runs):
            continue
        utils = [mean(d.gpu_util.known()) for d in devs]
        mems = [peak_mem_pct(d) for d in devs]
        if any(math.isnan(u) or u >= t.pack_util_pct for u in utils):
            continue
        if any(m is None or m >= t.pack_mem_pct for m in mems):
            continue
        worst_u = max(utils)
        worst_m = max(m for m in mems if m is not None)
        fit = min(math.floor(100.0 / max(worst_u, 1.0)), math.floor(100.0 / max(worst_m, 1.0)))
        k = max(2, min(8, len(runs), fit))
        hours = sum(d.seconds for d in devs) / 3600.0
        first = devs[0]
        savings = device_savings(
            first,
            facts,
            window,
            gpu_hours=hours * (1 - 1 / k),
            kwh=0.0,
            why=f"{hours:.2f} GPU-h of the sweep x (1 - 1/{k}) by running {k} per GPU",
            gpus=len(devs),
        )
        out.append(
            Recommendation(
                rule="pack-sweep",
                title=f"Sweep {name}: run {k} of its {len(runs)} runs per GPU",
                target=Target(host=first.host, sweep=name),
                evidence=Evidence(
                    start=min(d.start for d in devs),
                    end=max(d.end for d in devs),
                    facts=(
                        ("Runs", str(len(runs))),
                        ("Highest mean utilisation of a run", fmt_pct(worst_u)),
                        ("Highest peak memory of a run", fmt_pct(worst_m)),
                        ("Runs per GPU", str(k)),
                    ),
                    values={
                        "runs": float(len(runs)),
                        "max_mean_util_pct": worst_u,
                        "max_peak_mem_pct": worst_m,
                        "k": float(k),
                    },
                    series=tuple(
                        evidence_series(f"Run {r.id} GPU utilisation", "%", r.devices[0].gpu_util)
                        for r in runs[:4]
                        if r.devices
                    ),
                ),
                savings=savings,
                confidence=confidence(min(d.seconds for d in devs), 1.0, t),
                action=Action(
                    f"Launch the sweep again with {k} runs per GPU (--per-gpu {k}).",
                    kind="relaunch",
                    changes={"per_gpu": k},
                ),
                detail=(
                    f"Each run used under {t.pack_util_pct:g} % of its GPU and under "
                    f"{t.pack_mem_pct:g} % of its memory: {k} fit on one GPU."
                ),
            )
        )
    return out
