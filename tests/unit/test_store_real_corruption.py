"""Malformed databases found by SQLite's own fuzzers (tests/data/store, public domain): a reader
refuses them and moves nothing; only the recorder moves them aside, and keeps them."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.store import Store, Writer
from costmeter.store.errors import StoreCorruptError, classify, confirm_corrupt

DATA = Path(__file__).resolve().parents[1] / "data" / "store"
DUMPS = sorted(DATA.glob("*.hexdb"))

_SIZE = re.compile(r"\| size (\d+) pagesize (\d+)")
_PAGE = re.compile(r"\| page (\d+) offset (\d+)")
_LINE = re.compile(r"\|\s+(\d+): ((?:[0-9a-f]{2} ){15}[0-9a-f]{2})")


def decode_hexdb(text: str) -> bytes:
    """SQLite's ``dbtotxt`` format: listed 16-byte lines at page offsets, zeros elsewhere."""
    out: bytearray | None = None
    base = 0
    for line in text.splitlines():
        if m := _SIZE.match(line):
            out = bytearray(int(m.group(1)))
        elif m := _PAGE.match(line):
            base = int(m.group(2))
        elif (m := _LINE.match(line)) and out is not None:
            at = base + int(m.group(1))
            out[at : at + 16] = bytes.fromhex(m.group(2))
    assert out is not None, "no '| size' line"
    return bytes(out)


@pytest.fixture(params=DUMPS, ids=[p.stem for p in DUMPS])
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, bytes]:
    data = decode_hexdb(request.param.read_text())
    assert data.startswith(b"SQLite format 3\x00")
    db = tmp_path / "history.db"
    db.write_bytes(data)
    return db, data


def test_the_data_is_there() -> None:
    assert len(DUMPS) == 2 and (DATA / "PROVENANCE.md").exists()


def test_a_read_only_quick_check_confirms_the_damage(damaged: tuple[Path, bytes]) -> None:
    db, data = damaged
    problem = confirm_corrupt(db)
    assert problem is not None and "out of range" in problem
    assert db.read_bytes() == data


def test_readers_refuse_and_move_nothing(damaged: tuple[Path, bytes]) -> None:
    db, data = damaged
    with pytest.raises(StoreCorruptError, match="is damaged") as caught:
        Store.open(db)
    assert "out of range" in caught.value.problem
    assert db.read_bytes() == data
    assert sorted(p.name for p in db.parent.iterdir()) == ["history.db"]


def test_the_recorder_moves_it_aside_and_keeps_it(damaged: tuple[Path, bytes]) -> None:
    db, data = damaged
    w = Writer(db, clock=SimulatedClock(0))
    w.start()
    try:
        assert w.notice is not None and "was damaged" in w.notice
    finally:
        w.stop()
    (aside,) = db.parent.glob("history.db.corrupt-*")
    assert aside.read_bytes() == data and str(aside) in w.notice
    with Store.open(db) as store:
        assert store.integrity_check() == "ok"


def test_what_sqlite_calls_malformed_is_classified_damaged(tmp_path: Path) -> None:
    """SQLite's test 1.1 on dump 1.0: VACUUM fails with "database disk image is malformed"."""
    (dump,) = [p for p in DUMPS if "sql024239" in p.name]
    db = tmp_path / "v.db"
    db.write_bytes(decode_hexdb(dump.read_text()))
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        conn.execute("VACUUM")
    conn.close()
    assert caught.value.sqlite_errorname == "SQLITE_CORRUPT"  # type: ignore[attr-defined]
    found = classify(caught.value, db, doing="read")
    assert isinstance(found, StoreCorruptError)
    assert str(found) == f"The database {db} is damaged (database disk image is malformed)."
