"""The Who pays page on a real store file written through the real writer: ticks whose processes
carry owners (alice, then bob; a third process whose owner could not be read). The page shows what
``chargeback()`` says for its period, one chart layer per owner, exports the rows, and an owner's
row opens Processes, Runs, History and Advice filtered to that owner."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from costmeter.advice.model import Recommendation
from costmeter.config import Config
from costmeter.core import DeviceSample, GpuProcess, HostSample, ProcessSample, Tick
from costmeter.core.clock import SystemClock
from costmeter.core.model import Interval
from costmeter.core.owner import Owner
from costmeter.cost.chargeback import (
    Amounts,
    ChargebackReport,
    OwnerGroup,
    SeriesPoint,
)
from costmeter.cost.ledger import format_money
from costmeter.gui.main_window import MainWindow
from costmeter.gui.models.process_model import (
    COL_CONTAINER,
    COL_JOB,
    ProcessTableModel,
    owner_matches,
    rows_from_tick,
)
from costmeter.gui.pages.processes import ProcessesPage
from costmeter.gui.pages.who_pays import WhoPaysPage
from costmeter.gui.who_pays_data import (
    IDLE,
    OTHERS,
    UNATTRIBUTED,
    OwnerFootprint,
    bucket_for,
    period_range,
    stacked_series,
    table_rows,
)
from costmeter.service import advice_snapshot
from costmeter.service.chargeback import chargeback
from costmeter.store import Store
from costmeter.store.testing import GIB, device_infos, host_info, make_tick
from costmeter.store.writer import Writer

from .test_advice_page import rec, result

pytestmark = pytest.mark.gui

ALICE = Owner(uid=1000, user="alice")
BOB = Owner(uid=1001, user="bob", job_id="4242", account="cv-lab")
#: Another user's process read without privilege: nothing known, every source refused.
HIDDEN = Owner(unreadable=frozenset({"uid", "environ", "cgroup"}))
DT = 30.0


def _tick(ts: float, first_hour: bool) -> Tick:
    """GPU 0: alice trains in the first hour, bob evaluates in the second. GPU 1: the hidden
    process serves in the first hour, then nobody holds it (machine idle)."""
    if first_hour:
        gpu = ([GpuProcess(1000, 8 * GIB, 90.0)], [GpuProcess(3000, 2 * GIB, 40.0)])
        procs = (
            ProcessSample(1000, 1e9, "python", "python train.py", "alice", 99.0, GIB, ts, ALICE),
            ProcessSample(3000, 1e9, "java", "java -jar serve.jar", "?", 10.0, GIB, ts, HIDDEN),
        )
    else:
        gpu = ([GpuProcess(2000, 4 * GIB, 60.0)], [])
        procs = (ProcessSample(2000, 1e9, "python", "python eval.py", "bob", 50.0, GIB, ts, BOB),)
    devices, intervals = [], {}
    for i, held in enumerate(gpu):
        uuid = f"GPU-box-{i}"
        power = 250.0 if held else 60.0
        devices.append(
            DeviceSample(
                uuid=uuid,
                index=i,
                ts=ts,
                gpu_util=80.0 if held else 0.0,
                mem_util=10.0,
                mem_used=8 * GIB,
                power_w=power,
                processes=tuple(held),
            )
        )
        intervals[uuid] = Interval(dt_s=DT, energy_j=power * DT, energy_measured=True)
    host = HostSample(
        ts, 20.0, (20.0,) * 8, 1.0, 1.0, 1.0, 16 * GIB, 64 * GIB, 0, 0, 0, 0, 0, processes=procs
    )
    return Tick(
        ts=ts,
        host="box",
        host_sample=host,
        devices=tuple(devices),
        device_intervals=intervals,
        host_interval=Interval(dt_s=DT, energy_j=20.0 * DT, energy_measured=False),
    )


@pytest.fixture(scope="module")
def owned_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours ending now, written by the recorder's writer (owners stored with processes)."""
    db = tmp_path_factory.mktemp("who") / "who.db"
    end = math.floor(time.time())
    start = end - 2 * 3600
    writer = Writer(db, clock=SystemClock())
    writer.start()
    try:
        writer.register(host_info("box"), device_infos("box", 2))
        ts = float(start)
        while ts < end:
            writer.submit(_tick(ts, ts < start + 3600), wait=True)
            ts += DT
        assert writer.flush(60)
    finally:
        writer.stop()
    return db


