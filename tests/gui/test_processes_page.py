"""The Processes page: rows from the live tick, numeric sorting, filtering, in-place updates,
and terminating a process after confirmation."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QMessageBox

from costmeter.core import DeviceSample, GpuProcess, HostSample, ProcessSample, Tick
from costmeter.gui.models.process_model import COLUMNS, SORT_ROLE, rows_from_tick
from costmeter.gui.pages.processes import ProcessesPage
from costmeter.sampling.simulated import PID_BASE
from costmeter.store.testing import GIB

pytestmark = pytest.mark.gui

T0 = 1_700_000_000.0
MIB = 1 << 20


def _host(ts: float, procs: list[ProcessSample]) -> HostSample:
    return HostSample(
        ts, 10.0, (10.0,), 0, 0, 0, 8 * GIB, 64 * GIB, 0, 0, 0, 0, 0, processes=tuple(procs)
    )


def _proc(
    pid: int,
    cmd: str,
    user: str = "alice",
    cpu: float = 50.0,
    rss: int = GIB,
    created: float = 1.0e9,
) -> ProcessSample:
    return ProcessSample(pid, created, cmd.split()[0], cmd, user, cpu, rss, 1.0)


def _tick(ts: float, gpu: dict[int, list[GpuProcess]], host: list[ProcessSample]) -> Tick:
    devices = tuple(
        DeviceSample(f"GPU-{i}", i, ts, gpu_util=50.0, processes=tuple(procs))
        for i, procs in sorted(gpu.items())
    )
    return Tick(ts=ts, host="h", host_sample=_host(ts, host), devices=devices)


def _three(ts: float = T0, train_mem: int = 10 * GIB) -> Tick:
    """PID 200 trains on GPUs 0 and 1; 1000 serves on GPU 1; 99 is a host-only child."""
    return _tick(
        ts,
        {
            0: [GpuProcess(200, train_mem, 90.0)],
            1: [GpuProcess(200, 2 * GIB, 70.0), GpuProcess(1000, 512 * MIB, 5.0)],
        },
        [
            _proc(99, "python dataloader.py", "bob", cpu=150.0, rss=3 * GIB),
            _proc(200, "python train.py --epochs 3", "alice", cpu=99.0),
            _proc(1000, "vllm serve llama", "carol", cpu=8.0, rss=20 * GIB),
        ],
    )


@pytest.fixture
def page(make_ctx, qtbot) -> ProcessesPage:
    ctx = make_ctx()
    p = ProcessesPage(ctx)
    qtbot.addWidget(p)
    p.resize(1100, 600)
    p.show()
    return p


def _show(page: ProcessesPage, tick: Tick) -> None:
    page.ctx.live.push(tick)
    page.on_live()


def _column(page: ProcessesPage, col: int) -> list[str]:
    return [page.proxy.index(r, col).data() for r in range(page.proxy.rowCount())]


def _sorted(page: ProcessesPage, col: int, order: Qt.SortOrder) -> list[str]:
    page.table.sortByColumn(col, order)
    return _column(page, 0)


def test_rows_are_the_union_of_gpu_and_host_processes(page):
    _show(page, _three())
    assert [
        page.model.headerData(c, Qt.Orientation.Horizontal) for c in range(len(COLUMNS))
    ] == list(COLUMNS)
    assert list(COLUMNS) == [
        "PID",
        "User",
        "Command",
        "GPU",
        "GPU memory",
        "SM %",
        "CPU %",
        "RSS",
        "Run",
        "Job",
        "Container",
    ]
    rows = {r.pid: r for r in page.model.rows()}
    assert set(rows) == {99, 200, 1000}
    texts = {
        pid: [page.model.index(i, c).data() for c in range(9)]
        for i, pid in enumerate(r.pid for r in page.model.rows())
    }
    assert texts[200] == [
        "200",
        "alice",
        "python train.py --epochs 3",
        "0, 1",
        "12.0 GiB",
        "80",
        "99.0",
        "1.0 GiB",
        "",
    ]
    assert texts[1000][3:6] == ["1", "512.0 MiB", "5"]
    assert texts[99][3:8] == ["—", "—", "—", "150.0", "3.0 GiB"]
    assert page.count.text() == "3 processes"
    assert "GPU 0: 10.0 GiB, 90 % SM" in page.model.index(1, 4).data(Qt.ItemDataRole.ToolTipRole)


def test_a_gpu_process_invisible_to_the_host_still_shows():
    tick = _tick(T0, {0: [GpuProcess(4242, GIB, None)]}, [])
    (row,) = rows_from_tick(tick)
    assert row.pid == 4242 and row.gpus == (0,) and row.command == "" and row.cpu_percent is None


def test_sorting_is_numeric_in_every_numeric_column(page):
    _show(page, _three())
    asc, desc = Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder
    assert _sorted(page, 0, asc) == ["99", "200", "1000"]  # not "1000" < "200" < "99"
    assert _sorted(page, 4, asc) == ["99", "1000", "200"]  # none < 512 MiB < 12 GiB
    assert _sorted(page, 4, desc) == ["200", "1000", "99"]
    assert _sorted(page, 6, asc) == ["1000", "200", "99"]  # 8 < 99 < 150 %
    assert _sorted(page, 7, asc) == ["200", "99", "1000"]  # 1 GiB < 3 GiB < 20 GiB
    assert _sorted(page, 5, asc) == ["99", "1000", "200"]
    assert _sorted(page, 3, asc) == ["99", "200", "1000"]  # none, "0, 1", "1"
    assert _sorted(page, 1, asc) == ["200", "99", "1000"]  # alice, bob, carol
    assert _sorted(page, 2, asc) == ["99", "200", "1000"]
    for col in range(len(COLUMNS)):
        assert page.proxy.index(0, col).data(SORT_ROLE) is not None


def test_filter_matches_command_user_and_pid(page, qtbot):
    _show(page, _three())
    qtbot.keyClicks(page.filter, "TRAIN")
    assert _column(page, 0) == ["200"]
    assert page.count.text() == "1 of 3 processes shown"
    page.filter.setText("carol")
    assert _column(page, 0) == ["1000"]
    page.filter.setText("99")
    assert _column(page, 0) == ["99"]
    page.filter.setText("nothing-like-this")
    assert _column(page, 0) == [] and "No process matches" in page.empty.text()
    page.filter.clear()
    assert len(_column(page, 0)) == 3 and page.count.text() == "3 processes"


def test_updates_in_place_keep_selection_and_sort(page):
    resets = []
    page.model.modelReset.connect(lambda: resets.append(1))
    _show(page, _three())
    page.table.sortByColumn(4, Qt.SortOrder.DescendingOrder)
    assert page.select_pid(1000)
    # PID 99 exits, 7 appears with the most GPU memory, 200's memory drops below 1000's.
    tick = _three(T0 + 1, train_mem=0)
    new = _tick(
        T0 + 1,
        {
            0: [*tick.devices[0].processes, GpuProcess(7, 40 * GIB, 99.0)],
            1: [GpuProcess(1000, 4 * GIB, 5.0)],
        },
        [p for p in tick.host_sample.processes if p.pid != 99] + [_proc(7, "python big.py")],
    )
    _show(page, new)
    assert _column(page, 0) == ["7", "1000", "200"]
    assert page.selected_row() is not None and page.selected_row().pid == 1000
    assert page.table.horizontalHeader().sortIndicatorSection() == 4
    assert resets == []
    assert page.count.text() == "3 processes"
    assert page.terminate_button.isEnabled()


def _command_line(pid: int) -> str:
    """The command line of a process just started: /proc/PID/cmdline reads empty for a moment
    while the kernel sets up the new program (Popen can return before that)."""
    deadline = time.monotonic() + 10
    while not (cmd := " ".join(psutil.Process(pid).cmdline())) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cmd, f"PID {pid} has no command line after 10 s"
    return cmd


def test_terminate_a_real_process_after_confirmation(page, monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cmd = _command_line(child.pid)
        created = psutil.Process(child.pid).create_time()
        _show(
            page,
            _tick(
                T0,
                {0: [GpuProcess(child.pid, GIB, 10.0)]},
                [_proc(child.pid, cmd, created=created)],
            ),
        )
        asked: list[str] = []

        def yes(parent, title, text, *args):
            asked.append(text)
            return QMessageBox.StandardButton.Yes

        monkeypatch.setattr(QMessageBox, "question", yes)
        assert page.select_pid(child.pid) and page.terminate_button.isEnabled()
        page.terminate_button.click()
        assert asked and asked[0].startswith(f"Send SIGTERM to PID {child.pid} ({cmd[:40]}")
        assert page.result.text().startswith(f"Sent SIGTERM to PID {child.pid}")
        assert child.wait(10) == -15
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def test_saying_no_sends_nothing(page, monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _show(page, _tick(T0, {}, [_proc(child.pid, "python -c sleep")]))
        monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.No)
        page.select_pid(child.pid)
        assert page.terminate_selected() is None
        assert child.poll() is None and page.result.text() == ""
    finally:
        child.kill()
        child.wait(10)


def test_simulated_pid_is_refused_without_asking(page, monkeypatch):
    _show(page, _tick(T0, {0: [GpuProcess(PID_BASE + 1, GIB, 90.0)]}, []))

    def never(*args):
        raise AssertionError("no confirmation for a process that cannot be terminated")

    monkeypatch.setattr(QMessageBox, "question", never)
    page.select_pid(PID_BASE + 1)
    message = page.terminate_selected()
    assert message is not None and "simulated" in message and page.result.text() == message


def test_an_exited_process_is_already_gone(page, monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    _show(page, _tick(T0, {0: [GpuProcess(child.pid, GIB, 1.0)]}, []))
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.Yes)
    page.select_pid(child.pid)
    assert page.terminate_selected() == f"PID {child.pid} has already exited."


def test_context_menu_offers_terminate(page):
    _show(page, _three())
    rect = page.table.visualRect(page.proxy.index(0, 2))
    page._context_menu(rect.center())
    pid = _column(page, 0)[0]
    menu = page.context_menu
    assert menu is not None
    assert [a.text() for a in menu.actions()] == [
        f"Terminate PID {pid}…",
        "Copy PID",
        "Copy command",
    ]
    assert str(page.selected_row().pid) == pid
    menu.close()
    page.context_menu = None
    page._context_menu(QPoint(5, 5000))  # below the rows: no menu
    assert page.context_menu is None


def test_sort_order_is_remembered(make_ctx, qtbot):
    ctx = make_ctx()
    first = ProcessesPage(ctx)
    qtbot.addWidget(first)
    first.table.sortByColumn(6, Qt.SortOrder.AscendingOrder)
    first.save_state(ctx.settings)
    second = ProcessesPage(ctx)
    qtbot.addWidget(second)
    second.restore_state(ctx.settings)
    header = second.table.horizontalHeader()
    assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (
        6,
        Qt.SortOrder.AscendingOrder,
    )


def test_empty_and_waiting_states(page):
    page.on_live()
    assert page.empty.text() == "Waiting for the first sample…"
    _show(page, _tick(T0, {}, []))
    assert "No process is using a GPU" in page.empty.text() and page.count.text() == "0 processes"
    assert not page.terminate_button.isEnabled()
