"""The Runs page with real processes on simulated GPUs: launch, status, cost, output, cancel,
refusals in the launch dialog, sweeps, the estimate, and a responsive window while the run
service is slow."""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QMessageBox

from costmeter.gui.bridge import MonitorBridge, Started
from costmeter.gui.models.run_model import COL_COST, COL_MESSAGE, COL_STATUS, RunView
from costmeter.gui.pages.processes import ProcessesPage
from costmeter.gui.pages.runs import RunsPage
from costmeter.gui.run_manager import BackendChoice, RunManager
from costmeter.gui.widgets.launch_dialog import LaunchDialog
from costmeter.plugin_api import BackendConfig
from costmeter.runs.events import EventKind, RunEvent
from costmeter.runs.local import LocalBackend
from costmeter.runs.registry import BackendInfo, GuardedBackend
from costmeter.service.run_launch import LaunchError, LaunchForm, build_request
from costmeter.service.runs import RunService
from costmeter.store.runs import UNFINISHED, RunStore

pytestmark = [pytest.mark.gui, pytest.mark.integration]
PY = shlex.quote(sys.executable)
SIM = "a100:train,t4:idle"


@pytest.fixture
def page(make_ctx, qtbot, tmp_path: Path) -> Iterator[RunsPage]:
    """A Runs page on a monitor sampling two simulated GPUs every 0.2 s."""
    ctx = make_ctx(db_path=tmp_path / "runs.db")
    ctx.simulate = SIM
    bridge = MonitorBridge(ctx.db_path, ctx.config, simulate=SIM, interval_s=0.2)

    def started(s: Started) -> None:
        ctx.live.set_devices(s.host_info, s.devices)

    bridge.started.connect(started)
    bridge.ticked.connect(lambda tick, _devices: ctx.live.push(tick))
    ctx.runs = RunManager(ctx, bridge)
    p = RunsPage(ctx)
    qtbot.addWidget(p)
    p.resize(1300, 700)
    p.show()
    bridge.start()
    qtbot.waitUntil(
        lambda: bridge.monitor is not None and len(ctx.live.devices) == 2, timeout=15_000
    )
    yield p
    manager = ctx.runs
    manager.cancel_all("Test over.")
    try:
        qtbot.waitUntil(manager.settled, timeout=15_000)
    except Exception:
        print({k: (i.state, i.started) for k, i in manager.runs.items()}, manager._settling)
        raise
    manager.shutdown()
    bridge.stop()


def launch(page: RunsPage, qtbot, **fields: object) -> LaunchDialog:
    """Fill the launch dialog as a user would and press Launch."""
    dialog = page.open_launch_dialog()
    assert dialog is not None
    dialog.command.setText(str(fields.pop("command")))
    if "gpus" in fields:
        dialog.gpus.setValue(int(fields.pop("gpus")))  # type: ignore[call-overload]
    if "grid" in fields:
        dialog.grid.setPlainText(str(fields.pop("grid")))
    if "max_parallel" in fields:
        dialog.max_parallel.setValue(int(fields.pop("max_parallel")))  # type: ignore[call-overload]
    if "name" in fields:
        dialog.name.setText(str(fields.pop("name")))
    assert not fields, fields
    dialog.buttons.accepted.emit()
    return dialog


def view(page: RunsPage, run_id: int) -> RunView | None:
    return page.model.find(run_id)


def cell(page: RunsPage, run_id: int, col: int) -> str:
    for r in range(page.model.rowCount()):
        if page.model.row(r).id == run_id:
            return str(page.model.index(r, col).data())
    raise AssertionError(f"no row for run {run_id}")


def watch(page: RunsPage) -> list[RunEvent]:
    events: list[RunEvent] = []
    page.manager.run_event.connect(events.append)
    return events


def first_run(qtbot, events: list[RunEvent]) -> int:
    qtbot.waitUntil(lambda: any(e.kind == EventKind.QUEUED for e in events), timeout=10_000)
    return next(e.run.key for e in events if e.kind == EventKind.QUEUED)


def costed(events: list[RunEvent], run_id: int) -> bool:
    return any(e.kind == EventKind.COSTED and e.run.key == run_id for e in events)