def _open(ctx, qtbot, by: tuple[str, str] = ("user", "")) -> WhoPaysPage:  # type: ignore[no-untyped-def]
    page = WhoPaysPage(ctx)
    qtbot.addWidget(page)
    page.resize(1100, 720)
    page.show()
    with qtbot.waitSignal(page.loaded, timeout=20_000):
        page.set_dimensions(*by)
    qtbot.waitUntil(lambda: page.has_data(), timeout=20_000)
    return page


def _expected(db: Path, page: WhoPaysPage) -> ChargebackReport:
    assert page.report is not None
    with Store.open(db) as store:
        return chargeback(store, Config(), page.report.start, page.report.end, page.report.by)


def _cells(page: WhoPaysPage, row: int) -> list[str]:
    return [page.proxy.index(row, c).data() for c in range(page.proxy.columnCount())]


def test_the_table_shows_what_chargeback_says_for_the_period(make_ctx, qtbot, owned_db) -> None:
    page = _open(make_ctx(owned_db), qtbot)
    report = page.report
    assert report is not None and report.by == ("user",)
    start, end = period_range("24h", report.end)
    assert (report.start, report.end) == (pytest.approx(start), pytest.approx(end))
    expected = _expected(owned_db, page)
    got = {g.key["user"]: g.amounts for g in report.groups}
    assert set(got) == {"alice", "bob"}
    for g in expected.groups:
        assert got[g.key["user"]].cost == pytest.approx(g.amounts.cost, rel=1e-9)
        assert got[g.key["user"]].gpu_hours == pytest.approx(1.0, rel=0.02)  # an hour each
    assert report.unattributed.cost == pytest.approx(expected.unattributed.cost, rel=1e-9)
    assert report.unattributed.gpu_hours == pytest.approx(1.0, rel=0.02)  # the hidden process
    assert report.idle.cost == pytest.approx(expected.idle.cost, rel=1e-9) and report.idle.cost > 0
    assert report.total.cost == pytest.approx(expected.total.cost, rel=1e-9)
    # What the user reads: owners by cost, then Unattributed, Idle and Total, in money.
    cur = report.currency
    rows = [_cells(page, r) for r in range(page.proxy.rowCount())]
    assert rows[0][0] == "Cost" or rows[0][0] in {"alice", "bob"}
    assert [r[0] for r in rows[-3:]] == [UNATTRIBUTED, IDLE, "Total"]
    assert {r[0] for r in rows[:-3]} == {"alice", "bob"}
    assert rows[-1][1] == format_money(expected.total.cost, cur)
    assert rows[-3][1] == format_money(expected.unattributed.cost, cur)
    by_name = {r[0]: r for r in rows}
    alice = next(g for g in expected.groups if g.key["user"] == "alice")
    assert by_name["alice"][1] == format_money(alice.amounts.cost, cur)
    assert by_name["alice"][5] == f"{alice.share * 100:.1f} %"
    parts = sum(g.amounts.cost for g in report.groups) + report.unattributed.cost
    assert parts + report.idle.cost == pytest.approx(report.total.cost, rel=0.01)
    # Why the hidden process is unattributed is said, not guessed.
    tip = page.proxy.index(page.proxy.rowCount() - 3, 0).data(Qt.ItemDataRole.ToolTipRole)
    assert "owner unreadable" in tip


