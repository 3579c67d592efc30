"""The run service and runs on other machines: node samples from a backend with
``Capability.NODE_SAMPLES`` are written with the local monitor's, and the run is priced from
them; a run whose node is this machine is sampled locally; without a writer, one notice.

The backend is a fake: its "node" is a :class:`NodeSampler` on simulated GPUs in this process,
named ``node-b``, reading a real child process that stands for the run's process there.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from costmeter.config import Config
from costmeter.plugin_api import (
    BackendMetadata,
    Capability,
    LogChunk,
    Placement,
    Resources,
    RunHandle,
    RunSpec,
    RunState,
    RunStatus,
)
from costmeter.runs.registry import BackendInfo, GuardedBackend
from costmeter.sampling.node import NodeSampler
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.service.runs import RunService, RunServiceOptions
from costmeter.store import Store

NODE = "node-b"
#: Spins for {s} seconds of CPU time, not of wall time: on a loaded machine a wall-time loop
#: gets a fraction of a core, and a check of the CPU billed to the run would fail for the load.
BUSY = "import time\nt=time.process_time()\nwhile time.process_time()-t<{s}: pass\n"


class FakeNodeBackend:
    """Each run is a real child process that "executes on" ``node``; while runs go, a thread
    samples that node every 0.1 s with Costmeter's NodeSampler (simulated A100s)."""

    API_VERSION = "1.1"

    def __init__(self, node: str, *, samples: bool = True, fail_samples: bool = False) -> None:
        self.node = node
        self.fail_samples = fail_samples
        caps = {Capability.GPUS, Capability.PLACES_GPUS, Capability.MULTI_NODE}
        if samples:
            caps.add(Capability.NODE_SAMPLES)
        self._meta = BackendMetadata("fake-nodes", "1", "1.1", capabilities=frozenset(caps))
        self.sampler = NodeSampler(hostname=node, simulate="a100,a100", seed=1)
        self._procs: dict[str, tuple[subprocess.Popen[bytes], float, int]] = {}
        self._ended: dict[str, float] = {}
        self._readings: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.asked: list[float] = []
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._thread.start()

    @property
    def metadata(self) -> BackendMetadata:
        return self._meta

    def resources(self) -> Resources:
        return Resources(gpus=2, cpus=4, nodes=(self.node,))

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        proc = subprocess.Popen(list(spec.argv))
        key = str(proc.pid)
        with self._lock:
            self._procs[key] = (proc, time.time(), 1 if spec.gpus else -1)
        return RunHandle("fake-nodes", key)

    def _running(self) -> dict[int, list[int]]:
        return {
            p.pid: [gpu] if gpu >= 0 else []
            for key, (p, _, gpu) in self._procs.items()
            if key not in self._ended
        }

    def _sample_loop(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def _sample(self, force: bool = False) -> None:
        with self._lock:
            running = self._running()
        if running or force:
            reading = self.sampler.sample(list(running), running)
            with self._lock:
                self._readings.append(reading)

    def status(self, handle: RunHandle) -> RunStatus:
        with self._lock:
            proc, started, gpu = self._procs[handle.key]
        code = proc.poll()
        gpus = (gpu,) if gpu >= 0 else ()
        if code is None:
            return RunStatus(
                RunState.RUNNING, started=started, pids=(proc.pid,), node=self.node,
                gpu_indices=gpus,
            )  # fmt: skip
        with self._lock:
            first_end = handle.key not in self._ended
            ended = self._ended.setdefault(handle.key, time.time())
        if first_end:
            self._sample(force=True)  # the run's last moments, as the Ray node agent does
        return RunStatus(
            RunState.SUCCEEDED if code == 0 else RunState.FAILED, exit_code=code,
            started=started, ended=ended, pids=(proc.pid,), node=self.node, gpu_indices=gpus,
        )  # fmt: skip

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        self._procs[handle.key][0].kill()

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        return LogChunk("", offset, True)

    def node_samples(self, handle: RunHandle, since_ts: float = 0.0) -> list[dict[str, Any]]:
        self.asked.append(since_ts)
        if self.fail_samples:
            raise RuntimeError("the node agent is gone")
        with self._lock:
            return [r for r in self._readings if r["tick"].ts > since_ts]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sampler.close()
        for proc, _, _ in self._procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)


def guarded(backend: FakeNodeBackend) -> GuardedBackend:
    return GuardedBackend(
        "fake-nodes", backend, backend.metadata, BackendInfo("fake-nodes", "tests:Fake")
    )


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(
        MonitorOptions(
            db_path=tmp_path / "c.db", config=Config(), interval_s=0.1, simulate="a100,a100"
        ),
        on_message=lambda m: None,
    )
    mon.open()
    thread: threading.Thread | None = None

    def start() -> None:
        nonlocal thread
        thread = threading.Thread(target=mon.run_until, args=(None,), daemon=True)
        thread.start()

    mon.start_for_test = start  # type: ignore[attr-defined]
    yield mon
    mon.stop()
    if thread is not None:
        thread.join(5)
    mon.close()


