"""An agent's backfill page, 3,600 ticks of 8 GPUs, decoded by the collector.

Run: .venv/bin/python bench/bench_backfill.py [--ticks 3600] [--gpus 8] [--repeats 5]
The page is made by the real node sampler (8 simulated GPUs with jobs on them, this machine's
processes) on a simulated clock, encoded as the agent serves ``/v1/samples?limit=3600``. Times
``wire.read_samples_page`` (what ``AgentClient.samples`` runs: loads, the quick decoder, the
garbage collector paused) against ``wire.loads`` + the field-by-field checked decoder on the same
bytes (the baseline, ``decode_samples_page_checked``, as every page was decoded before);
both must give equal pages. Prints the best of --repeats; the last line is the figure.
"""

from __future__ import annotations

import argparse
import time

from costmeter.core import SimulatedClock
from costmeter.sampling import wire
from costmeter.sampling.node import NodeSampler

T0 = 1_700_000_000.0


def make_page(ticks: int, gpus: int) -> bytes:
    clock = SimulatedClock(T0)
    profiles = ["a100:train", "h100:idle", "a100:bursty", "h100:train"]
    spec = ",".join(profiles[i % 4] for i in range(gpus))
    sampler = NodeSampler(
        hostname="gpu-box", simulate=spec, seed=1, clock=clock, process_scan_interval_s=10.0
    )
    readings = []
    try:
        for _ in range(ticks):
            clock.advance(1.0)
            readings.append(sampler.sample([], {4242: [0, 1]}))
    finally:
        sampler.close()
    page = wire.SamplesPage(
        host=readings[0]["host"],
        devices=readings[0]["devices"],
        ticks=tuple(r["tick"] for r in readings),
        more=False,
        next_since=None,
        oldest=None,
    )
    return wire.dumps(wire.encode_samples_page(page))


def best_of(repeats: int, fn: object) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=3600)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"sampling {args.ticks} ticks of {args.gpus} simulated GPUs ...", flush=True)
    body = make_page(args.ticks, args.gpus)
    print(f"page: {len(body) / 1e6:.1f} MB")
    t_parse, _ = best_of(args.repeats, lambda: wire.loads(body))
    t_old, old = best_of(args.repeats, lambda: wire.decode_samples_page_checked(wire.loads(body)))
    t_new, new = best_of(args.repeats, lambda: wire.read_samples_page(body))
    assert new == old, "the two decoders disagree"
    print(f"json.loads alone:                      {t_parse:.3f} s")
    print(f"loads + checked decoder (baseline):    {t_old:.3f} s")
    print(f"read_samples_page (the collector's):   {t_new:.3f} s  ({t_old / t_new:.1f}x faster)")
    print(f"backfill decode s: {t_new:.3f} (target <= 0.3; baseline {t_old:.3f})")


if __name__ == "__main__":
    main()