def test_sorting_keeps_the_summary_rows_last(make_ctx, qtbot, owned_db) -> None:
    page = _open(make_ctx(owned_db), qtbot)
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        for col in range(page.proxy.columnCount()):
            page.table.sortByColumn(col, order)
            firsts = [page.proxy.index(r, 0).data() for r in range(page.proxy.rowCount())]
            assert firsts[-3:] == [UNATTRIBUTED, IDLE, "Total"]


def test_the_chart_has_one_layer_per_owner_and_idle(make_ctx, qtbot, owned_db) -> None:
    page = _open(make_ctx(owned_db), qtbot)
    chart = page.chart
    assert chart.labels == [IDLE, UNATTRIBUTED, "alice", "bob"]
    assert len(chart.bars) == 4
    assert page.bucket_s == 3600.0  # hourly bars for 24 hours
    heights = [list(bar.opts["height"]) for bar in chart.bars]
    y0s = [list(bar.opts["y0"]) for bar in chart.bars]
    # Stacked: each layer starts where the ones under it end.
    under = [0.0] * len(heights[0])
    for y0, height in zip(y0s, heights, strict=True):
        assert y0 == pytest.approx(under)
        under = [a + b for a, b in zip(under, height, strict=True)]
    report = page.report
    assert report is not None
    drawn = {label: sum(h) for label, h in zip(chart.labels, heights, strict=True)}
    owners = {g.key["user"]: g.amounts.cost for g in report.groups}
    assert drawn["alice"] == pytest.approx(owners["alice"], rel=1e-6)
    assert drawn["bob"] == pytest.approx(owners["bob"], rel=1e-6)
    # The series' idle is what it holds per bucket (the GPUs nobody held, its hourly points).
    idle_points = sum(p.cost for p in report.series if p.kind == "idle")
    assert drawn[IDLE] == pytest.approx(idle_points, rel=1e-6) and idle_points > 0
    # The GPU time of the process whose owner could not be read is drawn as its own layer.
    unread = sum(p.cost for p in report.series if p.kind == "unattributed")
    assert drawn[UNATTRIBUTED] == pytest.approx(unread, rel=1e-6) and unread > 0
    assert unread <= report.unattributed.cost + 1e-12


def test_two_dimensions_and_share_idle(make_ctx, qtbot, owned_db) -> None:
    page = _open(make_ctx(owned_db), qtbot, ("user", "account"))
    assert page.report is not None and page.report.by == ("user", "account")
    assert page.model.columns()[:2] == ("User", "Account")
    keys = {tuple(g.key.values()) for g in page.report.groups}
    assert keys == {("alice", None), ("bob", "cv-lab")}
    with qtbot.waitSignal(page.loaded, timeout=20_000):
        page.share_idle.setChecked(True)
    shared = page.report
    assert shared is not None and shared.share_idle
    assert shared.idle.cost == pytest.approx(0.0, abs=1e-9)
    owned = sum(g.amounts.cost for g in shared.groups) + shared.unattributed.cost
    assert owned == pytest.approx(shared.total.cost, rel=0.01)


def test_a_tag_dimension_waits_for_its_key(make_ctx, qtbot, owned_db) -> None:
    page = _open(make_ctx(owned_db), qtbot)
    page.dim_box.setCurrentIndex(page.dim_box.findData("tag:"))
    assert page.tag_edit.isVisible() and "tag's key" in page.status.text()
    with qtbot.waitSignal(page.loaded, timeout=20_000):
        page.tag_edit.setText("team")
        page.tag_edit.editingFinished.emit()
    assert page.report is not None and page.report.by == ("tag:team",)
    assert [g.key for g in page.report.groups] == [{"tag:team": None}]  # no run had that tag