def _hosts(monitor: Monitor) -> set[str]:
    assert monitor.writer is not None
    monitor.writer.flush(timeout=5)
    with Store.open(monitor.options.db_path) as store:
        return {h.hostname for h in store.hosts()}


def _service(backend: FakeNodeBackend, db: Path, monitor: Monitor | None, **kw: Any) -> RunService:
    options = RunServiceOptions(
        db_path=db,
        pricing=Config().pricing(),
        monitor=monitor,
        simulated_runs_only=True,
        poll_s=0.05,
        check_interval_s=0.2,
        node_poll_s=0.2,
        grace_s=1.0,
        **kw,
    )
    service = RunService(guarded(backend), options)
    if monitor is not None:
        monitor.start_for_test()  # type: ignore[attr-defined]
    return service


def test_a_run_on_another_node_is_priced_from_that_nodes_samples(
    monitor: Monitor, tmp_path: Path
) -> None:
    backend = FakeNodeBackend(NODE)
    service = _service(backend, monitor.options.db_path, monitor)
    try:
        rid = service.submit(RunSpec(argv=(sys.executable, "-c", BUSY.format(s=1.2)), gpus=1))
        assert service.wait(30)
        row = service.row(rid)
        cost = service.cost(rid)
    finally:
        service.close()
        backend.close()
    assert row is not None and cost is not None
    assert row.status == "succeeded" and row.node == NODE and row.gpus == [1]
    assert row.pids and row.host == monitor.host_info.hostname  # type: ignore[union-attr]
    # Its PID is the node's: never tracked by the local monitor, never on a local GPU.
    assert monitor.fake is not None and monitor.fake.simulated_pids() == []
    assert len(backend.asked) >= 3  # polled while it ran, and once more at its end
    hosts = _hosts(monitor)
    assert hosts == {NODE, monitor.host_info.hostname}  # type: ignore[union-attr]
    (device,) = cost.devices
    assert (device.host, device.index) == (NODE, 1)
    assert device.cost > 0 and device.energy_kwh > 0
    assert device.hours * 3600 == pytest.approx(row.duration_s or 0, rel=0.25)
    assert row.cost == pytest.approx(cost.cost) and row.cost > device.cost  # + its CPU
    assert row.energy_kwh is not None and row.energy_kwh > 0
    assert row.cpu_seconds is not None and row.cpu_seconds >= 0.6  # sampled on the node


def test_a_run_whose_node_is_this_machine_is_sampled_locally(
    monitor: Monitor, tmp_path: Path
) -> None:
    host = monitor.host_info.hostname  # type: ignore[union-attr]
    backend = FakeNodeBackend(host)
    service = _service(backend, monitor.options.db_path, monitor)
    seen: list[int] = []
    assert monitor.fake is not None
    fake = monitor.fake

    def watch(event: Any) -> None:
        if event.run.pids and event.run.state == RunState.RUNNING:
            seen.extend(p.pid for p in fake.devices[1].processes)

    service.subscribe(watch)
    try:
        rid = service.submit(RunSpec(argv=(sys.executable, "-c", BUSY.format(s=0.8)), gpus=1))
        assert service.wait(30)
        row = service.row(rid)
        cost = service.cost(rid)
    finally:
        service.close()
        backend.close()
    assert row is not None and cost is not None
    assert row.status == "succeeded" and row.node == host
    assert row.pids[0] in seen  # put on the local simulated GPU it was given
    hosts = _hosts(monitor)
    assert hosts == {host}  # the node's own readings of this machine were not written twice
    (device,) = cost.devices
    assert (device.host, device.index) == (host, 1) and device.cost > 0
    assert row.cpu_seconds is not None and row.cpu_seconds >= 0.4


def test_without_a_writer_of_ours_node_samples_are_not_asked_for_and_it_is_said_once(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    backend = FakeNodeBackend(NODE)
    service = _service(backend, tmp_path / "c.db", None, on_message=said.append)
    try:
        ids = [
            service.submit(RunSpec(argv=(sys.executable, "-c", "pass"), gpus=1)) for _ in range(2)
        ]
        assert service.wait(30)
        rows = [service.row(i) for i in ids]
    finally:
        service.close()
        backend.close()
    assert all(r is not None and r.status == "succeeded" and r.cost is not None for r in rows)
    assert backend.asked == []
    assert len(said) == 1 and "samples cannot be written" in said[0] and NODE in said[0]


def test_a_failing_node_samples_call_is_said_once_and_the_run_still_priced(
    monitor: Monitor, tmp_path: Path
) -> None:
    said: list[str] = []
    backend = FakeNodeBackend(NODE, fail_samples=True)
    service = _service(backend, monitor.options.db_path, monitor, on_message=said.append)
    try:
        rid = service.submit(RunSpec(argv=(sys.executable, "-c", BUSY.format(s=0.5)), gpus=1))
        assert service.wait(30)
        row = service.row(rid)
    finally:
        service.close()
        backend.close()
    assert row is not None and row.status == "succeeded" and row.cost is not None
    assert len(backend.asked) >= 2
    assert len(said) == 1 and "the node agent is gone" in said[0], said
