"""The ``checkpoints`` rule on real torch checkpoint files: it fires with the GB of the files
superseded, the money at the storage price, and the half-precision saving measured from the
tensors; it stays quiet under its threshold; ``evaluate`` runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from costmeter.advice.checkpoints import RunCheckpoints
from costmeter.advice.engine import RULES, evaluate
from costmeter.advice.facts import AdviceFacts
from costmeter.advice.rules.storage import checkpoints
from costmeter.advice.thresholds import Thresholds
from costmeter.service.checkpoint_files import list_checkpoints


def _save(out: Path, epochs: int, rows: int = 1024) -> int:
    """Epoch checkpoints of a float32 state dict (rows x 256) and an int64 step counter."""
    out.mkdir(parents=True, exist_ok=True)
    for e in range(1, epochs + 1):
        state = {"w": torch.full((rows, 256), float(e)), "step": torch.tensor([e])}
        torch.save(state, out / f"model_epoch_{e}.pt")
    return rows * 256 * 4


def _facts(out: Path, price: float = 0.08) -> AdviceFacts:
    files, partial = list_checkpoints([str(out)])
    stored = sum(f.bytes for f in files)
    run = RunCheckpoints(
        run_id=7,
        run_name="train",
        host="box",
        dirs=(str(out),),
        stored_bytes=stored,
        stored_files=len(files),
        measured_at=1000.0,
        files=tuple(files),
        listing_partial=partial,
    )
    return AdviceFacts(
        start=0.0,
        end=1000.0,
        currency="USD",
        tariff_per_kwh=0.1,
        checkpoints=(run,),
        storage_gb_month=price,
    )


def test_the_rule_fires_with_the_bytes_of_the_superseded_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tensor_bytes = _save(out, 5)
    [rec] = checkpoints(_facts(out), Thresholds())
    old = [out / f"model_epoch_{e}.pt" for e in (1, 2, 3)]
    on_disk = sum(p.stat().st_size for p in old)
    assert rec.evidence.values["superseded_bytes"] == on_disk
    assert rec.savings is not None
    assert rec.savings.money_per_month == pytest.approx(on_disk / 1e9 * 0.08)
    # Half precision halves the float32 tensors of the two kept files (the int64 step stays).
    assert rec.evidence.values["half_saving_bytes"] == 2 * tensor_bytes // 2
    assert "measured from the tensors" in rec.detail
    assert rec.action.kind == "delete_files"
    listed = [f["path"] for f in rec.action.changes["files"]]
    assert listed == [str(p) for p in old]
    assert rec.target.run == 7 and "unknown" in dict(rec.evidence.facts)["best"]


def test_no_advice_under_the_threshold_or_with_few_checkpoints(tmp_path: Path) -> None:
    small = tmp_path / "small"
    _save(small, 5, rows=16)  # a few kB each: under 1 MiB superseded
    assert checkpoints(_facts(small), Thresholds()) == []
    two = tmp_path / "two"
    _save(two, 2)
    assert checkpoints(_facts(two), Thresholds()) == []
    assert checkpoints(_facts(small), Thresholds(checkpoint_min_mib=0.0)) != []


def test_no_price_no_money_but_still_the_gb(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _save(out, 4)
    [rec] = checkpoints(_facts(out, price=0.0), Thresholds())
    assert rec.savings is None and rec.evidence.values["superseded_bytes"] > 1024 * 1024


def test_the_engine_runs_the_rule(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _save(out, 4)
    assert "checkpoints" in RULES
    recs, messages = evaluate(_facts(out), Thresholds())
    assert [r.rule for r in recs] == ["checkpoints"] and messages == []


def test_a_file_torch_cannot_load_safely_is_an_estimate_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for e in range(1, 5):  # not a torch archive: weights_only loading refuses it
        (out / f"ckpt-{e}.pt").write_bytes(b"\x80not a torch file" * 100_000)
    [rec] = checkpoints(_facts(out), Thresholds())
    kept = 2 * (out / "ckpt-4.pt").stat().st_size
    assert rec.evidence.values["half_saving_bytes"] == kept // 2
    assert "an estimate" in rec.detail and "measured" not in rec.detail