def test_export_writes_the_rows(make_ctx, qtbot, owned_db, tmp_path: Path) -> None:
    page = _open(make_ctx(owned_db), qtbot)
    out = tmp_path / "who.csv"
    with qtbot.waitSignal(page.exported, timeout=10_000) as blocker:
        page.export_to(out)
    assert blocker.args == [str(out), 2]
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["kind"] for r in rows] == ["group", "group", "unattributed", "idle", "total"]
    report = page.report
    assert report is not None
    for r, g in zip(rows, report.groups, strict=False):
        assert r["user"] == g.key["user"]
        assert float(r["cost"]) == pytest.approx(g.amounts.cost)
    assert float(rows[-1]["cost"]) == pytest.approx(report.total.cost)
    assert sum(float(r["cost"]) for r in rows[:-1]) == pytest.approx(report.total.cost, rel=0.01)
    assert "Exported 2 owners" in page.status.text()


def test_an_empty_period_says_what_was_looked_at(make_ctx, qtbot, tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    Store.open(db).close()
    page = _open(make_ctx(db), qtbot)
    assert page.body.currentWidget() is page.empty
    assert "No process was seen on a GPU between" in page.empty.text()
    assert "costmeter record" in page.empty.text()


def _live_tick(ts: float) -> Tick:
    """What the Processes page sees now: alice's and bob's processes on the GPUs."""
    return Tick(
        ts=ts,
        host="box",
        host_sample=HostSample(
            ts,
            20.0,
            (20.0,),
            0,
            0,
            0,
            GIB,
            8 * GIB,
            0,
            0,
            0,
            0,
            0,
            processes=(
                ProcessSample(
                    1000, 1e9, "python", "python train.py", "alice", 99.0, GIB, 1.0, ALICE
                ),
                ProcessSample(2000, 1e9, "python", "python eval.py", "bob", 50.0, GIB, 1.0, BOB),
            ),
        ),
        devices=(
            DeviceSample(
                "GPU-box-0",
                0,
                ts,
                gpu_util=80.0,
                processes=(GpuProcess(1000, GIB, 50.0), GpuProcess(2000, GIB, 30.0)),
            ),
        ),
    )


@pytest.fixture
def window(make_ctx, qtbot, owned_db) -> Iterator[MainWindow]:
    ctx = make_ctx(owned_db)
    ctx.live.push(_live_tick(time.time()))
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def _who_pays(window: MainWindow, qtbot) -> WhoPaysPage:  # type: ignore[no-untyped-def]
    page = window.page("who-pays")
    assert isinstance(page, WhoPaysPage)
    window.show_page("who-pays")
    qtbot.waitUntil(lambda: page.has_data(), timeout=20_000)
    return page


def test_double_clicking_an_owner_filters_processes(window: MainWindow, qtbot) -> None:
    page = _who_pays(window, qtbot)
    assert page.select_owner({"user": "bob"})
    row = page.table.currentIndex().row()
    rect = page.table.visualRect(page.proxy.index(row, 0))
    page._context_menu(rect.center())
    menu = page.context_menu
    assert menu is not None
    assert [a.text() for a in menu.actions()] == [
        "Show in Processes",
        "Show in Runs",
        "Show in History",
        "Show in Advice",
    ]
    menu.close()
    view = page.table.viewport()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=rect.center())  # as a user's does:
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=rect.center())  # press, release,
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=rect.center())  # then the double
    qtbot.waitUntil(lambda: window.current_page().key == "processes", timeout=10_000)
    processes = window.current_page()
    assert isinstance(processes, ProcessesPage)
    shown = [processes.proxy.index(r, 0).data() for r in range(processes.proxy.rowCount())]
    assert shown == ["2000"] and processes.model.rowCount() == 2
    assert "bob" in processes.owner_note.text()
    # Job and Container columns come from the owner; the filter box matches them.
    cols = [processes.model.headerData(c, Qt.Orientation.Horizontal) for c in range(11)]
    assert cols[-2:] == ["Job", "Container"]
    assert processes.proxy.index(0, 9).data() == "4242"
    processes.filter_owner(None)
    assert processes.proxy.rowCount() == 2
    processes.filter.setText("4242")
    assert [processes.proxy.index(r, 0).data() for r in range(processes.proxy.rowCount())] == [
        "2000"
    ]