def test_a_run_goes_from_queued_to_succeeded_with_its_cost_output_and_estimate(page, qtbot):
    events = watch(page)
    command = f"{PY} -c \"print('hello from the run'); import time; time.sleep(0.8)\""
    dialog = launch(page, qtbot, command=command, gpus=1)
    assert dialog.result() == dialog.DialogCode.Accepted
    run_id = first_run(qtbot, events)
    qtbot.waitUntil(lambda: costed(events, run_id), timeout=20_000)
    states = [e.run.state.value for e in events if e.run.key == run_id]
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
    page.refresh()
    qtbot.waitUntil(lambda: (v := view(page, run_id)) is not None and v.cost_final, timeout=10_000)
    with RunStore.open(page.ctx.db_path) as store:
        row = store.get(run_id)
    assert row is not None and row.status == "succeeded" and row.exit_code == 0
    assert row.cost is not None and row.cost > 0 and row.gpus == [0]
    shown = view(page, run_id)
    assert shown is not None and shown.cost == row.cost and shown.gpus == (0,)
    assert cell(page, run_id, COL_STATUS) == "succeeded"
    assert cell(page, run_id, COL_MESSAGE) == "exit 0"
    assert cell(page, run_id, COL_COST).startswith("$") and "so far" not in cell(page, run_id, 7)
    # The run was selected on launch: its output is in the log view.
    assert page.log.run_id == run_id
    qtbot.waitUntil(lambda: "hello from the run" in page.log.plain_text(), timeout=10_000)
    # The next launch of the same command is estimated from this one.
    again = page.open_launch_dialog()
    assert again is not None
    again.command.setText(command)
    again.gpus.setValue(1)
    qtbot.waitUntil(lambda: "from 1 past run" in again.estimate.text(), timeout=10_000)
    again.gpus.setValue(0)  # another GPU count is another command
    qtbot.waitUntil(lambda: "no past runs" in again.estimate.text(), timeout=10_000)
    again.reject()


def test_cancelling_a_sleeping_run_and_its_pid_on_the_processes_page(page, qtbot, monkeypatch):
    events = watch(page)
    launch(page, qtbot, command=f'{PY} -c "import time; time.sleep(60)"', gpus=1, name="sleeper")
    run_id = first_run(qtbot, events)
    qtbot.waitUntil(lambda: page.manager.runs[run_id].pids != (), timeout=10_000)
    pid = page.manager.runs[run_id].pids[0]
    # The Processes page names the run beside its PID (it is on the simulated GPU too).
    processes = ProcessesPage(page.ctx)
    qtbot.addWidget(processes)

    def named() -> bool:
        processes._last_tick_ts = None
        processes.on_live()
        return any(r.pid == pid and r.run == "sleeper" for r in processes.model.rows())

    qtbot.waitUntil(named, timeout=10_000)
    assert any(r.pid == pid and r.gpus == (0,) for r in processes.model.rows())
    assert page.select_run(run_id)
    assert page.cancel_button.isEnabled()
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.Yes)
    assert page.cancel_selected() is not None
    qtbot.waitUntil(lambda: cell(page, run_id, COL_STATUS) == "cancelled", timeout=15_000)
    assert "Cancelled" in cell(page, run_id, COL_MESSAGE)
    qtbot.waitUntil(lambda: costed(events, run_id), timeout=15_000)
    assert not page.cancel_button.isEnabled()
    with RunStore.open(page.ctx.db_path) as store:
        row = store.get(run_id)
    assert row is not None and row.status == "cancelled"


def test_a_command_not_found_and_a_run_killed_from_outside_fail_with_their_reason(page, qtbot):
    events = watch(page)
    launch(page, qtbot, command="no-such-command-costmeter --epochs 3")
    missing = first_run(qtbot, events)
    qtbot.waitUntil(lambda: cell(page, missing, COL_STATUS) == "failed", timeout=10_000)
    assert "command not found: 'no-such-command-costmeter'" in cell(page, missing, COL_MESSAGE)
    assert "command not found" in page.result.text()
    events.clear()
    launch(page, qtbot, command=f'{PY} -c "import time; time.sleep(60)"')
    killed = first_run(qtbot, events)
    qtbot.waitUntil(lambda: page.manager.runs[killed].pids != (), timeout=10_000)
    os.kill(page.manager.runs[killed].pids[0], signal.SIGKILL)
    qtbot.waitUntil(lambda: cell(page, killed, COL_STATUS) == "failed", timeout=10_000)
    assert "SIGKILL" in cell(page, killed, COL_MESSAGE)
    assert cell(page, killed, COL_MESSAGE).startswith("exit -9")


