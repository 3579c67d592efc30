"""Run tags: the rules (``costmeter.core.tags``), ``--tag`` on the command line, the launch
dialog's field (``service.run_launch``), the store's ``runs.tags`` column, ``costmeter runs``, and
child runs of an applied recommendation keeping their parent's tags."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from costmeter.cli import runs_cmd
from costmeter.cli.main import build_parser
from costmeter.cli.run_session import UsageError, spec_from
from costmeter.core.tags import (
    MAX_TAGS,
    TagError,
    clean_tags,
    format_tags,
    merge_tags,
    parse_tag,
    parse_tag_list,
    parse_tags,
)
from costmeter.plugin_api import RunSpec
from costmeter.service.advice_apply import relaunch_plan, sweep_request
from costmeter.service.run_launch import LaunchError, LaunchForm, build_request
from costmeter.service.run_support import record_refused
from costmeter.store import Store
from costmeter.store.runs import RunStore


def test_a_tag_is_a_key_and_a_printable_value() -> None:
    assert parse_tag("team=vision") == ("team", "vision")
    assert parse_tag(" cost.centre-2 = CV lab, floor 3 ") == ("cost.centre-2", "CV lab, floor 3")
    assert parse_tag("expr=a=b") == ("expr", "a=b")  # the first '=' ends the key
    assert parse_tag("who=Zoë") == ("who", "Zoë")  # printable is not only ASCII
    assert parse_tag("k" * 64 + "=" + "v" * 256) == ("k" * 64, "v" * 256)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("team", "is not a tag; write KEY=VALUE"),
        ("=vision", "has no key before '='"),
        ("my team=vision", "has ' ' in it"),
        ("team/x=1", "has '/' in it"),
        ("team=", "has no value; write team=VALUE"),
        ("team=  ", "has no value"),
        ("k" * 65 + "=v", "65 characters; at most 64"),
        ("k=" + "v" * 257, "257 characters; at most 256"),
        ("k=a\tb", "cannot be printed"),
        ("k=a\x1bb", "cannot be printed"),
    ],
)
def test_a_bad_tag_is_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(TagError) as err:
        parse_tag(text)
    assert words in str(err.value)


def test_the_last_value_of_a_key_wins_and_at_most_32_tags() -> None:
    assert parse_tags(["team=a", "owner=x", "team=b"]) == {"owner": "x", "team": "b"}
    assert list(parse_tags(["team=a", "owner=x", "team=b"])) == ["owner", "team"]
    many = [f"k{i}=v" for i in range(MAX_TAGS)]
    assert len(parse_tags(many)) == MAX_TAGS
    assert len(parse_tags([*many, "k0=again"])) == MAX_TAGS  # a repeat is not one more
    with pytest.raises(TagError, match="33 tags on one run; at most 32"):
        parse_tags([*many, "one=more"])
    with pytest.raises(TagError):
        merge_tags([(f"k{i}", "v") for i in range(MAX_TAGS + 1)])


def test_the_dialog_field_lists_tags_with_commas_or_lines() -> None:
    assert parse_tag_list("") == {}
    assert parse_tag_list("  \n ") == {}
    assert parse_tag_list("team=vision, owner=alice") == {"team": "vision", "owner": "alice"}
    assert parse_tag_list("team=vision,owner=alice\nsite=lab") == {
        "team": "vision",
        "owner": "alice",
        "site": "lab",
    }
    # A comma not followed by KEY= belongs to the value.
    assert parse_tag_list("note=a, b and c, owner=alice") == {
        "note": "a, b and c",
        "owner": "alice",
    }
    assert parse_tag_list("team=vision, owner") == {"team": "vision, owner"}  # the dialog shows it
    tags = {"team": "vision", "note": "a, b", "owner": "alice"}
    assert parse_tag_list(format_tags(tags)) == tags
    with pytest.raises(TagError, match="'team vision' is not a tag"):
        parse_tag_list("team vision")


def test_tags_read_back_keep_only_what_follows_the_rules() -> None:
    assert clean_tags({"team": "vision", "bad key": "x", "n": 3, "empty": ""}) == {"team": "vision"}
    assert clean_tags(["team=vision"]) == {}
    assert clean_tags(None) == {}


# -- the command line ---------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_tag_options_reach_the_run_spec() -> None:
    args = _args(
        "run", "--tag", "team=vision", "--tag", "owner=alice", "--tag", "team=cv", "--", "t"
    )
    spec = spec_from(args, ["t"])
    assert dict(spec.tags) == {"owner": "alice", "team": "cv"}
    sweep = _args("sweep", "--grid", "lr=1,2", "--tag", "team=vision", "--", "t", "{lr}")
    assert dict(spec_from(sweep, ["t", "1"]).tags) == {"team": "vision"}
    assert dict(spec_from(_args("run", "--", "t"), ["t"]).tags) == {}


def test_a_bad_tag_option_stops_with_exit_2_and_a_sentence(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        _args("run", "--tag", "my team=vision", "--", "t")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --tag: The tag key 'my team' has ' ' in it" in err
    # 33 tags pass one by one; their number is refused as a whole (``run`` then exits 2).
    args = _args("run", *[x for i in range(33) for x in ("--tag", f"k{i}=v")], "--", "t")
    with pytest.raises(UsageError, match="33 tags on one run; at most 32"):
        spec_from(args, ["t"])


# -- the launch dialog's rules --------------------------------------------------------------------


def test_the_launch_form_puts_its_tags_on_every_run() -> None:
    form = LaunchForm(command="t {lr}", grid="lr=1,2", tags="team=vision, owner=alice")
    request = build_request(form, gpu_limit=0)
    assert [dict(s.tags) for s in request.specs] == [{"team": "vision", "owner": "alice"}] * 2
    with pytest.raises(LaunchError) as err:
        build_request(LaunchForm(command="t", tags="owner, team=vision"), gpu_limit=0)
    assert err.value.field == "tags"
    assert "'owner' is not a tag" in str(err.value)


# -- the store ----------------------------------------------------------------------------------


def test_tags_are_stored_with_the_run_and_read_back(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    Store.open(db).close()  # the schema, migrations included
    with RunStore.open(db) as store:
        spec = RunSpec(argv=("t",), tags={"team": "vision", "owner": "alice"})
        tagged = record_refused(store, spec, "local", "refused")
        plain = store.insert(name="plain", backend="local", spec={}, status="queued")
        assert store.get(tagged).tags == {"owner": "alice", "team": "vision"}  # type: ignore[union-attr]
        assert store.get(plain).tags == {}  # type: ignore[union-attr]
    conn = sqlite3.connect(db)
    raw = conn.execute("SELECT tags FROM runs WHERE id = ?", (tagged,)).fetchone()[0]
    assert json.loads(raw) == {"owner": "alice", "team": "vision"}
    # A damaged column reads as no tags; the run still loads.
    conn.execute("UPDATE runs SET tags = 'not json' WHERE id = ?", (plain,))
    conn.execute("UPDATE runs SET tags = NULL WHERE id = ?", (tagged,))
    conn.commit()
    conn.close()
    with RunStore.open(db) as store:
        assert [r.tags for r in store.list_runs()] == [{}, {}]


def test_runs_shows_tags_in_json_and_the_table(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    Store.open(db).close()
    with RunStore.open(db) as store:
        a = store.insert(name="a", backend="local", spec={}, status="queued", tags={"team": "cv"})
        store.insert(name="b", backend="local", spec={}, status="queued")
        rows = store.list_runs()
    assert runs_cmd.as_json(rows[1])["tags"] == {"team": "cv"} and rows[1].id == a
    assert runs_cmd.as_json(rows[0])["tags"] == {}
    text = runs_cmd.table(rows, "USD")
    head = text.splitlines()[0]
    assert head.split()[-1] == "tags" and "team=cv" in text.splitlines()[3]
    assert "tags" not in runs_cmd.table(rows[:1], "USD")  # no column when no run has tags
    long = {f"key{i}": "value" for i in range(8)}
    assert len(runs_cmd.tags_text(long)) == runs_cmd.TAGS_WIDTH


# -- child runs ---------------------------------------------------------------------------------


def test_a_child_run_keeps_its_parents_tags(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    Store.open(db).close()
    tags = {"team": "vision", "note": "a, b"}
    with RunStore.open(db) as store:
        spec = {"argv": ["python", "t.py"], "gpus": 2, "tags": tags}
        parent = store.insert(
            name="p", backend="local", spec=spec, status="succeeded", tags=tags, sweep="s"
        )
        row = store.get(parent)
    assert row is not None
    plan = relaunch_plan(row, {"gpus": 1})
    request = build_request(plan.form, gpu_limit=2)
    assert dict(request.specs[0].tags) == tags
    requests, _ = sweep_request([row], {"gpus": 1}, "s2", gpu_limit=2)
    assert dict(requests[0].specs[0].tags) == tags