def test_show_in_history_lists_the_gpus_the_owner_used(window: MainWindow, qtbot) -> None:
    page = _who_pays(window, qtbot)
    assert page.select_owner({"user": "alice"})
    page.show_owner_in("history")
    qtbot.waitUntil(lambda: window.current_page().key == "history", timeout=10_000)
    history = window.current_page()
    assert page.linked is not None
    footprint = page.linked[1]
    assert footprint.uuids == {"GPU-box-0"} and footprint.hosts == {"box"}
    qtbot.waitUntil(lambda: bool(history.targets), timeout=10_000)  # type: ignore[attr-defined]
    keys = {t.key for t in history.targets}  # type: ignore[attr-defined]
    assert keys == {"device:GPU-box-0", "host:box"}
    assert "alice" in history.owner_bar.label.text()  # type: ignore[attr-defined]
    history.filter_owner(None)  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: len(history.targets) == 3, timeout=10_000)  # type: ignore[attr-defined]


# -- the page's data without Qt, on a hand-made report ------------------------------------------
def _report(series: tuple[SeriesPoint, ...], groups: int) -> ChargebackReport:
    amounts = [Amounts(cost=float(10 - i)) for i in range(groups)]
    total = sum(a.cost for a in amounts) + 3.0
    return ChargebackReport(
        by=("user",),
        start=0.0,
        end=4 * 3600.0,
        currency="EUR",
        share_idle=False,
        groups=tuple(
            OwnerGroup({"user": f"u{i}"}, a, a.cost / total) for i, a in enumerate(amounts)
        ),
        unattributed=Amounts(cost=1.0),
        unattributed_why={"owner unreadable: environ": 1.0},
        idle=Amounts(cost=2.0, idle_cost=2.0),
        total=Amounts(cost=total),
        series=series,
    )


def test_the_owners_past_the_top_are_summed_as_others() -> None:
    points = tuple(SeriesPoint(3600.0 * (i % 3), (f"u{i}",), 1.0) for i in range(8))
    points += (SeriesPoint(0.0, (), 0.5),)
    stacked = stacked_series(_report(points, 8), top=3, bucket_s=3600.0)
    assert stacked.buckets == (0.0, 3600.0, 7200.0, 10800.0)  # the empty last hour too
    labels = [label for label, _ in stacked.layers]
    assert labels == [IDLE, "u0", "u1", "u2", OTHERS]
    others = dict(stacked.layers)[OTHERS]
    assert sum(others) == 5.0 and others[3] == 0.0
    assert dict(stacked.layers)[IDLE] == (0.5, 0.0, 0.0, 0.0)


def test_rows_end_with_unattributed_idle_and_total() -> None:
    rows = table_rows(_report((), 2))
    assert [r.kind for r in rows] == ["group", "group", "unattributed", "idle", "total"]
    assert rows[2].tooltip.startswith("owner unreadable: environ")
    assert rows[-1].share is None and rows[2].share == pytest.approx(1.0 / 22.0)


def test_buckets_are_hourly_up_to_a_week_then_daily() -> None:
    assert bucket_for(0.0, 7 * 86400.0) == 3600.0
    assert bucket_for(0.0, 30 * 86400.0) == 86400.0
    start, end = period_range("today", 1_700_000_000.0)
    assert time.localtime(start)[3:6] == (0, 0, 0) and end == 1_700_000_000.0
    with pytest.raises(ValueError, match="unknown period"):
        period_range("fortnight")