def test_the_launch_dialog_refuses_bad_input_without_launching(page, qtbot):
    cases = [
        (f'{PY} -c "print(1)', "cannot be split", "command"),
        ("python train.py --lr {lr}", "{lr}", "grid"),
    ]
    for command, words, _field in cases:
        dialog = page.open_launch_dialog()
        assert dialog is not None
        dialog.command.setText(command)
        assert dialog.try_accept() is False
        assert dialog.isVisible() and words in dialog.error.text()
        dialog.reject()
    # The GPUs box goes up to the GPUs the monitor sees; one lost meanwhile is refused in words.
    dialog = page.open_launch_dialog()
    assert dialog is not None
    assert dialog.gpus.maximum() == 2
    dialog.command.setText(f'{PY} -c "pass"')
    dialog.gpus.setValue(2)
    fake = page.manager.bridge.fake if page.manager.bridge is not None else None
    assert fake is not None
    fake.lose_gpu(1)
    qtbot.waitUntil(lambda: len(page.ctx.live.lost_at) == 1, timeout=10_000)
    assert dialog.try_accept() is False
    assert "sees only 1" in dialog.error.text()
    dialog.reject()
    with pytest.raises(LaunchError) as err:
        build_request(LaunchForm(command="python t.py", gpus=3), gpu_limit=2)
    assert err.value.field == "gpus"
    with pytest.raises(LaunchError, match="not used"):
        build_request(LaunchForm(command="python t.py", grid="lr=1,2"), gpu_limit=2)
    qtbot.wait(300)
    assert page.manager.runs == {}
    with RunStore.open(page.ctx.db_path) as store:
        assert store.list_runs() == []


def test_a_sweep_of_two_values_makes_two_rows(page, qtbot):
    events = watch(page)
    launch(
        page,
        qtbot,
        command=f'{PY} -c "import sys; print(sys.argv[1])" {{v}}',
        grid="v=1,2",
        name="sq",
        max_parallel=2,
    )
    qtbot.waitUntil(lambda: sum(e.kind == EventKind.FINISHED for e in events) == 2, timeout=15_000)
    ids = sorted({e.run.key for e in events})
    assert len(ids) == 2
    names = [cell(page, i, 1) for i in ids]
    assert names == ["sq[v=1]", "sq[v=2]"]
    assert all(cell(page, i, COL_STATUS) == "succeeded" for i in ids)
    with RunStore.open(page.ctx.db_path) as store:
        rows = [store.get(i) for i in ids]
    sweeps = {r.sweep for r in rows if r is not None}
    assert len(sweeps) == 1 and sweeps.pop().startswith("sq-")


def test_the_window_stays_responsive_while_the_run_service_is_slow(page, qtbot, monkeypatch):
    real_live = RunService.live
    started: list[float] = []

    def slow_live(self: RunService, run_id: int, now: float | None = None) -> object:
        started.append(time.monotonic())
        time.sleep(2.0)
        return real_live(self, run_id, now)

    monkeypatch.setattr(RunService, "live", slow_live)
    events = watch(page)
    launch(page, qtbot, command=f'{PY} -c "import time; time.sleep(60)"')
    run_id = first_run(qtbot, events)
    qtbot.waitUntil(lambda: page.manager.runs[run_id].started is not None, timeout=10_000)
    beats: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: beats.append(time.monotonic()))
    timer.start(20)
    page.poll_live()
    qtbot.waitUntil(lambda: bool(started), timeout=5000)
    qtbot.waitUntil(lambda: run_id in page._live, timeout=10_000)
    timer.stop()
    during = [b for b in beats if started[0] <= b <= started[0] + 2.0]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert len(during) > 40  # ~100 expected at 20 ms
    assert max(gaps) < 0.5
    assert "so far" in cell(page, run_id, COL_COST)


def _window_with_a_sleeping_run(qtbot, make_ctx, tmp_path: Path, monkeypatch, choice: str):
    from costmeter.gui.main_window import MainWindow

    ctx = make_ctx(db_path=tmp_path / "w.db")
    ctx.simulate = SIM
    bridge = MonitorBridge(ctx.db_path, ctx.config, simulate=SIM, interval_s=0.2)
    window = MainWindow(ctx, bridge)
    qtbot.addWidget(window)
    window.show()
    bridge.start()
    window.show_page("runs")
    page = window.current_page()
    assert isinstance(page, RunsPage)
    qtbot.waitUntil(lambda: bridge.monitor is not None, timeout=15_000)
    events = watch(page)
    launch(page, qtbot, command=f'{PY} -c "import time; time.sleep(60)"')
    run_id = first_run(qtbot, events)
    qtbot.waitUntil(lambda: page.manager.runs[run_id].pids != (), timeout=10_000)
    asked: list[int] = []

    def ask(count: int) -> str:
        asked.append(count)
        return choice

    monkeypatch.setattr(window, "ask_about_runs", ask)
    return window, page, run_id, asked


