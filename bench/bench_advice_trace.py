"""Precision and recall of the advice rules on a public production trace: the GenAI serving
trace of Alibaba's clusterdata (``cluster-trace-v2026-GenAI``: per-pod GPU utilisation and GPU
memory used, about once a minute, for 143 pods over 22.8 hours).

Run: .venv/bin/python bench/bench_advice_trace.py PATH [--model "NVIDIA L40S"] [--board-gib 48]

PATH is a folder holding ``pod_gpu_duty_cycle_anon`` and ``pod_gpu_memory_used_bytes_anon``
(``.csv``, or ``.tar.gz`` as the repository ships them). The trace's terms allow research use
but not redistribution, so the project does not ship it; without PATH this prints where to get
it and exits.

The trace goes through the real path: a SQLite store written by the store's writer, facts
gathered by ``service.advice_facts``, the rule engine. Ground truth is labelled per pod from
the raw CSV rows by the definitions in ``TRUTH`` below (docs/ADVICE.md states them too).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from costmeter.advice.model import Recommendation
from costmeter.advice.rules.bursts import bursty_members
from costmeter.advice.thresholds import Thresholds
from costmeter.config import Config
from costmeter.service.advice import advise
from costmeter.service.advice_facts import gather_facts
from costmeter.service.advice_trace import GIB, Pod, TraceError, read_trace, write_store
from costmeter.store import Store

TRUTH = """\
Per pod, from the raw rows (utilisation u per minute, memory m), pods with >= 10 minutes:
  held     : median m >= 1 GiB (something is loaded on the GPU)
  idle-gpu : held, and the 99th percentile of u is under 1 % (it truly did nothing)
  kept     : held, some minute with u >= 5 %, and after the last such minute the pod stays
             under 5 % for >= 60 min up to its last sample, more than twice its longest earlier
             pause (the work ended; the memory stayed)
  bursty   : held, not idle, not kept, 10-70 % of minutes at u >= 5 %, and a pause of >= 10 min
             (a serving replica between requests) -> must be in a bursty-load group
  pressure : not idle, not kept, m >= 95 % of the board on >= 2 consecutive samples
  idle-gpu must never fire on a bursty pod (the bug this measures)."""

PER_GPU = ("idle-gpu", "kept-allocation", "memory-pressure", "underused-gpu", "memory-headroom")


def _p(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[round((len(data) - 1) * q / 100)] if data else 0.0


def label(pod: Pod, board: int) -> set[str]:
    """The rules a person would expect for ``pod``, by the definitions in ``TRUTH``."""
    util = [v for _ts, v in pod.util]
    mem = [float(v) for _ts, v in pod.mem]
    if pod.util[-1][0] - pod.util[0][0] < 600 or not mem or _p(mem, 50) < GIB:
        return set()
    if _p(util, 99) < 1.0:
        return {"idle-gpu"}
    busy_idx = [i for i, v in enumerate(util) if v >= 5.0]
    pauses = _pauses(pod)
    if busy_idx:
        last_busy = pod.util[busy_idx[-1]][0]
        tail = pod.util[-1][0] - last_busy
        earlier = max((b - a for a, b in pauses if b <= last_busy), default=0.0)
        if tail >= 3600 and tail > 2 * earlier:
            return {"kept-allocation"}
    out = set()
    share = len(busy_idx) / len(util)
    if 0.10 <= share <= 0.70 and any(b - a >= 600 for a, b in pauses):
        out.add("bursty-load")
    high = [v >= 0.95 * board for v in mem]
    if any(a and b for a, b in itertools.pairwise(high)):
        out.add("memory-pressure")
    return out


def _pauses(pod: Pod) -> list[tuple[float, float]]:
    """(start, end) of each run of minutes under 5 %: from its first quiet sample to the next
    busy one."""
    out, begin = [], None
    for ts, v in pod.util:
        if v < 5.0 and begin is None:
            begin = ts
        elif v >= 5.0 and begin is not None:
            out.append((begin, ts))
            begin = None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="folder with the trace's two files")
    parser.add_argument("--model", default="NVIDIA L40S", help="GPU model to record (priced)")
    parser.add_argument("--board-gib", type=float, default=48.0, help="GPU memory, GiB")
    parser.add_argument("--keep-db", help="write the store here instead of a temporary file")
    args = parser.parse_args()
    if not args.path:
        print(
            "No trace given. Get cluster-trace-v2026-GenAI/pod_gpu_duty_cycle_anon.tar.gz and "
            "pod_gpu_memory_used_bytes_anon.tar.gz from github.com/alibaba/clusterdata into a "
            "folder and pass it: bench/bench_advice_trace.py FOLDER"
        )
        return 0
    board = int(args.board_gib * GIB)
    try:
        pods = read_trace(args.path)
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.keep_db) if args.keep_db else Path(tmp) / "trace.db"
        t0 = time.perf_counter()
        start, end = write_store(pods, db, model=args.model, memory_total=board)
        load_s = time.perf_counter() - t0
        with Store.open(db) as store:
            t0 = time.perf_counter()
            result = advise(store, Config(), since_s=end - start + 120, now=end + 60)
            advise_s = time.perf_counter() - t0
            facts, _ = gather_facts(store, Config(), start, end + 60)
        members = bursty_members(facts, Thresholds())
    report(pods, board, result.recommendations, members, start, end)
    print(f"\nload {len(pods)} pods into the store: {load_s:.1f} s; advise: {advise_s:.2f} s")
    return 0


def report(
    pods: list[Pod],
    board: int,
    recs: Sequence[Recommendation],
    members: set[str],
    start: float,
    end: float,
) -> None:
    found: dict[str, set[str]] = {}
    group_recs = [r for r in recs if r.rule == "bursty-load" and r.target.group]
    for r in recs:
        if r.target.uuid:
            found.setdefault(r.target.uuid, set()).add(r.rule)
    grouped = members if group_recs else set()
    tp, fp, fn = Counter[str](), Counter[str](), Counter[str]()
    truth_n: Counter[str] = Counter()
    cases: list[str] = []
    for pod in pods:
        uuid = f"GPU-trace-{pod.key}"
        truth = label(pod, board)
        got = {r for r in found.get(uuid, set()) if r in PER_GPU}
        if uuid in grouped or "bursty-load" in found.get(uuid, set()):
            got.add("bursty-load")
        for rule in truth:
            truth_n[rule] += 1
        for rule in got | truth:
            if rule in got and rule in truth:
                tp[rule] += 1
            elif rule in got:
                fp[rule] += 1
                cases.append(f"FP {rule} on {pod.key[:8]} (truth {sorted(truth) or '-'})")
            else:
                fn[rule] += 1
                cases.append(f"FN {rule} on {pod.key[:8]} (found {sorted(got) or '-'})")
    hours = (end - start) / 3600
    print(f"GenAI trace: {len(pods)} pods, {hours:.1f} h; board {board / GIB:g} GiB assumed\n")
    print(TRUTH + "\n")
    print(f"{'rule':<16} {'truth':>5} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>9} {'recall':>7}")
    for rule in ("idle-gpu", "kept-allocation", "bursty-load", "memory-pressure"):
        t, f, n = tp[rule], fp[rule], fn[rule]
        prec = f"{t / (t + f):.2f}" if t + f else "n/a"
        rec = f"{t / (t + n):.2f}" if t + n else "n/a"
        print(f"{rule:<16} {truth_n[rule]:>5} {t:>4} {f:>4} {n:>4} {prec:>9} {rec:>7}")
    others = Counter(r.rule for r in recs if r.rule not in (*PER_GPU, "bursty-load"))
    print(f"other rules fired: {dict(others) or 'none'}")
    bursty = {f"GPU-trace-{p.key}" for p in pods if "bursty-load" in label(p, board)}
    told_idle = sum(1 for u in bursty if "idle-gpu" in found.get(u, set()))
    print(f"bursty pods told idle-gpu ('stop the process'): {told_idle} of {len(bursty)}")
    both = sum(1 for v in found.values() if {"idle-gpu", "memory-pressure"} <= v)
    print(f"GPUs told both idle-gpu and memory-pressure: {both}")
    for r in group_recs:
        print(f"\n{r.title}")
        for k, v in r.evidence.facts:
            print(f"  {k}: {v}")
        if r.savings:
            print(f"  savings: {r.savings.formula}")
    print("\n" + ("\n".join(sorted(cases)) if cases else "no false positive or negative"))


if __name__ == "__main__":
    raise SystemExit(main())
