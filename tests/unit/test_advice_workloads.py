"""Advice on workloads shaped like production: serving replicas that work in bursts, GPUs seen
only through an exporter (no process view), allocations kept after the work ended.

The shapes come from the GenAI serving trace (docs/ADVICE.md, "Evaluation on a real trace"):
replicas busy 25-50 % of the minutes with bursts to 90 %+, lulls of 20 minutes to hours, 20-30
GiB held throughout on a 48 GiB board. ``test_on_the_real_trace`` runs the same checks on the
trace itself when ``COSTMETER_GENAI_TRACE`` names a folder holding it (its terms do not let the
project ship it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from costmeter.advice import engine
from costmeter.advice.facts import AdviceFacts, DeviceFacts, GpuOption, Series
from costmeter.advice.model import HOURS_PER_MONTH, Recommendation
from costmeter.advice.rules.bursts import autoscaled_gpu_hours, bursty_load, group_load
from costmeter.advice.rules.common import FROM_ESTIMATE, FROM_PROCESSES, held_gib
from costmeter.advice.rules.compute import underused_gpu
from costmeter.advice.rules.idle import idle_gpu, kept_allocation
from costmeter.advice.savings import gpu_hours_saved
from costmeter.advice.thresholds import Thresholds
from costmeter.config import Config
from costmeter.service.advice import advise
from costmeter.service.advice_trace import TraceError, read_trace, write_store
from costmeter.store import Store

GIB = 1024**3
STEP = 60.0
BOARD = 48 * GIB
PRICE = 1.0
T = Thresholds()


def series(values: list[float]) -> Series:
    return Series(tuple(i * STEP for i in range(len(values))), tuple(values))


def gpu(
    util: list[float],
    mem_gib: float | list[float],
    *,
    index: int = 0,
    host: str = "h",
    processes: bool = False,
) -> DeviceFacts:
    """A GPU sampled once a minute; without ``processes`` it is seen as an exporter sees it:
    utilisation and board memory used only."""
    n = len(util)
    mem = [mem_gib] * n if isinstance(mem_gib, int | float) else mem_gib
    used = series([m * GIB for m in mem])
    return DeviceFacts(
        host=host,
        index=index,
        uuid=f"GPU-{host}-{index}",
        name="NVIDIA L40S",
        memory_total=BOARD,
        power_limit_w=None,
        hourly_price=PRICE,
        price_known=True,
        price_model="L40S 48GB",
        energy_in_price=True,
        start=0.0,
        end=n * STEP,
        gpu_util=series(util),
        mem_util=series([float("nan")] * n),
        mem_used=used,
        power_w=Series(),
        held_mem=used if processes else Series(),
    )


def facts(*devs: DeviceFacts) -> AdviceFacts:
    end = max(d.end for d in devs)
    return AdviceFacts(0.0, end, "USD", 0.1, devs, (), (GpuOption("L40S 48GB", PRICE, 48.0),))


def replica(seed: int, hours: float = 6.0) -> list[float]:
    """A serving replica: a 5-minute burst at 60-95 % every 20-40 minutes, quiet between."""
    out: list[float] = []
    k = seed
    while len(out) < hours * 60:
        out += [60.0 + (k * 7) % 36] * 5
        out += [0.0] * (20 + (k * 11) % 21)
        k += 1
    return out[: int(hours * 60)]


def rules_by_gpu(recs: list[Recommendation]) -> dict[int | None, set[str]]:
    out: dict[int | None, set[str]] = {}
    for r in recs:
        out.setdefault(r.target.device, set()).add(r.rule)
    return out


def test_bursty_replicas_are_not_told_to_stop_and_get_advice_about_the_bursts() -> None:
    # Four replicas whose bursts fall at different minutes (requests spread by a balancer).
    devs = [gpu(([0.0] * 9 * i + replica(i))[:360], 22.0, index=i) for i in range(4)]
    recs, messages = engine.evaluate(facts(*devs), T)
    assert messages == []
    assert not [r for r in recs if r.rule == "idle-gpu"]
    assert not [r for r in recs if "Stop the process" in r.action.text]
    (burst,) = [r for r in recs if r.rule == "bursty-load"]
    assert burst.target.group == "NVIDIA L40S" and burst.target.device is None
    # The GPUs its p99 minute needs at 70 %, from the per-minute sum of the four...
    load = group_load(devs)
    minute_sums = sorted(
        sum(d.gpu_util.values[i] for d in devs) for i in range(len(devs[0].gpu_util))
    )
    p99 = minute_sums[round(0.99 * (len(minute_sums) - 1))]
    assert burst.evidence.values["gpus_needed_p99"] == math.ceil(p99 / 70.0)
    assert burst.evidence.values["gpus_needed_p99"] < 4
    # ...and the saving is what autoscaling leaves unheld, priced, within the 4 GPUs' month.
    held_h, auto_h = load.held_gpu_hours, autoscaled_gpu_hours(load, T)
    assert burst.evidence.values["autoscaled_gpu_hours"] == pytest.approx(auto_h)
    assert auto_h < held_h
    assert burst.savings is not None
    assert 0 < burst.savings.money_per_month <= 4 * PRICE * HOURS_PER_MONTH + 1e-6


def test_a_truly_idle_gpu_behind_an_exporter_is_released_on_device_memory() -> None:
    (rec,) = idle_gpu(facts(gpu([0.0] * 120, 16.7)), T)
    assert rec.title.startswith("Release")
    facts_ = dict(rec.evidence.facts)
    assert facts_["Memory held from"] == FROM_ESTIMATE  # no process view: the board's memory
    # Held = used minus the driver's reserve (estimated at 1/160 of the board: 0.3 GiB).
    assert rec.evidence.values["held_gib"] == pytest.approx(16.7 - 0.3, abs=0.01)
    with_procs = gpu([0.0] * 120, 16.7, processes=True)
    (procs,) = idle_gpu(facts(with_procs), T)
    assert dict(procs.evidence.facts)["Memory held from"] == FROM_PROCESSES
    assert idle_gpu(facts(gpu([0.0] * 120, 0.2)), T) == []  # an empty board holds nothing


def test_memory_quoted_is_what_was_held_while_idle() -> None:
    # 2 hours busy at 40 GiB, then released to 2 GiB and idle for 20 hours: a board that did
    # essentially nothing (busy 9 % of the time is over 5 %, so use a lighter start: 30 min).
    util = [90.0] * 6 + [0.0] * 600
    mem = [40.0] * 6 + [2.0] * 600
    recs = idle_gpu(facts(gpu(util, mem)), T) + kept_allocation(facts(gpu(util, mem)), T)
    (rec,) = recs
    assert rec.evidence.values["held_gib"] == pytest.approx(2.0 - 0.3, abs=0.05)
    assert held_gib(gpu(util, mem)) == pytest.approx(1.7, abs=0.05)


def test_idle_is_not_also_told_memory_pressure() -> None:
    full_and_idle = gpu([0.0] * 120, 47.0)  # 98 % of the board, computing nothing
    recs, _ = engine.evaluate(facts(full_and_idle), T)
    assert {r.rule for r in recs} == {"idle-gpu"}


def test_packing_respects_memory() -> None:
    steady_light = [15.0 + (i % 5) for i in range(240)]  # p95 19 %: 100/19 -> 5, at most 4
    (light,) = underused_gpu(facts(gpu(steady_light, 8.0)), T)
    assert light.evidence.values["k"] == 4.0  # 8 GiB x 1.2 fits 5 times in 48 GiB
    (mid,) = underused_gpu(facts(gpu(steady_light, 16.0)), T)
    assert mid.evidence.values["k"] == 2.0  # 16 x 1.2 = 19.2 GiB: two fit, not three
    # A replica peaking at 24 GiB on a 48 GiB board: one copy with margin, never 3 (nor 2).
    assert underused_gpu(facts(gpu(steady_light, 24.0)), T) == []


def test_a_kept_allocation_is_priced_over_its_stretch_not_per_month() -> None:
    util = replica(0, hours=2.0) + [0.0] * 180  # 2 hours of bursts, then 3 hours quiet
    dev = gpu(util, 24.0)
    recs, _ = engine.evaluate(facts(dev), T)
    assert "idle-gpu" not in {r.rule for r in recs}
    (kept,) = [r for r in recs if r.rule == "kept-allocation"]
    kept_s = kept.evidence.values["kept_s"]
    assert 3 * 3600 <= kept_s <= 4 * 3600  # the 3 hours and the pause after the last burst
    assert kept.savings is not None
    # The stretch at 1 USD/h, once; scaled to a month it would have been over 400 USD.
    assert kept.savings.money_per_month == pytest.approx(kept_s / 3600 * PRICE, abs=0.01)
    assert kept.savings.once and "not scaled to a month" in kept.savings.formula
    # The same GPU, seen before its work ended, is a bursty one (no kept finding).
    assert kept_allocation(facts(gpu(replica(0, hours=2.0), 24.0)), T) == []


def test_no_saving_exceeds_what_the_device_costs() -> None:
    saved = gpu_hours_saved(
        gpu_hours=3.0,  # more GPU-hours than the 1-hour window has for one GPU
        hourly=2.0,
        kwh=0.0,
        window_s=3600.0,
        tariff=0.1,
        energy_in_price=True,
        currency="USD",
        why="test",
    )
    assert saved.money_per_month == pytest.approx(2.0 * HOURS_PER_MONTH)
    assert "capped" in saved.formula


def test_a_lone_bursty_gpu_is_told_to_share_only_when_its_memory_allows() -> None:
    (rec,) = bursty_load(facts(gpu(replica(3), 8.0)), T)
    assert rec.target.device == 0 and rec.evidence.values["k"] >= 2
    assert bursty_load(facts(gpu(replica(3), 24.0)), T) == []


def _write(folder: Path, util: str, mem: str) -> None:
    (folder / "pod_gpu_duty_cycle_anon.csv").write_text(util)
    (folder / "pod_gpu_memory_used_bytes_anon.csv").write_text(mem)


def test_trace_loader_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="download them"):
        read_trace(tmp_path)
    _write(
        tmp_path,
        "value,timestamp_anon,container_ip\n0.0,60.0,a\nbusy,120.0,a\n",
        "timestamp_anon,value,container_ip\n60.0,100.0,a\n",
    )
    with pytest.raises(TraceError, match=r"pod_gpu_duty_cycle_anon.csv:3: 'value' is 'busy'"):
        read_trace(tmp_path)
    _write(
        tmp_path,
        "value,timestamp_anon,container_ip\n150.0,60.0,a\n",
        "timestamp_anon,value,container_ip\n60.0,100.0,a\n",
    )
    with pytest.raises(TraceError, match="over 100"):
        read_trace(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pod_gpu_duty_cycle_anon.tar.gz").write_bytes(b"not a gzip file")
    with pytest.raises(TraceError, match="could not be read"):
        read_trace(broken)
    assert (broken / "pod_gpu_duty_cycle_anon.tar.gz").read_bytes() == b"not a gzip file"


def test_trace_loader_writes_a_store_the_rules_read(tmp_path: Path) -> None:
    rows_u = ["value,timestamp_anon,container_ip"]
    rows_m = ["timestamp_anon,value,container_ip"]
    for i in range(180):
        rows_u.append(f"0.0,{1000.0 + 60 * i},idle")
        rows_m.append(f"{1000.0 + 60 * i},{17 * GIB},idle")
    rows_u.append("3.0,1000.0,None")  # a sample of no container: skipped
    _write(tmp_path, "\n".join(rows_u) + "\n", "\n".join(rows_m) + "\n")
    pods = read_trace(tmp_path)
    assert [p.key for p in pods] == ["idle"]
    start, end = write_store(pods, tmp_path / "t.db")
    with Store.open(tmp_path / "t.db") as store:
        res = advise(store, Config(), since_s=end - start + 120, now=end + 60)
    assert [r.rule for r in res.recommendations] == ["idle-gpu"]
    assert res.recommendations[0].target.host == "pod-idle"


TRACE = os.environ.get("COSTMETER_GENAI_TRACE")


@pytest.mark.skipif(
    not TRACE,
    reason="set COSTMETER_GENAI_TRACE to a folder with the GenAI trace's pod_gpu_* files "
    "(github.com/alibaba/clusterdata, cluster-trace-v2026-GenAI); not redistributable",
)
def test_on_the_real_trace(tmp_path: Path) -> None:
    assert TRACE
    pods = read_trace(TRACE)
    start, end = write_store(pods, tmp_path / "trace.db")
    with Store.open(tmp_path / "trace.db") as store:
        res = advise(store, Config(), since_s=end - start + 120, now=end + 60)
    recs = list(res.recommendations)
    by_gpu: dict[str, set[str]] = {}
    for r in recs:
        if r.target.uuid:
            by_gpu.setdefault(r.target.uuid, set()).add(r.rule)
    # Idle-gpu fired on 135 of 137 GPUs before; the idle pods are a handful.
    idle = [u for u, rules in by_gpu.items() if "idle-gpu" in rules]
    assert 0 < len(idle) <= 20
    assert not [u for u, rules in by_gpu.items() if {"idle-gpu", "memory-pressure"} <= rules]
    (burst,) = [r for r in recs if r.rule == "bursty-load"]
    assert burst.evidence.values["gpus"] >= 50
    for r in recs:
        if r.savings is not None:
            gpus = r.evidence.values.get("gpus", 1.0)
            assert r.savings.money_per_month <= gpus * 1.09 * HOURS_PER_MONTH + 1e-6
