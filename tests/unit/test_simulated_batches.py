"""``costmeter simulate`` in ``TickBatch``es writes the database the NVML sampler path writes
tick by tick: every table, row by row, over the default fleet, odd intervals and fleets the
batches do not serve (those fall back to ticks)."""

from __future__ import annotations

import sqlite3
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from costmeter.cli import simulate_cmd
from costmeter.cli.main import main
from costmeter.service import simulated_batches
from costmeter.service.simulated_batches import SimulatedBatches
from costmeter.store import bulk_rows

T0 = 1_700_000_000.0


def _rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
    finally:
        con.close()


@pytest.mark.parametrize(
    ("spec", "seed", "interval", "hours", "batched"),
    [
        ("8", 0, "1", 0.5, True),  # 1,800 ticks: three whole batches and part of a fourth
        # past several retention passes (every 600 s of the clock): each runs as of its
        # scheduled time whether the ticks were queued one by one or 600 at a time
        ("8", 2, "1", 1.2, True),
        ("8", 42, "0.7", 0.25, True),  # times that are not whole seconds
        ("a100:bursty,t4:light,l4:memory-leak", 3, "7.3", 2.0, True),
        (  # every profile, and seconds sampled twice
            "a100:idle,h100:memory-bound,rtx4090:bursty,l4:memory-leak,a10g:free,t4:light,"
            "a100:input-bound,h100:train",
            77,
            "0.6",
            0.3,
            True,
        ),
        ("p4:train,a10g:input-bound", 11, "1", 0.1, False),  # the P4 has no energy counter
        ("h100:train:mig=3g.40gb+1g.10gb*2,h100:idle", 5, "2", 0.2, False),  # MIG devices
    ],
)
def test_batches_write_what_the_sampler_path_writes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    seed: int,
    interval: str,
    hours: float,
    batched: bool,
) -> None:
    now = types.SimpleNamespace(time=lambda: T0 + 1234.5, monotonic=time.monotonic)
    monkeypatch.setattr(simulate_cmd, "time", now)
    made: list[int] = []
    real = SimulatedBatches.make

    def counting(self: SimulatedBatches, times: list[float]) -> Any:
        made.append(len(times))
        return real(self, times)

    monkeypatch.setattr(SimulatedBatches, "make", counting)
    dbs: list[Path] = []
    for flag in ((), ("--via-nvml-sampler",)):
        db = tmp_path / f"sim{len(dbs)}.db"
        args = ["simulate", "--hours", f"{hours:g}", "--simulate", spec, "--seed", str(seed)]
        assert main([*args, "--db", str(db), "--interval", interval, *flag]) == 0
        dbs.append(db)
    batches, sampled = _rows(dbs[0]), _rows(dbs[1])
    ticks = len(sampled["host_samples"])
    assert ticks >= hours * 3600 / float(interval) - 1
    assert bool(made) == batched
    if batched:
        assert sum(made) == ticks - 1  # all but the first tick
        assert max(made) <= simulated_batches.CHUNK_TICKS
    assert batches == sampled


def test_without_numpy_simulate_goes_tick_by_tick_to_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = types.SimpleNamespace(time=lambda: T0 + 1234.5, monotonic=time.monotonic)
    monkeypatch.setattr(simulate_cmd, "time", now)
    args = ["simulate", "--hours", "0.1", "--simulate", "3", "--seed", "2", "--interval", "1"]
    assert main([*args, "--db", str(tmp_path / "batches.db")]) == 0
    monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` raises ImportError
    monkeypatch.setattr(bulk_rows, "_numpy", False)
    made: list[int] = []
    monkeypatch.setattr(SimulatedBatches, "make", lambda self, times: made.append(1))
    assert main([*args, "--db", str(tmp_path / "ticks.db")]) == 0
    assert not made
    assert _rows(tmp_path / "ticks.db") == _rows(tmp_path / "batches.db")
