"""Precision and recall of the advice rules against simulated workloads whose truth is known.

Run: .venv/bin/python bench/bench_advice_accuracy.py [--seeds 3] [--hours 1,3] [--interval 10]

Every simulated profile runs on three GPU models, alone (no run), for each history length and
seed; run scenarios (over-allocation, sweeps, budgets, an out-of-memory exit, and their healthy
counterparts) are added as run rows over their own simulated GPUs. Each case's ground truth is
stated below (``PROFILE_TRUTH``, ``RUN_SCENARIOS``); a recommendation counts as a true positive
when its rule is in the truth of the case it targets, a false positive otherwise, and every
truth the rules missed is a false negative.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from costmeter.advice.engine import RULES
from costmeter.advice.facts import DeviceFacts
from costmeter.advice.model import Recommendation
from costmeter.advice.rules.common import peak_mem_pct
from costmeter.advice.stats import mean, percentile, stretches
from costmeter.config import Config
from costmeter.service.advice import advise
from costmeter.service.advice_facts import gather_facts
from costmeter.service.advice_testing import History, RunPlan, add_run, write_history
from costmeter.store import Store

#: What each profile must trigger when it runs alone on a GPU. Why:
#: free: no process, nothing held (an empty GPU is a capacity question, not advice);
#: idle: a process holds memory and computes nothing -> idle-gpu (which replaces the under-used
#:   and headroom advice for it);
#: train: steady 90-98% on 70% of memory: right-sized, clean;
#: bursty: busy phases reach 85-99% (p95 high), idle phases last 30 s to a few minutes (< 10 min),
#:   55% memory: clean;
#: input-bound: GPU 20-35% while the process keeps 3-4 cores busy -> input-bound (under-used is
#:   the symptom, not the fix: suppressed);
#: memory-leak: memory grows to 97% of the board in 2 h -> memory-pressure once the history is
#:   long enough to see it (``LEAK_FULL_H``), nothing before;
#: memory-bound: memory controller 86-96%, SMs 45-60%, power near the limit -> power-cap;
#: light: 8-22% busy, 10% of memory -> underused-gpu and memory-headroom.
PROFILE_TRUTH: dict[str, frozenset[str]] = {
    "free": frozenset(),
    "idle": frozenset({"idle-gpu"}),
    "train": frozenset(),
    "bursty": frozenset(),
    "input-bound": frozenset({"input-bound"}),
    "memory-leak": frozenset({"memory-pressure"}),
    "memory-bound": frozenset({"power-cap"}),
    "light": frozenset({"underused-gpu", "memory-headroom"}),
}
#: Rules whose truth is no property of a profile: cheaper-gpu depends on the model a profile runs
#: on and the price table (tests/unit/test_advice_cheaper_gpu.py checks it on real data). Where
#: it fires it stands for the memory-headroom it replaces.
NOT_SCORED = frozenset({"cheaper-gpu"})

#: Hours after which a leaking process has held over 95% of the board for a while.
LEAK_FULL_H = 2.1
MODELS = ("a100", "h100", "l4", "t4", "rtx4090", "a10g")
MODELS_PER_PROFILE = 3


@dataclass
class Scenario:
    """Runs over their own GPUs; truth by case key (see ``case_of``)."""

    name: str
    gpus: tuple[str, ...]
    runs: list[RunPlan]
    truth: dict[tuple[str, ...], frozenset[str]] = field(default_factory=dict)


def run_scenarios(end_s: float) -> list[Scenario]:
    finish = end_s - 60
    lr = [RunPlan(f"lr-{i}", (i,), 0, finish, sweep="lr") for i in range(3)]
    big = [RunPlan(f"big-{i}", (i,), 0, finish, sweep="big") for i in range(2)]
    oom_msg = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    return [
        Scenario(
            "ddp-half-used",
            ("a100:train", "a100:free"),
            [RunPlan("ddp", (0, 1), 0, finish)],
            {("run", "ddp"): frozenset({"overallocated"})},
        ),
        Scenario("ddp-ok", ("h100:train", "h100:train"), [RunPlan("ddp-ok", (0, 1), 0, finish)]),
        Scenario(
            "small-sweep",
            ("l4:light", "l4:light", "l4:light"),
            lr,
            {("sweep", "lr"): frozenset({"pack-sweep"})},
        ),
        Scenario("big-sweep", ("h100:train", "h100:train"), big),
        Scenario(
            "over-budget",
            ("a100:train",),
            [RunPlan("budgeted", (0,), 0, None, spec={"budget": 0.5})],
            {("run", "budgeted"): frozenset({"budget-forecast"})},
        ),
        Scenario(
            "in-budget",
            ("a100:train",),
            [RunPlan("rich", (0,), 0, None, spec={"budget": 1e4})],
        ),
        Scenario(
            "oom",
            ("h100:train",),
            [RunPlan("oom", (0,), 0, finish / 2, status="failed", exit_code=1, message=oom_msg)],
            {("run", "oom", "0"): frozenset({"memory-pressure"})},
        ),
    ]


def case_of(r: Recommendation, offsets: dict[int, int]) -> tuple[str, ...]:
    """The case a recommendation is about: a lone GPU, a run (or one GPU of it), a sweep."""
    t = r.target
    if t.run_name is not None:
        if t.device is None:
            return ("run", t.run_name)
        return ("run", t.run_name, str(t.device - offsets.get(t.device, 0)))
    if t.sweep is not None:
        return ("sweep", t.sweep)
    return ("dev", str(t.device))


@dataclass
class Tally:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    fp_cases: list[str] = field(default_factory=list)
    fn_cases: list[str] = field(default_factory=list)
    #: profile -> signal -> values seen (for the margins table).
    signals: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, label: str, truth: frozenset[str], found: set[str]) -> None:
        for rule in found & truth:
            self.tp[rule] += 1
        for rule in found - truth:
            self.fp[rule] += 1
            self.fp_cases.append(f"{rule} on {label}")
        for rule in truth - found:
            self.fn[rule] += 1
            self.fn_cases.append(f"{rule} on {label}")


def evaluate(hours: float, seed: int, interval: float, tmp: Path, tally: Tally) -> float:
    profiles = list(PROFILE_TRUTH)
    spec: list[str] = []
    truth: dict[tuple[str, ...], frozenset[str]] = {}
    labels: dict[tuple[str, ...], str] = {}
    for i, profile in enumerate(profiles):
        for j in range(MODELS_PER_PROFILE):
            model = MODELS[(i + j * 2 + seed) % len(MODELS)]
            key: tuple[str, ...] = ("dev", str(len(spec)))
            expected = PROFILE_TRUTH[profile]
            if profile == "memory-leak" and hours < LEAK_FULL_H:
                expected = frozenset()
            truth[key], labels[key] = expected, f"{model}:{profile}"
            spec.append(f"{model}:{profile}")
    scenarios = run_scenarios(hours * 3600)
    placed: list[tuple[Scenario, int]] = []
    offsets: dict[int, int] = {}
    for sc in scenarios:
        base = len(spec)
        placed.append((sc, base))
        for k, gpu in enumerate(sc.gpus):
            offsets[base + k] = base
            spec.append(gpu)
    history = write_history(
        tmp / f"h{hours}-{seed}.db", spec, hours=hours, interval_s=interval, seed=seed
    )
    for sc, base in placed:
        for plan in sc.runs:
            shifted = RunPlan(**{**plan.__dict__, "gpus": tuple(g + base for g in plan.gpus)})
            add_run(history, shifted)
        cases: set[tuple[str, ...]] = {("run", p.name) for p in sc.runs}
        cases |= {("run", p.name, str(g)) for p in sc.runs for g in p.gpus}
        cases |= {("sweep", p.sweep) for p in sc.runs if p.sweep}
        for case in cases:
            truth[case] = sc.truth.get(case, frozenset())
            labels[case] = f"{sc.name} {' '.join(case)}"
    _signals(history, labels, tally)
    return _score(history, truth, labels, offsets, tally)


def _signals(history: History, labels: dict[tuple[str, ...], str], tally: Tally) -> None:
    """The figures each rule compares with its threshold, per profile (GPUs alone only)."""
    with Store.open(history.db) as store:
        facts, _ = gather_facts(store, Config(), history.start, history.end + 1)
    for dev in facts.devices:
        profile = labels.get(("dev", str(dev.index)), "").partition(":")[2]
        if profile:
            into = tally.signals.setdefault(profile, {})
            for name, value in device_signals(dev).items():
                into.setdefault(name, []).append(value)


def device_signals(dev: DeviceFacts) -> dict[str, float]:
    util = dev.gpu_util.known()
    idle = [b - a for a, b in stretches(dev.gpu_util, lambda v: v < 5.0)]
    cpu = dev.proc_cpu.known()
    power = mean(dev.power_w.known())
    return {
        "p95 util %": percentile(util, 95),
        "mean util %": mean(util),
        "longest <5% min": max(idle, default=0.0) / 60.0,
        "peak mem %": peak_mem_pct(dev) or 0.0,
        "proc CPU cores": percentile(cpu, 50) / 100.0 if cpu else 0.0,
        "mem-ctrl util %": mean(dev.mem_util.known()),
        "power / limit": power / dev.power_limit_w if dev.power_limit_w else 0.0,
    }


def _score(
    history: History,
    truth: dict[tuple[str, ...], frozenset[str]],
    labels: dict[tuple[str, ...], str],
    offsets: dict[int, int],
    tally: Tally,
) -> float:
    t0 = time.perf_counter()
    with Store.open(history.db) as store:
        result = advise(store, Config(), since_s=86400, now=history.end + 1)
    took = time.perf_counter() - t0
    assert not result.messages, result.messages
    found: dict[tuple[str, ...], set[str]] = {}
    for r in result.recommendations:
        key = case_of(r, offsets)
        if r.rule not in NOT_SCORED:
            found.setdefault(key, set()).add(r.rule)
        elif "memory-headroom" in truth.get(key, frozenset()):
            # cheaper-gpu replaces memory-headroom on its GPU (advice/engine.py SUPPRESSES).
            found.setdefault(key, set()).add("memory-headroom")
    for key in set(truth) | set(found):
        tally.add(
            labels.get(key, " ".join(key)), truth.get(key, frozenset()), found.get(key, set())
        )
    return took


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--hours", default="1,3", help="history lengths, comma separated")
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    tally = Tally()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for hours in (float(h) for h in args.hours.split(",")):
            for seed in range(1, args.seeds + 1):
                times.append((hours, evaluate(hours, seed, args.interval, Path(tmp), tally)))
    print(f"{'rule':<16} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>9} {'recall':>7}")
    for rule in (r for r in RULES if r not in NOT_SCORED):
        tp, fp, fn = tally.tp[rule], tally.fp[rule], tally.fn[rule]
        print(
            f"{rule:<16} {tp:>4} {fp:>4} {fn:>4} {_ratio(tp, tp + fp):>9} {_ratio(tp, tp + fn):>7}"
        )
    tp, fp, fn = (sum(c.values()) for c in (tally.tp, tally.fp, tally.fn))
    print(
        f"{'overall':<16} {tp:>4} {fp:>4} {fn:>4} {_ratio(tp, tp + fp):>9} {_ratio(tp, tp + fn):>7}"
    )
    for label, cases in (("false positives", tally.fp_cases), ("false negatives", tally.fn_cases)):
        print(f"{label}: {', '.join(sorted(set(cases))) or 'none'}")
    print("\nSignals per profile (min..max over models, seeds and lengths) against thresholds:")
    names = list(next(iter(tally.signals.values())))
    print(f"{'profile':<13}" + "".join(f"{n:>18}" for n in names))
    for profile, sig in tally.signals.items():
        cells = "".join(f"{min(sig[n]):>8.2f}..{max(sig[n]):<8.2f}" for n in names)
        print(f"{profile:<13}{cells}")
    print("thresholds: p95 util < 40 (underused); <5% for >= 10 min (idle); peak mem < 40 / >= 95;")
    print("  CPU >= 2 cores with mean util < 50 (input-bound); mem-ctrl >= 60, util <= 70,")
    print("  power >= 0.85 of the limit (power-cap)")
    for hours, took in times:
        print(f"advise over {hours:g} h of history (a GPU fleet of 36): {took * 1000:.0f} ms")


if __name__ == "__main__":
    main()
