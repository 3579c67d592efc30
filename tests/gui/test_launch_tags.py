"""The launch dialog's Tags field: read as typed, a bad tag refused in words under the field, the
tags of a launched run in its row, and a relaunched run's field filled with its parent's tags."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from costmeter.gui.run_manager import RunManager
from costmeter.gui.widgets.launch_dialog import LaunchDialog
from costmeter.service.run_launch import LaunchForm
from costmeter.store import Store
from costmeter.store.runs import RunStore

pytestmark = [pytest.mark.gui]
PY = shlex.quote(sys.executable)


@pytest.fixture
def manager(make_ctx, tmp_path: Path) -> Iterator[RunManager]:
    db = tmp_path / "tags.db"
    Store.open(db).close()
    ctx = make_ctx(db_path=db)
    manager = RunManager(ctx)
    yield manager
    manager.shutdown()


def test_a_bad_tag_is_said_under_the_field_and_nothing_launches(manager, qtbot) -> None:
    dialog = LaunchDialog(manager.ctx, manager)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.command.setText(f'{PY} -c "pass"')
    dialog.tags.setText("team=vision, my owner=alice")
    # ", my owner=alice" is not a new tag (its key has a space), so it stays in team's value.
    assert dialog.tags_field.hint.text() == "team = vision, my owner=alice"
    dialog.tags.setText("team=vision\t, owner")
    assert "cannot be printed" in dialog.tags_field.error_text()
    dialog.tags.setText("owner, team=vision")
    assert dialog.tags_field.error_text() == (
        "'owner' is not a tag; write KEY=VALUE, for example team=vision."
    )
    assert not dialog.tags_field.hint.isVisibleTo(dialog)
    assert dialog.try_accept() is False
    assert "'owner' is not a tag" in dialog.error.text()
    assert dialog.request is None and dialog.isVisible()
    dialog.tags.setText("team=vision, owner=alice")
    assert dialog.tags_field.error_text() == ""
    assert dialog.tags_field.hint.text() == "team = vision; owner = alice"
    dialog.reject()
    with RunStore.open(manager.ctx.db_path) as store:
        assert store.list_runs() == []


def test_launched_runs_keep_their_tags(manager, qtbot) -> None:
    dialog = LaunchDialog(manager.ctx, manager)
    qtbot.addWidget(dialog)
    dialog.command.setText(f'{PY} -c "pass"')
    dialog.tags.setText("team=vision, owner=alice, team=cv")
    assert dialog.try_accept() is True
    request = dialog.request
    assert request is not None
    assert dict(request.specs[0].tags) == {"owner": "alice", "team": "cv"}
    with qtbot.waitSignal(manager.launched, timeout=15_000):
        manager.launch(request)
    with RunStore.open(manager.ctx.db_path) as store:
        rows = store.list_runs()
    assert [r.tags for r in rows] == [{"owner": "alice", "team": "cv"}]
    # The next dialog starts from the tags used last.
    again = LaunchDialog(manager.ctx, manager)
    qtbot.addWidget(again)
    assert again.tags.text() == "team=vision, owner=alice, team=cv"
    qtbot.waitUntil(manager.settled, timeout=15_000)


def test_a_relaunch_fills_the_field_with_the_parents_tags(manager, qtbot) -> None:
    dialog = LaunchDialog(manager.ctx, manager)
    qtbot.addWidget(dialog)
    dialog.prefill(LaunchForm(command="python t.py", tags="team=vision, note=a, b"), parent_id=7)
    assert dialog.tags.text() == "team=vision, note=a, b"
    assert dialog.form().tags == "team=vision, note=a, b"
    assert dialog.tags_field.hint.text() == "team = vision; note = a, b"
