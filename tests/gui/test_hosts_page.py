"""The Hosts page, the host dialog and the host filter: real config files, 0600 token files,
a real agent process on 127.0.0.1, states read from a real remote_hosts table."""

from __future__ import annotations

import math
import os
import socket
import stat
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from agent_process import start_agent
from costmeter.config import Config, RemoteHostConfig, load_config
from costmeter.core import HostInfo
from costmeter.gui.host_status import StatusRow, merge_rows
from costmeter.gui.pages.devices import DevicesPage
from costmeter.gui.pages.hosts import HostsPage
from costmeter.gui.pages.overview import OverviewPage
from costmeter.gui.widgets.host_dialog import UNCHANGED, HostDialog
from costmeter.service import tokens
from costmeter.store import Store
from costmeter.store.testing import device_infos, host_info, make_tick

pytestmark = pytest.mark.gui


@pytest.fixture
def token_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tokens go to a private file under tmp_path (no keyring on this machine, and none used)."""
    folder = tmp_path / "tokens"
    monkeypatch.setattr(tokens, "default_token_dir", lambda: folder)
    monkeypatch.setattr(tokens, "keyring_available", lambda: False)
    return folder


def _fill(dialog: HostDialog, name: str, url: str, token: str = "", kind: str = "agent") -> None:
    dialog.name.setText(name)
    dialog.url.setText(url)
    dialog.kind.setCurrentIndex(dialog.kind.findData(kind))
    dialog.token.setText(token)


def _save(qtbot, page: HostsPage, dialog: HostDialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: page.dialog is None, timeout=10_000)  # accepted, then deleted
    qtbot.waitUntil(lambda: "Host " in page.note.text(), timeout=10_000)


def _row(page: HostsPage, name: str) -> dict[str, str]:
    page.show_rows()
    for r in range(page.table.rowCount()):
        if page.table.item(r, 0).text().split(" ")[0] == name:
            return {
                page.table.horizontalHeaderItem(c).text(): page.table.item(r, c).text()
                for c in range(page.table.columnCount())
            }
    raise AssertionError(f"no row for {name}")


def test_add_edit_remove_write_the_config_and_a_private_token(
    qtbot, make_ctx, token_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_ctx()
    ctx.config_path.write_text("[sampling]\ninterval_s = 2.0\n", encoding="utf-8")
    page = HostsPage(ctx)
    qtbot.addWidget(page)
    dialog = page.add_host()
    _fill(dialog, "gpu-box-1", "http://10.0.0.5:9464", token="s3cr3t-t0ken")
    assert "unencrypted" in dialog.hint.text()  # allowed, but said
    _save(qtbot, page, dialog)

    config = load_config(ctx.config_path)
    token_file = token_dir / "gpu-box-1.token"
    assert config.hosts == (
        RemoteHostConfig("gpu-box-1", "http://10.0.0.5:9464", token_file=token_file),
    )
    assert config.interval_s == 2.0  # the rest of the file is kept
    assert ctx.config.hosts == config.hosts  # handed to the context (and so to the collector)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == "s3cr3t-t0ken"
    assert "s3cr3t" not in ctx.config_path.read_text(encoding="utf-8")
    assert str(token_file) in page.note.text() and "readable only by you" in page.note.text()
    assert _row(page, "gpu-box-1")["State"] == "waiting"

    # Edit: the saved token is not shown again; leaving it empty keeps it.
    page.select("gpu-box-1")
    dialog = page.edit_selected()
    assert dialog is not None
    assert dialog.token.text() == "" and dialog.token.placeholderText() == UNCHANGED
    dialog.url.setText("https://10.0.0.6:9464")
    _save(qtbot, page, dialog)
    config = load_config(ctx.config_path)
    assert config.hosts[0].url == "https://10.0.0.6:9464"
    assert config.hosts[0].token_file == token_file
    assert token_file.read_text().strip() == "s3cr3t-t0ken"

    # Disable, then remove (after the confirmation): the table and the token go.
    page.select("gpu-box-1")
    page.toggle_selected()
    qtbot.waitUntil(lambda: not ctx.config.hosts[0].enabled, timeout=10_000)
    assert load_config(ctx.config_path).hosts[0].enabled is False
    assert _row(page, "gpu-box-1")["State"] == "disabled"
    asked: list[str] = []

    def answer(_parent: object, _title: str, text: str, *_a: object) -> object:
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    page.select("gpu-box-1")
    page.remove_selected()
    qtbot.waitUntil(lambda: not ctx.config.hosts, timeout=10_000)
    assert "gpu-box-1" in asked[0]
    assert load_config(ctx.config_path).hosts == ()
    assert not token_file.exists()


def test_the_dialog_checks_its_fields_in_words(qtbot, make_ctx, token_dir: Path) -> None:
    ctx = make_ctx(config=Config(hosts=(RemoteHostConfig("taken", "http://a:1"),)))
    page = HostsPage(ctx)
    qtbot.addWidget(page)
    dialog = page.add_host()
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    cases = [
        ("box", "ftp://box:1", "http:// or https://"),
        ("box", "http://box:99999", "port"),
        ("bad name", "http://box:1", "only letters, digits"),
        ("taken", "http://box:1", "already a host named taken"),
        (socket.gethostname(), "http://box:1", "this machine's own name"),
    ]
    for name, url, words in cases:
        _fill(dialog, name, url)
        assert words in dialog.hint.text(), (name, url, dialog.hint.text())
        assert not save.isEnabled()
    _fill(dialog, "box", "http://gpu-box:9464")
    assert save.isEnabled()
    assert "needs a token" in dialog.hint.text()  # allowed, but said
    _fill(dialog, "box", "http://127.0.0.1:9464")
    assert dialog.hint.text() == ""  # a loopback agent may go without
    _fill(dialog, "box", "http://gpu-box:9464", token="abc")
    assert "unencrypted" in dialog.hint.text()
    dialog.reject()


@pytest.mark.integration
def test_test_connection_against_a_real_agent_and_a_closed_port(
    qtbot, make_ctx, tmp_path: Path, token_dir: Path
) -> None:
    secret = tmp_path / "agent.token"
    secret.write_text("right-token\n")
    secret.chmod(0o600)
    agent = start_agent(
        tmp_path / "agent", "--simulate", "2", "--interval", "0.5", "--name", "gpu-box-1",
        "--token-file", str(secret),
    )  # fmt: skip
    try:
        page = HostsPage(make_ctx())
        qtbot.addWidget(page)
        dialog = page.add_host()

        def test(token: str, kind: str = "agent") -> str:
            _fill(dialog, "gpu-box-1", agent.url, token=token, kind=kind)
            dialog.test_button.click()
            qtbot.waitUntil(lambda: dialog.test_result.text() != "Testing…", timeout=15_000)
            return dialog.test_result.text()

        assert "asks for a token (401)" in test("")
        assert "refused the token (401)" in test("wrong-token")
        assert test("right-token") == "Reached gpu-box-1: 2 GPUs (simulated), Costmeter 0.1.0."
        assert test("right-token", "prometheus").startswith(f"Reached {agent.url}/metrics: ")
    finally:
        agent.stop()
    assert "refused" in test("right-token") and "nothing listens" in dialog.test_result.text()
    dialog.reject()


def _status_table(db: Path, rows: list[tuple]) -> None:
    with Store.open(db):
        pass  # creates and migrates
    import sqlite3

    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO remote_hosts (name, url, kind, state, last_contact, newest_sample,"
            " last_error, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.close()


def test_states_are_read_from_the_remote_hosts_table(qtbot, make_ctx, tmp_path: Path) -> None:
    now = time.time()
    db = tmp_path / "states.db"
    _status_table(
        db,
        [
            ("gpu-box-1", "http://a:9464", "agent", "connected", now - 2, now - 1.5, None, now),
            ("gpu-box-2", "http://b:9464", "agent", "disconnected", now - 300, now - 301,
             "connection refused", now),
            ("dcgm", "http://c:9400/metrics", "prometheus", "backfilling", now - 1, now - 40,
             None, now),
            ("old", "http://e:9464", "agent", "disconnected", now - 9000, now - 9000,
             "timed out", now - 3600),
        ],
    )  # fmt: skip
    hosts = (
        RemoteHostConfig("gpu-box-1", "http://a:9464"),
        RemoteHostConfig("gpu-box-2", "http://b:9464"),
        RemoteHostConfig("gpu-box-3", "http://d:9464", enabled=False),
    )
    ctx = make_ctx(db_path=db, config=Config(hosts=hosts))
    page = HostsPage(ctx)
    qtbot.addWidget(page)
    page.on_shown()
    qtbot.waitUntil(page.has_data, timeout=10_000)
    assert [r.name for r in page.rows] == [
        socket.gethostname(), "gpu-box-1", "gpu-box-2", "gpu-box-3", "dcgm", "old",
    ]  # fmt: skip
    one, two, three, dcgm = (_row(page, n) for n in ("gpu-box-1", "gpu-box-2", "gpu-box-3", "dcgm"))
    # "2 s ago" when drawn at once; a loaded machine may draw it a second or two later.
    waited = time.time() - now
    assert one["State"] == "connected" and one["Last contact"].endswith(" s ago")
    assert 2 <= int(one["Last contact"].removesuffix(" s ago")) <= 2 + math.ceil(waited)
    assert 1.5 <= float(one["Lag"].removesuffix(" s")) < 30  # now - newest sample
    assert two["State"] == "disconnected" and two["Error"] == "connection refused"
    assert two["Last contact"] == "5 min ago"
    assert three["State"] == "disabled" and three["Lag"] == "—"
    assert dcgm["State"] == "backfilling" and dcgm["Kind"] == "prometheus (command line)"
    assert _row(page, "old")["State"] == "not recording"  # its recorder stopped an hour ago
    assert not page.rows[-1].down
    page.select("dcgm")  # recorded from a command line: not editable here
    assert not page.edit_button.isEnabled() and "record --remote" in page.note.text()
    page.select("gpu-box-2")
    assert page.edit_button.isEnabled() and page.remove_button.isEnabled()


def test_a_down_host_shows_in_the_window_banner(qtbot, make_ctx, tmp_path: Path) -> None:
    from costmeter.gui.main_window import MainWindow

    now = time.time()
    db = tmp_path / "down.db"
    _status_table(
        db,
        [("gpu-box-2", "http://b:9464", "agent", "disconnected", now - 60, now - 61,
          "connection refused", now)],
    )  # fmt: skip
    ctx = make_ctx(db_path=db, config=Config(hosts=(RemoteHostConfig("gpu-box-2", "http://b"),)))
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    window.host_watch.check()
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10_000)
    since = time.strftime("%H:%M", time.localtime(now - 60))
    assert window.banner.label.text().startswith(
        f"gpu-box-2 disconnected since {since}: connection refused"
    )
    assert window.hosts_state.text() == "0 of 1 remote hosts connected"
    rows = merge_rows(ctx.config, [StatusRow("gpu-box-2", "u", "agent", "connected", now, now,
                                             None)])  # fmt: skip
    window.host_watch.show(rows)  # back: the banner goes
    assert not window.banner.isVisible()
    assert window.hosts_state.text() == "1 of 1 remote hosts connected"
    window.close()


def _two_hosts(ctx) -> None:
    """This machine (host-a) with 2 GPUs, and gpu-box-1 with 3, as the live state gets them."""
    ctx.live.set_devices(host_info("host-a"), device_infos("host-a", 2))
    ctx.live.push(make_tick(time.time(), host="host-a", devices=2, cpu_percent=10.0))
    ctx.live.push(make_tick(time.time(), host="gpu-box-1", devices=3, cpu_percent=90.0))
    ctx.live.set_remote(
        "gpu-box-1", HostInfo("gpu-box-1", 64, "EPYC", 512 << 30), device_infos("gpu-box-1", 3)
    )


def test_the_host_filter_hides_other_hosts_on_devices_and_overview(qtbot, make_ctx) -> None:
    ctx = make_ctx()
    _two_hosts(ctx)
    devices, overview = DevicesPage(ctx), OverviewPage(ctx)
    for page in (devices, overview):
        qtbot.addWidget(page)
        page.show()
        page.on_live()

    def shown() -> set[str]:
        return {u for u, p in devices.panels.items() if p.isVisibleTo(devices)}

    qtbot.waitUntil(lambda: len(shown()) == 5)  # panels added to a layout show a moment later
    assert devices.panels["GPU-gpu-box-1-0"].header.text().startswith("gpu-box-1 · GPU 0")
    assert set(overview.plot_util.keys()) == set(ctx.live.devices_for(None))
    assert overview.card_gpus.value.text() == "5 / 5 busy"
    assert overview.card_today.caption.text() == "Cost today (all hosts)"

    ctx.set_host_filter("gpu-box-1")
    for page in (devices, overview):
        page.on_live()
    qtbot.waitUntil(lambda: shown() == {f"GPU-gpu-box-1-{i}" for i in range(3)})
    assert set(overview.plot_util.keys()) == {f"GPU-gpu-box-1-{i}" for i in range(3)}
    assert overview.card_gpus.value.text() == "3 / 3 busy"
    assert overview.card_rate.caption.text() == "Cost per hour now (gpu-box-1)"
    assert overview.plot_host.curve_data("cpu")[1].tolist() == [90.0]

    ctx.set_host_filter("host-a")
    for page in (devices, overview):
        page.on_live()
    qtbot.waitUntil(lambda: shown() == {"GPU-host-a-0", "GPU-host-a-1"})
    assert overview.card_gpus.value.text() == "2 / 2 busy"
    assert overview.plot_host.curve_data("cpu")[1].tolist() == [10.0]


def test_the_selector_lists_hosts_and_the_choice_is_kept(qtbot, make_ctx) -> None:
    from costmeter.gui.main_window import MainWindow

    ctx = make_ctx(config=Config(hosts=(RemoteHostConfig("gpu-box-9", "http://x:1"),)))
    _two_hosts(ctx)
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.host_watch.update_selector()
    selector = window.host_selector
    labels = [selector.itemText(i) for i in range(selector.count())]
    assert labels == ["All hosts", "host-a (this machine)", "gpu-box-1", "gpu-box-9"]
    selector.setCurrentIndex(2)
    assert ctx.host_filter == "gpu-box-1"
    window.close()  # saves the choice
    ctx2 = make_ctx()
    window2 = MainWindow(ctx2)
    qtbot.addWidget(window2)
    assert ctx2.host_filter == "gpu-box-1"
    assert window2.host_selector.currentText() == "gpu-box-1"
    window2.close()


@pytest.mark.integration
@pytest.mark.slow
def test_the_windows_monitor_collects_a_host_added_on_the_page(
    qtbot, make_ctx, tmp_path: Path, token_dir: Path
) -> None:
    """A real agent, added on the Hosts page while sampling runs: its ticks reach the live
    state, its GPUs the Devices page, and its row says connected."""
    from costmeter.gui.bridge import MonitorBridge
    from costmeter.gui.main_window import MainWindow

    agent = start_agent(
        tmp_path / "agent", "--simulate", "2", "--interval", "0.5", "--name", "gpu-box-1"
    )
    ctx = make_ctx()
    bridge = MonitorBridge(ctx.db_path, ctx.config, simulate="a100:train", interval_s=0.5)
    window = MainWindow(ctx, bridge)
    qtbot.addWidget(window)
    window.show()
    bridge.start()
    try:
        qtbot.waitUntil(lambda: ctx.live.ticks >= 1, timeout=20_000)
        window.show_page("hosts")
        page = window.page("hosts")
        assert isinstance(page, HostsPage)
        dialog = page.add_host()
        _fill(dialog, "gpu-box-1", agent.url)
        _save(qtbot, page, dialog)
        qtbot.waitUntil(lambda: "gpu-box-1" in ctx.live.remote_latest, timeout=30_000)
        qtbot.waitUntil(lambda: len(ctx.live.devices_for("gpu-box-1")) == 2, timeout=20_000)
        qtbot.waitUntil(lambda: _row(page, "gpu-box-1")["State"] == "connected", timeout=20_000)
        assert len(ctx.live.devices) == 1  # this machine's GPUs are still its own
        ctx.set_host_filter("gpu-box-1")
        window.show_page("devices")
        devices = window.page("devices")
        assert isinstance(devices, DevicesPage)
        qtbot.waitUntil(lambda: len(devices._order) == 2, timeout=10_000)
    finally:
        window.close()
        agent.stop()
    assert os.path.exists(ctx.db_path)


def test_saving_settings_keeps_the_hosts(qtbot, make_ctx, token_dir: Path) -> None:
    """The Settings form does not show [hosts]: saving it must not drop them."""
    from costmeter.config_writer import add_host
    from costmeter.gui.pages.settings import SettingsPage

    ctx = make_ctx()
    config = add_host(ctx.config_path, RemoteHostConfig("gpu-box-1", "http://a:9464"))
    ctx.set_config(config)
    page = SettingsPage(ctx)
    qtbot.addWidget(page)
    page.edits["sampling.interval_s"].setText("3")
    assert page.save() is True
    saved = load_config(ctx.config_path)
    assert saved.interval_s == 3.0
    assert saved.hosts == (RemoteHostConfig("gpu-box-1", "http://a:9464"),)


def test_processes_of_a_remote_host_are_shown_but_cannot_be_terminated(qtbot, make_ctx) -> None:
    from costmeter.gui.pages.processes import ProcessesPage

    ctx = make_ctx()
    ctx.live.set_devices(host_info("host-a"), device_infos("host-a", 1))
    ctx.live.push(make_tick(time.time(), host="host-a", devices=1, with_processes=True))
    remote = make_tick(time.time(), host="gpu-box-1", devices=2, with_processes=True)
    ctx.live.push(remote)
    page = ProcessesPage(ctx)
    qtbot.addWidget(page)
    page.on_live()
    local_pids = {page.model.row(r).pid for r in range(page.model.rowCount())}
    page.table.selectRow(0)
    assert page.terminate_button.isEnabled()
    ctx.set_host_filter("gpu-box-1")
    page.on_live()
    remote_pids = {page.model.row(r).pid for r in range(page.model.rowCount())}
    assert remote_pids == {p.pid for d in remote.devices for p in d.processes}
    assert remote_pids != local_pids
    page.table.selectRow(0)
    assert not page.terminate_button.isEnabled()
    assert page.terminate_selected() is None  # nothing is signalled on this machine
