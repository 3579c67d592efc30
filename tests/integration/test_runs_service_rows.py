"""Run rows and events: every run's row names its directory, whichever way the run went, and
listeners are called off the runs' polling threads, in order, after the row has the event.

The directory is written with the run's first state change, not in a second write at submit:
a run that ran, one cancelled while queued and one refused before starting all have it.
Real processes through the local backend, a real database file, no monitor."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.plugin_api import BackendConfig, RunSpec
from costmeter.runs.events import EventKind, RunEvent
from costmeter.runs.local import LocalBackend
from costmeter.service.runs import RunService, RunServiceOptions

pytestmark = pytest.mark.integration
PY = sys.executable


def make_service(tmp_path: Path) -> RunService:
    return RunService(
        LocalBackend(BackendConfig(state_dir=tmp_path)),
        RunServiceOptions(
            db_path=tmp_path / "c.db",
            pricing=Config().pricing(),
            runs_dir=tmp_path / "runs",
            gpu_count=1,
            poll_s=0.05,
        ),
    )


def test_started_refused_and_cancelled_runs_have_their_directory(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    seen: dict[int, str | None] = {}

    def on_event(e: RunEvent) -> None:  # listeners get events after the row has them
        if e.kind in (EventKind.STARTED, EventKind.FINISHED) and e.run.key not in seen:
            row = service.row(e.run.key)
            seen[e.run.key] = row.run_dir if row is not None else None

    service.subscribe(on_event)
    ran = service.submit(RunSpec(argv=(PY, "-c", "import time; time.sleep(0.5)")))
    queued = service.submit(RunSpec(argv=(PY, "-c", "pass")))  # one at a time: it waits
    assert service.cancel(queued)
    refused = service.submit(RunSpec(argv=(PY, "-c", "pass"), gpus=2))  # 1 GPU here
    assert service.wait(30)
    rows = {i: service.row(i) for i in (ran, queued, refused)}
    statuses = [r.status for r in rows.values() if r is not None]
    assert statuses == ["succeeded", "cancelled", "failed"]
    for run_id, row in rows.items():
        assert row is not None and row.run_dir, run_id
        assert Path(row.run_dir).is_dir() and Path(row.run_dir).parent == tmp_path / "runs"
        assert Path(row.run_dir).name.startswith(f"{run_id}-")
        assert seen[run_id] == row.run_dir  # already there at the first event
    assert (Path(rows[ran].run_dir or "") / "output.log").exists()  # type: ignore[union-attr]
    service.close()


def test_a_listener_holding_an_event_does_not_hold_the_run(tmp_path: Path) -> None:
    """The queue notices the run's end while a listener still sits on its STARTED event; the
    events then arrive in order, each after its row was written."""
    service = make_service(tmp_path)
    gate = threading.Event()
    seen: list[tuple[EventKind, str | None]] = []

    def listen(e: RunEvent) -> None:
        if e.kind == EventKind.STARTED:
            gate.wait(20)
        row = service.row(e.run.key)
        seen.append((e.kind, row.status if row is not None else None))

    service.subscribe(listen)
    run_id = service.submit(RunSpec(argv=(PY, "-c", "pass")))
    deadline = time.monotonic() + 10
    while not service.queue.info(run_id).state.finished:
        assert time.monotonic() < deadline, "the run's end waited for a listener"
        time.sleep(0.01)
    gate.set()
    assert service.wait(30)
    assert [k for k, _ in seen] == [
        EventKind.QUEUED,
        EventKind.STARTED,
        EventKind.FINISHED,
        EventKind.COSTED,
    ]
    assert seen[1][1] in ("starting", "running")  # the STARTED row, not yet the end
    assert seen[2][1] == seen[3][1] == "succeeded"
    service.close()
