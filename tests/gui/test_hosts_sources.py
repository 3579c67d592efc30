"""Prometheus sources on the Hosts page: the source dialog writes ``[sources.NAME]`` into a real
config file (keeping the user's comments and other settings), refuses bad fields and a token file
others can read in words, tests the connection against a real Prometheus on 127.0.0.1, and the
table shows each source's state from a real remote_hosts table."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

import prometheus_server
from costmeter.config import Config, RemoteHostConfig, SourceConfig, load_config
from costmeter.gui.pages.hosts import HostsPage
from costmeter.gui.widgets.source_dialog import SourceDialog
from costmeter.store import Store

pytestmark = pytest.mark.gui

HAND_WRITTEN = """\
# my own notes: keep them
[sampling]
interval_s = 2.0  # two seconds, on purpose

[hosts.gpu-box-1]
url = "http://10.0.0.5:9464"
"""


def _fill(
    dialog: SourceDialog,
    name: str,
    url: str,
    token_file: str = "",
    match: str = "",
    backfill: str = "7d",
) -> None:
    dialog.name.setText(name)
    dialog.url.setText(url)
    dialog.token_file.setText(token_file)
    dialog.match.setText(match)
    dialog.backfill.setText(backfill)


def _save(qtbot, page: HostsPage, dialog: SourceDialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: page.source_dialog is None, timeout=10_000)
    qtbot.waitUntil(lambda: "Source " in page.note.text(), timeout=10_000)


def _row(page: HostsPage, name: str) -> dict[str, str]:
    page.show_rows()
    for r in range(page.table.rowCount()):
        if page.table.item(r, 0).text().split(" ")[0] == name:
            return {
                page.table.horizontalHeaderItem(c).text(): page.table.item(r, c).text()
                for c in range(page.table.columnCount())
            }
    raise AssertionError(f"no row for {name}")


def _token(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "prometheus.token"
    path.write_text("a-bearer-token-0123456789\n")
    path.chmod(mode)
    return path


def test_add_edit_disable_remove_a_source_keep_the_rest_of_the_file(
    qtbot, make_ctx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_ctx()
    ctx.config_path.write_text(HAND_WRITTEN, encoding="utf-8")
    ctx.set_config(load_config(ctx.config_path))
    token = _token(tmp_path)
    page = HostsPage(ctx)
    qtbot.addWidget(page)
    dialog = page.add_source()
    _fill(dialog, "cluster-a", "https://prom.example:9090/", str(token), 'cluster="a"', "2d")
    assert dialog.hint.text() == ""
    _save(qtbot, page, dialog)

    config = load_config(ctx.config_path)
    assert config.sources == (
        SourceConfig(
            "cluster-a",
            "https://prom.example:9090",
            token_file=token,
            match='{cluster="a"}',
            backfill_s=2 * 86400.0,
        ),
    )
    assert ctx.config.sources == config.sources  # handed to the context
    text = ctx.config_path.read_text(encoding="utf-8")
    assert "# my own notes: keep them" in text and "# two seconds, on purpose" in text
    assert config.interval_s == 2.0
    assert config.hosts == (RemoteHostConfig("gpu-box-1", "http://10.0.0.5:9464"),)
    assert 'backfill = "2d"' in text and "a-bearer-token" not in text
    assert "2 days ago at most" in page.note.text()
    row = _row(page, "cluster-a")
    assert row["Kind"] == "Prometheus source" and row["State"] == "waiting"

    # Edit: the fields come back as saved; the match changes, the rest stays.
    page.select("cluster-a")
    dialog = page.edit_selected()
    assert isinstance(dialog, SourceDialog)
    assert dialog.token_file.text() == str(token) and dialog.backfill.text() == "2d"
    assert dialog.match.text() == '{cluster="a"}'
    dialog.match.setText('{cluster="b", job=~"dcgm.*"}')
    _save(qtbot, page, dialog)
    (saved,) = load_config(ctx.config_path).sources
    assert saved.match == '{cluster="b", job=~"dcgm.*"}' and saved.token_file == token

    # Disable, then remove after the question: the table goes, the token file is the user's.
    page.select("cluster-a")
    assert page.toggle_button.text() == "Disable"
    page.toggle_selected()
    qtbot.waitUntil(lambda: not ctx.config.sources[0].enabled, timeout=10_000)
    assert _row(page, "cluster-a")["State"] == "disabled"
    asked: list[str] = []

    def answer(_parent: object, _title: str, text: str, *_a: object) -> object:
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    page.select("cluster-a")
    page.remove_selected()
    qtbot.waitUntil(lambda: not ctx.config.sources, timeout=10_000)
    assert "cluster-a" in asked[0]
    config = load_config(ctx.config_path)
    assert config.sources == () and config.hosts and config.interval_s == 2.0
    assert "# my own notes: keep them" in ctx.config_path.read_text(encoding="utf-8")
    assert token.exists()


def test_the_source_dialog_says_what_is_wrong(qtbot, make_ctx, tmp_path: Path) -> None:
    ctx = make_ctx(
        config=Config(
            hosts=(RemoteHostConfig("gpu-box-1", "http://a:1"),),
            sources=(SourceConfig("taken", "http://p:9090"),),
        )
    )
    page = HostsPage(ctx)
    qtbot.addWidget(page)
    dialog = page.add_source()
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    cases = [
        ("prom", "", {}, "enter the server's URL"),
        ("prom", "prometheus:9090", {}, "http:// or https://"),
        ("prom", "http://p:70000", {}, "port"),
        ("bad name", "http://p:9090", {}, "source name 'bad name' may use only"),
        ("taken", "http://p:9090", {}, "already a source named taken"),
        ("gpu-box-1", "http://p:9090", {}, "there is a host named gpu-box-1"),
        ("prom", "http://p:9090", {"token_file": "token.txt"}, "full path"),
        ("prom", "http://p:9090", {"match": "up{job='x'}"}, "label selector"),
        ("prom", "http://p:9090", {"match": "cluster=a"}, "no label matcher"),
        ("prom", "http://p:9090", {"backfill": "a week"}, "not a duration to fill back"),
        ("prom", "http://p:9090", {"backfill": "20y"}, "not a duration to fill back"),
    ]
    for name, url, fields, words in cases:
        _fill(dialog, name, url, **fields)
        assert words.lower() in dialog.hint.text().lower(), (name, url, dialog.hint.text())
        assert not save.isEnabled()
    _fill(dialog, "prom", "http://p:9090", backfill="0")
    assert save.isEnabled() and "Without a match selector" in dialog.hint.text()
    _fill(dialog, "prom", "http://p:9090", token_file="/x/t", match='cluster="a"')
    assert "unencrypted" in dialog.hint.text()
    _fill(dialog, "prom", "http://127.0.0.1:9090", token_file="/x/t", match='cluster="a"')
    assert dialog.hint.text() == ""
    dialog.reject()


def test_a_token_file_others_can_read_is_refused_and_nothing_written(
    qtbot, make_ctx, tmp_path: Path
) -> None:
    ctx = make_ctx()
    ctx.config_path.write_text(HAND_WRITTEN, encoding="utf-8")
    before = ctx.config_path.read_bytes()
    token = _token(tmp_path, 0o644)
    page = HostsPage(ctx)
    qtbot.addWidget(page)
    dialog = page.add_source()
    _fill(dialog, "prom", "http://127.0.0.1:9090", str(token), 'cluster="a"')
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: "other users" in dialog.hint.text(), timeout=10_000)
    assert f"chmod 600 {token}" in dialog.hint.text()
    assert ctx.config_path.read_bytes() == before  # the file is untouched
    assert dialog.isVisible() and dialog.name.text() == "prom"  # the fields stay as typed
    _fill(dialog, "prom", "http://127.0.0.1:9090", str(tmp_path / "missing"), 'cluster="a"')
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: "does not exist" in dialog.hint.text(), timeout=10_000)
    assert ctx.config_path.read_bytes() == before
    dialog.reject()


def _status_table(db: Path, rows: list[tuple]) -> None:
    with Store.open(db):
        pass  # creates and migrates
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO remote_hosts (name, url, kind, state, last_contact, newest_sample,"
            " last_error, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.close()


def source_states(tmp_path: Path, now: float) -> tuple[Path, Config]:
    """A database whose remote_hosts table holds sources in each state, and their config."""
    db = tmp_path / "sources.db"
    filling = "filling history: 40 % (at 2026-11-30 10:00, 8 hosts)"
    refused = "prom-b:9090 refused the series query (HTTP 400): bad_data: parse error"
    _status_table(
        db,
        [
            ("gpu-box-1", "http://10.0.0.5:9464", "agent", "connected", now - 2, now - 2,
             None, now),
            ("cluster-a", "http://prom-a:9090", "source", "backfilling", now - 1,
             now - 4 * 86400, filling, now),
            ("cluster-b", "http://prom-b:9090", "source", "error", now - 30, now - 700,
             refused, now),
            ("cluster-c", "http://prom-c:9090", "source", "connected", now - 1, now - 300,
             None, now),
            ("prom-d:9090", "http://prom-d:9090", "source", "connected", now - 1, now - 65,
             None, now),
        ],
    )  # fmt: skip
    config = Config(
        hosts=(RemoteHostConfig("gpu-box-1", "http://10.0.0.5:9464"),),
        sources=(
            SourceConfig("cluster-a", "http://prom-a:9090", match='{cluster="a"}'),
            SourceConfig("cluster-b", "http://prom-b:9090"),
            SourceConfig("cluster-c", "http://prom-c:9090", backfill_s=0.0),
            SourceConfig("cluster-e", "http://prom-e:9090", enabled=False),
        ),
    )
    return db, config


def test_sources_show_their_state_beside_the_hosts(qtbot, make_ctx, tmp_path: Path) -> None:
    now = time.time()
    db, config = source_states(tmp_path, now)
    page = HostsPage(make_ctx(db_path=db, config=config))
    qtbot.addWidget(page)
    page.on_shown()
    qtbot.waitUntil(page.has_data, timeout=10_000)
    names = [r.name for r in page.rows][1:]
    assert names == ["gpu-box-1", "cluster-a", "cluster-b", "cluster-c", "cluster-e", "prom-d:9090"]
    a, b, c, e = (_row(page, n) for n in ("cluster-a", "cluster-b", "cluster-c", "cluster-e"))
    assert a["State"] == "backfilling 40 %" and a["Kind"] == "Prometheus source"
    assert a["Error"] == ""  # progress, not an error: in the tooltip and the note
    assert a["Newest sample"] == time.strftime("%Y-%m-%d %H:%M", time.localtime(now - 4 * 86400))
    assert b["State"] == "error" and b["Error"].startswith("prom-b:9090 refused the series query")
    assert c["State"] == "connected" and c["Lag"] == "5 min"  # last sample age
    assert e["State"] == "disabled" and e["Lag"] == "—"
    d = _row(page, "prom-d:9090")
    assert d["Kind"] == "Prometheus source (command line)"
    page.select("cluster-a")
    assert page.edit_button.isEnabled() and "filling history: 40 %" in page.note.text()
    state_item = page.table.item(page.rows.index(page.selected()), 3)
    assert "8 hosts" in state_item.toolTip()
    page.select("prom-d:9090")
    assert not page.edit_button.isEnabled()
    assert [r.name for r in page.rows if r.down] == ["cluster-b"]  # goes to the banner


@pytest.mark.integration
@pytest.mark.skipif(
    prometheus_server.available() is not None, reason=str(prometheus_server.available())
)
def test_test_connection_against_a_real_prometheus(qtbot, make_ctx, tmp_path: Path) -> None:
    now = time.time()
    tsdb = tmp_path / "tsdb"
    start, end = now - 50 * 60, now - 60
    for low, high in prometheus_server.history_windows(start, end):
        prometheus_server.write_history_blocks(
            tsdb, prometheus_server.dcgm_history(6, 3, low, high)
        )
    token = _token(tmp_path)
    page = HostsPage(make_ctx())
    qtbot.addWidget(page)
    dialog = page.add_source()

    def test(url: str, match: str = "", token_file: Path = token) -> str:
        _fill(dialog, "prom", url, str(token_file), match)
        dialog.test_button.click()
        qtbot.waitUntil(lambda: dialog.test_result.text() != "Testing…", timeout=15_000)
        return dialog.test_result.text()

    with prometheus_server.PrometheusServer(tmp_path, tsdb=tsdb) as server:
        where = server.url.removeprefix("http://")
        assert test(server.url) == (
            f"Reached {where}: 6 GPUs on 3 hosts (dcgm-exporter), 3 node_exporter targets "
            "in the last hour."
        )
        assert test(server.url, 'job="dcgm", Hostname="gpu-node-001"') == (
            f"Reached {where}: 2 GPUs on 1 host (dcgm-exporter), 0 node_exporter targets "
            'matching {job="dcgm", Hostname="gpu-node-001"} in the last hour.'
        )
        nothing = test(server.url, 'cluster="nowhere"')
        assert nothing.startswith(f"Reached {where}, but it holds no dcgm-exporter")
        token.chmod(0o640)
        assert "can be read by other users" in test(server.url)
        token.chmod(0o600)
    assert "refused" in test(server.url)  # stopped: nothing listens there now
    dialog.reject()
