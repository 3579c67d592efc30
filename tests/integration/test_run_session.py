"""``RunSession`` without Qt: real processes through the local backend, one GPU pool for every
service of the session, logs and live figures through the run's owner, runs left going."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.core import CostmeterError
from costmeter.plugin_api import RunSpec, RunState
from costmeter.runs.events import EventKind, RunEvent
from costmeter.service.run_session import LEFT_RUNNING, RunSession, SessionOptions
from costmeter.store.runs import RunStore

pytestmark = pytest.mark.integration
PY = sys.executable


@pytest.fixture
def events() -> list[RunEvent]:
    return []


@pytest.fixture
def session(tmp_path: Path, events: list[RunEvent]) -> Iterator[RunSession]:
    lock = threading.Lock()

    def listen(event: RunEvent) -> None:
        with lock:
            events.append(event)

    made = RunSession(
        tmp_path / "s.db",
        config=Config,
        gpu_count=lambda: 2,
        listener=listen,
        options=SessionOptions(poll_s=0.05, grace_s=1.0),
    )
    yield made
    made.cancel_all("test over")
    assert made.wait(20)
    made.close()
    made.close_backends()


def sleeper(seconds: float, gpus: int, name: str) -> RunSpec:
    return RunSpec(argv=(PY, "-c", f"import time; time.sleep({seconds})"), gpus=gpus, name=name)


def test_two_services_share_the_machines_gpus_and_wake_each_other(session: RunSession) -> None:
    pricing = Config().pricing()
    first = session.service("local", None, pricing)
    second = session.service("local", "infer", pricing)
    assert first is not second and session.service("local", None, pricing) is first
    assert first.queue.pool is second.queue.pool is session.gpus
    assert session.backend("local") is first.backend is second.backend
    (a,) = session.submit(first, [sleeper(0.6, 2, "a")])
    (b,) = session.submit(second, [sleeper(0.1, 2, "b")])
    # b waits for both GPUs, which a holds; when a ends, b's queue must be woken to start it.
    assert session.wait(20)
    with RunStore.open(session.db_path) as store:
        row_a, row_b = store.get(a), store.get(b)
    assert row_a is not None and row_b is not None
    assert row_a.status == row_b.status == RunState.SUCCEEDED.value
    assert row_a.ended is not None and row_b.started is not None
    assert row_b.started >= row_a.ended - 0.05  # never both on the same GPUs
    assert session.gpus is not None and session.gpus.max_runs_per_gpu == 1
    assert session.owner(a) is first and session.owner(b) is second


def test_events_reach_the_listener_and_logs_are_read_through_the_owner(
    session: RunSession, events: list[RunEvent], tmp_path: Path
) -> None:
    service = session.service("local", None, Config().pricing())
    spec = RunSpec(argv=(PY, "-c", "print('hello from the run')"), name="hello")
    (run_id,) = session.submit(service, [spec], max_parallel=2, per_gpu=1)
    assert session.wait(20)
    kinds = [e.kind for e in events if e.run.key == run_id]
    assert kinds[0] == EventKind.QUEUED and kinds[-1] == EventKind.COSTED
    assert "hello from the run" in session.log_reader(run_id)(0).text
    assert service.queue.max_parallel == 2
    # Another session (another window, after a restart) reads it through the stored handle.
    other = RunSession(session.db_path, config=Config)
    try:
        assert "hello from the run" in other.log_reader(run_id)(0).text
        assert other.owner(run_id) is None and not other.cancel(run_id)
        with pytest.raises(LookupError):
            other.log_reader(run_id + 100)
    finally:
        other.close()
        other.close_backends()


def test_runs_left_going_are_marked_and_their_service_stays_open(session: RunSession) -> None:
    service = session.service("local", None, Config().pricing())
    (run_id,) = session.submit(service, [sleeper(30, 0, "long")])
    deadline = time.monotonic() + 10
    while service.queue.info(run_id).state != RunState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.live([run_id])[run_id].cost is not None
    session.close(left=[run_id])
    row = service.row(run_id)
    assert row is not None and row.status == RunState.RUNNING.value
    assert row.message == LEFT_RUNNING
    assert session.cancel(run_id)


def test_an_unknown_backend_is_refused_with_a_sentence(session: RunSession) -> None:
    with pytest.raises(CostmeterError, match="nope"):
        session.service("nope", None, Config().pricing())
    assert session.services() == []
