"""Node sampling (``costmeter.sampling.node``) and its ingestion (``service.node_ingest``),
without Ray: the sampler is built here, as a backend's node would build it."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from costmeter.core import DeviceInfo, HostInfo, SimulatedClock, Tick
from costmeter.plugin_api import API_VERSION, BackendConfig, Capability, api_compatible
from costmeter.sampling import node as node_module
from costmeter.sampling.node import FORMAT, NodeSampler
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.simulated import FakeNvml
from costmeter.service.node_ingest import NodeIngest, ingest_node_samples
from costmeter.store import Store, Writer

T0 = 1_700_000_000.0


class Sink:
    def __init__(self) -> None:
        self.registered: list[tuple[HostInfo, tuple[DeviceInfo, ...]]] = []
        self.ticks: list[Tick] = []

    def register(self, host: HostInfo, devices: Sequence[DeviceInfo]) -> None:
        self.registered.append((host, tuple(devices)))

    def submit(self, tick: Tick, *, wait: bool = False) -> None:
        self.ticks.append(tick)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


def simulated(clock: SimulatedClock, name: str = "node-a") -> NodeSampler:
    return NodeSampler(hostname=name, simulate="a100,h100", seed=3, clock=clock)


def test_the_api_bump_is_minor_and_still_loads_1_0_plugins() -> None:
    assert API_VERSION == "1.3"
    assert all(api_compatible(v) for v in ("1.0", "1.1", "1.2", "1.3"))
    assert not api_compatible("1.4") and not api_compatible("2.0")
    assert BackendConfig().node_sampler is None  # 1.0 plugins never see a change
    assert Capability.NODE_SAMPLES.value == "node-samples"


def test_a_reading_is_plain_picklable_data_for_the_node(clock: SimulatedClock) -> None:
    sampler = simulated(clock)
    reading = sampler.sample([])
    assert reading["format"] == FORMAT and reading["gpu_mode"] == "simulated"
    assert reading["host"].hostname == "node-a"
    assert [d.host for d in reading["devices"]] == ["node-a", "node-a"]
    tick = reading["tick"]
    assert isinstance(tick, Tick) and tick.host == "node-a" and tick.ts == T0
    assert len(tick.devices) == 2 and tick.device_intervals == {}
    # The simulated GPUs' stand-in processes are taken off: runs are their only workload.
    assert all(not d.processes for d in tick.devices)
    assert pickle.loads(pickle.dumps(reading)) == reading
    sampler.close()


def test_the_factory_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(NodeSampler)) is NodeSampler


def test_a_runs_pid_is_put_on_its_simulated_gpu_and_taken_off_after(
    clock: SimulatedClock, child: subprocess.Popen[bytes]
) -> None:
    sampler = simulated(clock)
    clock.advance(1.0)
    tick = sampler.sample([child.pid], {child.pid: [1]})["tick"]
    on_gpu = {d.index: [p.pid for p in d.processes] for d in tick.devices}
    assert on_gpu == {0: [], 1: [child.pid]}
    assert child.pid in {p.pid for p in tick.host_sample.processes}  # read by psutil
    clock.advance(1.0)
    later = sampler.sample([], {})["tick"]
    assert all(not d.processes for d in later.devices)


def test_the_nodes_environment_chooses_gpus_seed_and_name(
    monkeypatch: pytest.MonkeyPatch, clock: SimulatedClock
) -> None:
    monkeypatch.setenv("COSTMETER_SIMULATE", "t4")
    monkeypatch.setenv("COSTMETER_SEED", "9")
    monkeypatch.setenv("COSTMETER_NODE_NAME", "gpu-node-7")
    sampler = NodeSampler(clock=clock)
    reading = sampler.sample([])
    assert reading["host"].hostname == "gpu-node-7"
    assert [d.name for d in reading["devices"]] == ["Tesla T4"]


def test_a_node_without_nvidia_driver_still_gives_host_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COSTMETER_SIMULATE", raising=False)
    monkeypatch.setattr(
        node_module,
        "NvmlSampler",
        lambda fake, **kw: NvmlSampler(FakeNvml.without_driver(), **kw),
    )
    sampler = NodeSampler(hostname="cpu-node")
    reading = sampler.sample([])
    assert reading["gpu_mode"] == "none" and reading["devices"] == ()
    assert reading["tick"].host_sample is not None
    assert "No NVIDIA driver" in reading["messages"][0]


def test_ingest_registers_once_computes_energy_and_skips_repeats(clock: SimulatedClock) -> None:
    sampler = simulated(clock)
    readings = []
    for _ in range(3):
        readings.append(sampler.sample([]))
        clock.advance(1.0)
    sink = Sink()
    state = ingest_node_samples(sink, readings[:2], cpu_tdp_w=100.0)
    state.ingest(readings)  # two of them again, as a second run on the node returns them
    assert len(sink.registered) == 1 and sink.registered[0][0].hostname == "node-a"
    assert [t.ts for t in sink.ticks] == [T0, T0 + 1, T0 + 2]
    first, second = sink.ticks[0], sink.ticks[1]
    assert all(iv.dt_s == 0 for iv in first.device_intervals.values())
    ivs = list(second.device_intervals.values())
    assert len(ivs) == 2 and all(iv.dt_s == 1.0 and iv.energy_measured for iv in ivs)
    assert second.host_interval is not None and second.host_interval.dt_s == 1.0


def test_ingest_skips_this_machine_and_unknown_shapes(clock: SimulatedClock) -> None:
    sink = Sink()
    ingest = NodeIngest(sink, cpu_tdp_w=65.0, skip_hosts={"node-a"})
    good = simulated(clock, name="node-b").sample([])
    written = ingest.ingest([simulated(clock).sample([]), {"format": 99}, "junk", good])  # type: ignore[list-item]
    assert written == 1 and [t.host for t in sink.ticks] == ["node-b"]


def test_ingested_node_samples_land_in_the_store_under_the_node(
    tmp_path: Path, clock: SimulatedClock, child: subprocess.Popen[bytes]
) -> None:
    sampler = simulated(clock, name="ray-node-1")
    readings = []
    for _ in range(4):
        readings.append(sampler.sample([child.pid], {child.pid: [0]}))
        clock.advance(1.0)
    db = tmp_path / "history.db"
    writer = Writer(db, clock=clock)
    writer.start()
    try:
        ingest_node_samples(writer, readings, cpu_tdp_w=65.0)
        writer.flush(timeout=10)
    finally:
        writer.stop()
    with Store.open(db) as store:
        assert [h.hostname for h in store.hosts()] == ["ray-node-1"]
        assert [d.index for d in store.devices("ray-node-1")] == [0, 1]
        (usage,) = [u for u in store.host_usage(T0, T0 + 4) if u.host == "ray-node-1"]
        assert usage.seconds == pytest.approx(3.0)
        gpus = store.device_usage(T0, T0 + 4)
        assert {u.index for u in gpus} == {0, 1} and all(u.energy_j > 0 for u in gpus)
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT DISTINCT d.idx, p.pid FROM gpu_process_samples g"
            " JOIN devices d ON d.id = g.device_id JOIN processes p ON p.id = g.proc_id"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [(0, child.pid)]
