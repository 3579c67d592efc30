"""The run service end to end: real processes through the local backend, a monitor sampling
simulated GPUs, rows in the database, attribution and cost."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.plugin_api import BackendConfig, BackendError, RunSpec
from costmeter.runs.events import EventKind, RunEvent
from costmeter.runs.local import LocalBackend
from costmeter.runs.registry import BackendInfo, GuardedBackend
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.service.runs import RunService, RunServiceOptions

pytestmark = pytest.mark.integration
PY = sys.executable
_LOOPS: dict[int, list[threading.Thread]] = {}
#: Spins for {s} seconds of CPU time, not of wall time: on a loaded machine a wall-time loop
#: gets a fraction of a core, and a check of the CPU billed to the run would fail for the load.
BUSY = "import time\nt=time.process_time()\nwhile time.process_time()-t<{s}: pass\n"


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(
        MonitorOptions(
            db_path=tmp_path / "c.db",
            config=Config(),
            interval_s=0.1,
            simulate="a100:train,a100:train",
        ),
        on_message=lambda m: None,
    )
    mon.open()
    yield mon
    mon.stop()
    for thread in _LOOPS.pop(id(mon), []):
        thread.join(5)
    mon.close()


def make_service(monitor: Monitor, tmp_path: Path, **kw: object) -> RunService:
    options = RunServiceOptions(
        db_path=monitor.options.db_path,
        pricing=Config().pricing(),
        monitor=monitor,
        simulated_runs_only=True,
        poll_s=0.05,
        check_interval_s=0.2,
        grace_s=1.0,
        **kw,  # type: ignore[arg-type]
    )
    service = RunService(LocalBackend(BackendConfig(state_dir=tmp_path)), options)
    # Start sampling only now: the service has taken the simulated stand-ins off.
    if id(monitor) not in _LOOPS:
        thread = threading.Thread(target=monitor.run_until, args=(None,), daemon=True)
        thread.start()
        _LOOPS[id(monitor)] = [thread]
    return service


def test_run_on_a_simulated_gpu_is_attributed(monitor: Monitor, tmp_path: Path) -> None:
    service = make_service(monitor, tmp_path, gpu_count=2)
    fake = monitor.fake
    assert fake is not None
    assert fake.simulated_pids() == []  # stand-ins taken off
    seen: dict[str, object] = {}

    def watch(e: RunEvent) -> None:
        if e.kind == EventKind.STARTED:
            seen["pid"] = e.run.pids[0]
            seen["on_gpu"] = [p.pid for p in fake.devices[e.run.gpu_indices[0]].processes]
            seen["env"] = True

    service.subscribe(watch)
    rid = service.submit(RunSpec(argv=(PY, "-c", BUSY.format(s=0.8)), gpus=1, name="busy"))
    assert service.wait(20)
    row = service.row(rid)
    assert row is not None
    assert row.status == "succeeded" and row.exit_code == 0
    assert seen["on_gpu"] == [seen["pid"]]  # the run's real PID is on its simulated GPU
    assert fake.simulated_pids() == []  # and taken off when it ended
    assert row.pids[0] == seen["pid"] or seen["pid"] in row.pids
    assert row.gpus in ([0], [1])
    shares = service.store.samples(row).devices[0].rows
    assert sum(1 for r in shares if r.run_procs == 1) >= 3  # its GPU samples name its PID
    assert row.duration_s is not None and row.gpu_seconds is not None
    assert row.gpu_seconds == pytest.approx(row.duration_s, rel=0.1)
    assert row.cpu_seconds is not None and row.cpu_seconds >= 0.4  # it spun a core
    assert row.cost is not None and row.cost > 0 and row.energy_kwh
    cost = service.cost(rid)
    assert cost is not None and cost.cost == pytest.approx(row.cost)
    service.close()


def test_sweep_never_puts_two_runs_on_a_gpu(monitor: Monitor, tmp_path: Path) -> None:
    service = make_service(monitor, tmp_path, gpu_count=2, max_parallel=2)
    ids = [service.submit(RunSpec(argv=(PY, "-c", BUSY.format(s=0.3)), gpus=1)) for _ in range(4)]
    assert service.wait(30)
    rows = [service.row(i) for i in ids]
    assert all(r is not None and r.status == "succeeded" for r in rows)
    # From the rows: at no instant do two runs overlap on one GPU, and two ran at once.
    spans = [(r.started, r.ended, r.gpus[0]) for r in rows if r and r.started and r.ended]
    overlaps_same_gpu = sum(
        1
        for a in spans
        for b in spans
        if a is not b and a[2] == b[2] and a[0] < b[1] and b[0] < a[1]
    )
    assert overlaps_same_gpu == 0
    assert service.queue.max_parallel_seen == 2
    assert service.queue.pool.max_runs_per_gpu == 1
    print(f"observed: {service.queue.max_parallel_seen} runs at once, at most "
          f"{service.queue.pool.max_runs_per_gpu} per GPU")  # fmt: skip
    service.close()


def test_stop_on_failure_and_bad_commands(monitor: Monitor, tmp_path: Path) -> None:
    service = make_service(monitor, tmp_path, stop_on_failure=True)
    fail = service.submit(RunSpec(argv=(PY, "-c", "raise SystemExit(3)")))
    later = service.submit(RunSpec(argv=(PY, "-c", "pass")))
    assert service.wait(20)
    assert service.row(fail).status == "failed"  # type: ignore[union-attr]
    assert service.row(fail).exit_code == 3  # type: ignore[union-attr]
    assert service.row(later).status == "cancelled"  # type: ignore[union-attr]
    service.close()

    service = make_service(monitor, tmp_path, gpu_count=2)
    missing = service.submit(RunSpec(argv=("no-such-command-costmeter",)))
    too_many = service.submit(RunSpec(argv=(PY, "-c", "pass"), gpus=3))
    assert service.wait(20)
    row = service.row(missing)
    assert row is not None and row.status == "failed"
    assert "command not found" in row.message
    row = service.row(too_many)
    assert row is not None and row.status == "failed" and "only 2" in row.message
    service.close()


def test_budget_time_limit_and_outside_kill(monitor: Monitor, tmp_path: Path) -> None:
    service = make_service(monitor, tmp_path, gpu_count=2, max_parallel=3)
    sleep = (PY, "-c", "import time; time.sleep(30)")
    # An A100 costs about $0.0008 a second: a budget of $0.0005 lasts under a second.
    budget = service.submit(RunSpec(argv=sleep, gpus=1, budget=0.0005))
    limit = service.submit(RunSpec(argv=sleep, time_limit_s=0.5))

    def kill(e: RunEvent) -> None:
        if e.kind == EventKind.STARTED and e.run.name == "victim":
            os.kill(e.run.pids[0], signal.SIGKILL)

    service.subscribe(kill)
    victim = service.submit(RunSpec(argv=sleep, name="victim"))
    assert service.wait(20)
    b, t, v = (service.row(i) for i in (budget, limit, victim))
    assert b is not None and b.status == "cancelled" and "budget" in b.message, b
    assert b.duration_s is not None and b.duration_s < 10
    assert t is not None and t.status == "cancelled" and "time limit" in t.message
    assert t.duration_s is not None and t.duration_s < 5
    assert v is not None and v.status == "failed" and v.exit_code == -9
    assert "outside Costmeter" in v.message
    service.close()


class _Exploding(LocalBackend):
    def submit(self, *args: object, **kw: object):  # type: ignore[override]
        raise ZeroDivisionError("division by zero in the plugin")


def test_plugin_raising_in_submit(monitor: Monitor, tmp_path: Path) -> None:
    raw = _Exploding(BackendConfig(state_dir=tmp_path))
    guarded = GuardedBackend("boom", raw, raw.metadata, BackendInfo("boom", "x:Y"))
    service = RunService(
        guarded,
        RunServiceOptions(db_path=monitor.options.db_path, pricing=Config().pricing()),
    )
    rid = service.submit(RunSpec(argv=(PY, "-c", "pass")))
    assert service.wait(10)
    row = service.row(rid)
    assert row is not None and row.status == "failed" and row.backend == "boom"
    assert "failed in submit: ZeroDivisionError" in row.message
    assert isinstance(BackendError("x"), Exception)
    service.close()


def test_progress_forecast_and_estimate(monitor: Monitor, tmp_path: Path) -> None:
    script = (
        "import time\nfrom costmeter import progress\n"
        "for i in range(1, 9):\n    time.sleep(0.1)\n    progress.report(i, 8, loss=1 / i)\n"
    )
    service = make_service(monitor, tmp_path)
    first = service.submit(RunSpec(argv=(PY, "-c", script)))
    assert service.wait(20)
    live = service.live(first)
    assert live is not None
    assert live.fraction == 1.0 and live.step == 8 and live.total == 8
    assert live.forecast == pytest.approx(live.cost.cost)
    second = service.submit(RunSpec(argv=(PY, "-c", script)))
    assert service.wait(20)
    est = service.estimate((PY, "-c", script), 0)
    assert est.runs == 2
    row = service.row(second)
    assert row is not None and row.estimate_runs == 1
    assert row.estimate == pytest.approx(service.row(first).cost)  # type: ignore[union-attr]
    assert Path(row.run_dir or "", "output.log").exists()
    service.close()