def test_closing_the_window_can_cancel_the_runs_going(qtbot, make_ctx, tmp_path, monkeypatch):
    window, _page, run_id, asked = _window_with_a_sleeping_run(
        qtbot, make_ctx, tmp_path, monkeypatch, "stay"
    )
    window.close()
    assert asked == [1] and window.isVisible()  # "don't close"
    monkeypatch.setattr(window, "ask_about_runs", lambda n: asked.append(n) or "cancel")
    window.close()
    assert "Cancelling 1 run" in window.status.text()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20_000)
    assert asked == [1, 1]
    with RunStore.open(window.ctx.db_path) as store:
        row = store.get(run_id)
    assert row is not None and row.status == "cancelled" and row.cost is not None


def test_closing_the_window_can_leave_the_runs_going(qtbot, make_ctx, tmp_path, monkeypatch):
    window, page, run_id, asked = _window_with_a_sleeping_run(
        qtbot, make_ctx, tmp_path, monkeypatch, "leave"
    )
    pid = page.manager.runs[run_id].pids[0]
    try:
        window.close()
        assert asked == [1] and not window.isVisible()
        os.kill(pid, 0)  # still running
        with RunStore.open(window.ctx.db_path) as store:
            row = store.get(run_id)
        assert row is not None and row.status == "running"
        assert "stopped watching it" in row.message
    finally:
        os.killpg(pid, signal.SIGKILL)
        # The window left the run going and its service watching it, as the app does until the
        # process exits; the test ends the run, then closes that service (no thread outlives it).
        service = page.manager.session.owner(run_id)
        if service is not None:
            qtbot.waitUntil(lambda: service.row(run_id).status not in UNFINISHED, timeout=15_000)
            service.close()


class _BrokenSubmit(LocalBackend):
    """A backend whose submit has a bug."""

    def submit(self, spec, placement, env, run_dir):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")


def test_an_unknown_backend_and_a_plugin_raising_in_submit_give_failed_rows(
    page, qtbot, monkeypatch
):
    from costmeter.service import run_session

    real = run_session.open_backend

    def open_backend(
        name: str, db_path: Path, config: object, overrides: object = None
    ) -> GuardedBackend:
        if name != "broken":
            return real(name, db_path, config, overrides=overrides)  # type: ignore[arg-type]
        backend = _BrokenSubmit(BackendConfig(state_dir=db_path.parent))
        return GuardedBackend(name, backend, backend.metadata, BackendInfo(name, "tests:Broken"))

    monkeypatch.setattr(run_session, "open_backend", open_backend)
    request = build_request(LaunchForm(command=f'{PY} -c "pass"', backend="nope"), gpu_limit=2)
    page.manager.launch(request)
    qtbot.waitUntil(lambda: "no backend named 'nope'" in page.result.text(), timeout=10_000)
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=10_000)
    (refused,) = page.model.rows()
    assert refused.status == "failed" and refused.backend == "nope"
    assert "no backend named 'nope'" in refused.message
    events = watch(page)
    request = build_request(LaunchForm(command=f'{PY} -c "pass"', backend="broken"), gpu_limit=2)
    page.manager.launch(request)
    run_id = first_run(qtbot, events)
    qtbot.waitUntil(lambda: cell(page, run_id, COL_STATUS) == "failed", timeout=10_000)
    message = cell(page, run_id, COL_MESSAGE)
    assert "failed in submit: ZeroDivisionError" in message and "a bug in the plugin" in message
    with RunStore.open(page.ctx.db_path) as store:
        row = store.get(run_id)
    assert row is not None and row.status == "failed" and row.backend == "broken"


def test_failed_backends_are_listed_disabled_with_their_error(page, qtbot):
    choices = [
        BackendChoice("local", True, description="Runs commands as processes on this machine."),
        BackendChoice("ray", False, error="backend 'ray' could not be imported: ImportError."),
    ]
    page.manager.choices = choices
    dialog = page.open_launch_dialog()
    assert dialog is not None
    model = dialog.backend.model()
    assert isinstance(model, QStandardItemModel)
    ray = model.item(1)
    assert ray.text() == "ray (failed)" and not ray.isEnabled()
    assert "could not be imported" in ray.toolTip()
    assert dialog.backend.currentText() == "local"
    dialog.backend.setCurrentIndex(1)  # programmatically: a user cannot pick it
    dialog.command.setText(f'{PY} -c "pass"')
    assert dialog.try_accept() is False
    assert "cannot be used" in dialog.error.text()
    dialog.reject()
