"""The run queue against an in-test backend: K at once, GPU limits, failures, limits, events.

``FakeBackend`` implements ``plugin_api.Backend`` without processes: a run's argv says what it
does (``ok 0.1`` succeeds after 0.1 s, ``fail 0.1`` exits 1, ``hang`` runs until cancelled).
It records, as it sees them, how many runs were going at once and on each GPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from costmeter.plugin_api import (
    BackendError,
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
from costmeter.runs.events import EventKind, RunEvent
from costmeter.runs.queue import RunQueue

ALL = frozenset({Capability.GPUS, Capability.CANCEL, Capability.LOGS})


class FakeBackend:
    def __init__(
        self,
        caps: frozenset[Capability] = ALL,
        *,
        submit_error: Exception | None = None,
        status_error: Exception | None = None,
    ) -> None:
        self.caps = caps
        self.submit_error = submit_error
        self.status_error = status_error
        self.lock = threading.Lock()
        self.runs: dict[str, dict[str, object]] = {}
        self.max_running = 0
        self.max_per_gpu = 0
        self.envs: list[dict[str, str]] = []
        self.placements: list[tuple[int, ...]] = []

    @property
    def metadata(self) -> BackendMetadata:
        return BackendMetadata("fake", "1", "1.0", capabilities=self.caps)

    def resources(self) -> Resources:
        return Resources()

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        if self.submit_error is not None:
            raise self.submit_error
        key = f"r{len(self.runs)}"
        kind = spec.argv[0]
        length = float(spec.argv[1]) if len(spec.argv) > 1 else 3600.0
        gpus = placement.gpu_indices
        if Capability.PLACES_GPUS in self.caps:
            gpus = tuple(range(spec.gpus))
        with self.lock:
            self.runs[key] = {
                "kind": kind,
                "start": time.time(),
                "end": time.time() + length,
                "gpus": gpus,
                "cancelled": False,
            }
            self.envs.append(dict(env))
            self.placements.append(placement.gpu_indices)
            self._observe()
        return RunHandle("fake", key)

    def _observe(self) -> None:
        now = time.time()
        live = [r for r in self.runs.values() if not self._done(r, now)]
        self.max_running = max(self.max_running, len(live))
        per: dict[int, int] = {}
        for r in live:
            for g in r["gpus"]:  # type: ignore[attr-defined]
                per[g] = per.get(g, 0) + 1
        self.max_per_gpu = max([self.max_per_gpu, *per.values()])

    @staticmethod
    def _done(r: dict[str, object], now: float) -> bool:
        return bool(r["cancelled"]) or (r["kind"] != "hang" and now >= r["end"])  # type: ignore[operator]

    def status(self, handle: RunHandle) -> RunStatus:
        if self.status_error is not None:
            raise self.status_error
        with self.lock:
            self._observe()
            r = self.runs[handle.key]
            now = time.time()
            gpus = r["gpus"]
            started = r["start"]
            if not self._done(r, now):
                return RunStatus(RunState.RUNNING, started=started, pids=(4242,), gpu_indices=gpus)  # type: ignore[arg-type]
            if r["cancelled"]:
                return RunStatus(RunState.CANCELLED, exit_code=-15, started=started, ended=now)  # type: ignore[arg-type]
            code = 0 if r["kind"] == "ok" else 1
            state = RunState.SUCCEEDED if code == 0 else RunState.FAILED
            return RunStatus(state, exit_code=code, started=started, ended=r["end"])  # type: ignore[arg-type]

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        with self.lock:
            self.runs[handle.key]["cancelled"] = True

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        text = f"hello from {handle.key}\n"
        done = self.status(handle).state.finished
        if offset >= len(text):
            return LogChunk("", offset, complete=done)
        return LogChunk(text[offset:], len(text), complete=done)

    def close(self) -> None:
        pass


def spec(*argv: str, **kw: object) -> RunSpec:
    return RunSpec(argv=argv, **kw)  # type: ignore[arg-type]


def make(backend: FakeBackend, tmp_path: Path, **kw: object) -> tuple[RunQueue, list[RunEvent]]:
    q = RunQueue(backend, poll_s=0.01, **kw)  # type: ignore[arg-type]
    events: list[RunEvent] = []
    q.subscribe(events.append)
    return q, events


def states(q: RunQueue) -> list[RunState]:
    return [r.state for r in sorted(q.runs(), key=lambda r: r.key)]


def test_at_most_k_runs_at_once(tmp_path: Path) -> None:
    b = FakeBackend()
    q, _ = make(b, tmp_path, max_parallel=2)
    for _ in range(6):
        q.submit(spec("ok", "0.05"), run_dir=tmp_path / "r")
    assert q.wait(10)
    assert states(q) == [RunState.SUCCEEDED] * 6
    assert b.max_running == 2
    assert q.max_parallel_seen == 2


def test_one_run_per_gpu_and_cuda_visible_devices(tmp_path: Path) -> None:
    b = FakeBackend()
    q, _ = make(b, tmp_path, max_parallel=4, gpu_count=2)
    for _ in range(4):
        q.submit(spec("ok", "0.05", gpus=1), run_dir=tmp_path / "r")
    q.submit(spec("ok", "0.01"), run_dir=tmp_path / "r")  # no GPUs: not placed
    assert q.wait(10)
    assert b.max_per_gpu == 1
    assert q.pool.max_runs_per_gpu == 1
    assert sorted(e.get("CUDA_VISIBLE_DEVICES", "-") for e in b.envs) == ["-", "0", "0", "1", "1"]
    assert q.pool.load() == (0, 0)


def test_packing_two_runs_per_gpu(tmp_path: Path) -> None:
    b = FakeBackend()
    q, _ = make(b, tmp_path, max_parallel=4, gpu_count=2, per_gpu=2)
    for _ in range(4):
        q.submit(spec("ok", "0.1", gpus=1), run_dir=tmp_path / "r")
    assert q.wait(10)
    assert b.max_per_gpu == 2
    assert b.max_running == 4


@pytest.mark.parametrize(
    ("gpus", "count", "caps", "message"),
    [
        (3, 2, ALL, "has only 2"),
        (1, 0, ALL, "no GPUs"),
        (1, 2, frozenset({Capability.CANCEL}), "cannot give runs GPUs"),
    ],
)
def test_impossible_gpu_requests_fail_with_a_message(
    tmp_path: Path, gpus: int, count: int, caps: frozenset[Capability], message: str
) -> None:
    b = FakeBackend(caps)
    q, events = make(b, tmp_path, gpu_count=count)
    info = q.submit(spec("ok", "0.01", gpus=gpus), run_dir=tmp_path / "r")
    assert info.state == RunState.FAILED
    assert message in info.message
    assert not b.runs  # never submitted
    assert [e.kind for e in events] == [EventKind.QUEUED, EventKind.FINISHED]


def test_backend_that_places_gpus_reports_them(tmp_path: Path) -> None:
    b = FakeBackend(ALL | {Capability.PLACES_GPUS})
    q, _ = make(b, tmp_path, gpu_count=0)  # Costmeter sees no GPUs; the backend has them
    info = q.submit(spec("ok", "0.05", gpus=2), run_dir=tmp_path / "r")
    assert q.wait(5)
    assert b.placements == [()]
    assert "CUDA_VISIBLE_DEVICES" not in b.envs[0]
    assert q.info(info.key).gpu_indices == (0, 1)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (BackendError("The cluster is full."), "The cluster is full."),
        (ZeroDivisionError("oops"), "failed to start the run: ZeroDivisionError: oops"),
    ],
)
def test_submit_raising_fails_the_run(tmp_path: Path, error: Exception, message: str) -> None:
    q, _ = make(FakeBackend(submit_error=error), tmp_path)
    info = q.submit(spec("ok"), run_dir=tmp_path / "r")
    assert q.wait(5)
    final = q.info(info.key)
    assert final.state == RunState.FAILED
    assert message in final.message
    assert q.submit(spec("ok"), run_dir=tmp_path / "r") is not None  # the slot was freed
    assert q.wait(5)


def test_status_that_keeps_failing_loses_the_run(tmp_path: Path) -> None:
    q, _ = make(FakeBackend(status_error=RuntimeError("gone")), tmp_path)
    info = q.submit(spec("ok"), run_dir=tmp_path / "r")
    assert q.wait(5)
    final = q.info(info.key)
    assert final.state == RunState.LOST
    assert "RuntimeError: gone" in final.message


@pytest.mark.parametrize("stop", [True, False])
def test_stop_on_failure(tmp_path: Path, stop: bool) -> None:
    b = FakeBackend()
    q, _ = make(b, tmp_path, max_parallel=1, stop_on_failure=stop)
    q.submit(spec("fail", "0.02"), run_dir=tmp_path / "r")
    q.submit(spec("ok", "0.02"), run_dir=tmp_path / "r")
    q.submit(spec("ok", "0.02"), run_dir=tmp_path / "r")
    assert q.wait(5)
    if stop:
        assert states(q) == [RunState.FAILED, RunState.CANCELLED, RunState.CANCELLED]
        assert "Not started" in q.runs()[1].message
        assert len(b.runs) == 1
    else:
        assert states(q) == [RunState.FAILED, RunState.SUCCEEDED, RunState.SUCCEEDED]
    assert q.runs()[0].message == "The run exited with code 1."


def test_time_limit_cancels(tmp_path: Path) -> None:
    q, _ = make(FakeBackend(), tmp_path)
    info = q.submit(spec("hang", time_limit_s=0.2), run_dir=tmp_path / "r")
    t0 = time.monotonic()
    assert q.wait(5)
    final = q.info(info.key)
    assert final.state == RunState.CANCELLED
    assert "time limit of 0.2 s" in final.message
    assert final.exit_code == -15
    assert 0.2 <= time.monotonic() - t0 < 2


def test_check_callback_cancels_with_its_reason(tmp_path: Path) -> None:
    calls = []

    def check(info):
        calls.append(info.key)
        return "Stopped: over budget." if len(calls) >= 3 else None

    q, _ = make(FakeBackend(), tmp_path, check=check)
    info = q.submit(spec("hang"), run_dir=tmp_path / "r")
    assert q.wait(5)
    assert q.info(info.key).state == RunState.CANCELLED
    assert q.info(info.key).message == "Stopped: over budget."


def test_cancel_queued_and_running(tmp_path: Path) -> None:
    q, _ = make(FakeBackend(), tmp_path, max_parallel=1)
    running = q.submit(spec("hang"), run_dir=tmp_path / "r")
    queued = q.submit(spec("hang"), run_dir=tmp_path / "r")
    time.sleep(0.05)
    assert q.cancel(queued.key, "Not needed.")
    assert q.cancel(running.key)
    assert q.wait(5)
    assert q.info(queued.key).state == RunState.CANCELLED
    assert q.info(queued.key).message == "Not needed."
    assert q.info(running.key).state == RunState.CANCELLED
    assert not q.cancel(running.key)  # already finished


def test_events_and_output(tmp_path: Path) -> None:
    q, events = make(FakeBackend(), tmp_path, stream_logs=True)
    info = q.submit(spec("ok", "0.05"), run_dir=tmp_path / "r")
    assert q.wait(5)
    kinds = [e.kind for e in events if e.run.key == info.key]
    assert kinds[0] == EventKind.QUEUED
    assert kinds[1] == EventKind.STARTED
    assert kinds[-1] == EventKind.FINISHED
    text = "".join(e.text for e in events if e.kind == EventKind.OUTPUT)
    assert text == "hello from r0\n"
    started = next(e for e in events if e.kind == EventKind.STARTED)
    assert started.run.pids == (4242,)
    assert started.run.handle is not None