def test_show_in_runs_and_advice_keep_that_owners(
    window: MainWindow, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Advice: findings that name alice, or name nobody and are about a GPU she used; Runs: the
    runs her processes belonged to (none in this recording), said in words."""

    def about(rule: str, owner: str | None, uuid: str) -> Recommendation:
        made = rec(rule, 10.0)
        return replace(made, target=replace(made.target, owner=owner, uuid=uuid, host="box"))

    recs = (
        about("idle", "alice (82 %)", "GPU-x"),
        about("oversized", "bob", "GPU-box-0"),
        about("underused", None, "GPU-box-0"),
        about("lost", None, "GPU-box-1"),
        about("alicex", "alicex", "GPU-y"),
    )
    monkeypatch.setattr(advice_snapshot, "advise", lambda *a, **k: result(*recs))
    page = _who_pays(window, qtbot)
    assert page.select_owner({"user": "alice"})
    page.show_owner_in("advice")
    qtbot.waitUntil(lambda: window.current_page().key == "advice", timeout=10_000)
    advice = window.current_page()
    advice.refresh()  # type: ignore[attr-defined]  # (a check begun before the patch is older)

    def ours() -> bool:
        snapshot = advice.snapshot  # type: ignore[attr-defined]
        return snapshot is not None and len(snapshot.result.recommendations) == len(recs)

    qtbot.waitUntil(ours, timeout=10_000)
    shown = {r.rule for r in advice.visible_recommendations()}  # type: ignore[attr-defined]
    assert shown == {"idle", "underused"}
    advice.filter_owner(None)  # type: ignore[attr-defined]
    assert len(advice.visible_recommendations()) == 5  # type: ignore[attr-defined]

    window.show_page("who-pays")
    page.show_owner_in("runs")
    qtbot.waitUntil(lambda: window.current_page().key == "runs", timeout=10_000)
    runs = window.current_page()
    assert runs.owner_runs == frozenset()  # type: ignore[attr-defined]
    assert "no Costmeter run" in runs.owner_bar.label.text()  # type: ignore[attr-defined]
    runs.filter_owner({"run": "7"})  # type: ignore[attr-defined]
    assert runs.owner_runs == frozenset({7})  # type: ignore[attr-defined]


def test_process_rows_show_job_and_container_from_the_owner() -> None:
    pod = Owner(
        uid=0,
        user="root",
        container_id="4d3f1f0c9b2e" + "0" * 52,
        pod_uid="0f9c5c2e-6a7b-4c4e-9a55-2b0c1e9f7d11",
        array_job_id="100",
        array_task_id="7",
        job_id="101",
        unreadable=frozenset({"environ"}),
    )
    named = Owner(container="trainer", pod="train-abc", namespace="vision")
    ts = time.time()
    tick = Tick(
        ts=ts,
        host="box",
        host_sample=HostSample(
            ts, 1.0, (1.0,), 0, 0, 0, GIB, 8 * GIB, 0, 0, 0, 0, 0,
            processes=(
                ProcessSample(1, 1.0, "a", "a", "root", 1.0, GIB, 1.0, pod),
                ProcessSample(2, 1.0, "b", "b", "?", 1.0, GIB, 1.0, named),
                ProcessSample(3, 1.0, "c", "c", "carol", 1.0, GIB, 1.0, None),
            ),
        ),
    )  # fmt: skip
    rows = {r.pid: r for r in rows_from_tick(tick)}
    assert (rows[1].job, rows[1].container) == ("100_7", "4d3f1f0c9b2e (pod 0f9c5c2e)")
    assert (rows[2].job, rows[2].container) == ("", "trainer (pod train-abc)")
    assert (rows[3].job, rows[3].container) == ("", "")
    assert owner_matches(rows[2], {"namespace": "vision", "pod": "train-abc"})
    assert not owner_matches(rows[2], {"namespace": "audio"})
    assert owner_matches(rows[1], {"job": "100_7", "project": "anything"})  # not told: not checked
    assert owner_matches(rows[3], {"user": "carol"}) and not owner_matches(rows[3], {"job": "1"})
    model = ProcessTableModel()
    model.set_rows(list(rows.values()))
    tip = model.index(0, COL_JOB).data(Qt.ItemDataRole.ToolTipRole)
    assert "array_task_id: 7" in tip and "could not read: environ" in tip
    assert model.index(2, COL_CONTAINER).data(Qt.ItemDataRole.ToolTipRole) == (
        "Owner not read for this process"
    )


def test_gpus_recorded_with_nobody_on_them_show_their_idle_cost(
    make_ctx, qtbot, tmp_path: Path
) -> None:
    db = tmp_path / "idle.db"
    writer = Writer(db, clock=SystemClock())
    writer.start()
    try:
        writer.register(host_info("box"), device_infos("box", 1))
        now = math.floor(time.time())
        for i in range(20):
            writer.submit(make_tick(now - 1200 + 60 * i, host="box", devices=1, util=0.0, dt=60.0))
        assert writer.flush(60)
    finally:
        writer.stop()
    page = _open(make_ctx(db), qtbot)
    report = page.report
    assert report is not None and not report.groups and report.idle.cost > 0
    assert page.body.currentWidget() is page.empty
    assert format_money(report.idle.cost, report.currency) in page.empty.text()


def test_the_choices_come_back_next_time(make_ctx, qtbot, owned_db) -> None:
    ctx = make_ctx(owned_db)
    page = _open(ctx, qtbot, ("tag:team", "user"))
    page.set_period("7d")
    page.save_state(ctx.settings)
    again = WhoPaysPage(ctx)
    qtbot.addWidget(again)
    again.restore_state(ctx.settings)
    assert again.dimensions() == ("tag:team", "user")
    assert again.tag_edit.text() == "team" and again.period_box.currentData() == "7d"
    qtbot.waitUntil(lambda: again.report is not None, timeout=20_000)
    assert again.bucket_s == 3600.0 and again.report is not None
    assert again.report.by == ("tag:team", "user")


def test_an_owner_processes_cannot_tell_is_kept_by_its_pids(window: MainWindow, qtbot) -> None:
    page = _who_pays(window, qtbot)
    with qtbot.waitSignal(page.loaded, timeout=20_000):
        page.set_dimensions("host", "user")
    assert page.select_owner({"host": "box", "user": "alice"})
    page.show_owner_in("processes")
    qtbot.waitUntil(lambda: window.current_page().key == "processes", timeout=10_000)
    processes = window.current_page()
    assert isinstance(processes, ProcessesPage)
    assert page.linked is not None and ("box", 1000) in page.linked[1].pids
    shown = [processes.proxy.index(r, 0).data() for r in range(processes.proxy.rowCount())]
    assert shown == ["1000"]
    # A project (no process tells it): the PIDs the Who pays page found for it, on this host.
    footprint = OwnerFootprint({"project": "vision"}, 0.0, 1.0, pids=frozenset({("box", 2000)}))
    processes.filter_owner(footprint.key, footprint)
    shown = [processes.proxy.index(r, 0).data() for r in range(processes.proxy.rowCount())]
    assert shown == ["2000"] and "project vision" in processes.owner_note.text()
    elsewhere = OwnerFootprint({"project": "nlp"}, 0.0, 1.0, pids=frozenset({("other", 1000)}))
    processes.filter_owner(elsewhere.key, elsewhere)
    assert processes.proxy.rowCount() == 0 and "No process of this owner" in processes.empty.text()


def test_an_export_that_cannot_be_written_says_so_and_leaves_nothing(
    make_ctx, qtbot, owned_db, tmp_path: Path
) -> None:
    page = _open(make_ctx(owned_db), qtbot)
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / "not-a-folder"
    blocker.write_text("mine\n")  # (root may write anywhere: a file as the folder fails for all)
    page.export_to(blocker / "who.csv")
    qtbot.waitUntil(lambda: "Could not export" in page.status.text(), timeout=10_000)
    assert blocker.read_text() == "mine\n" and sorted(p.name for p in out.iterdir()) == [
        "not-a-folder"
    ]
