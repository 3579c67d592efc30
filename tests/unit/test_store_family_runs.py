"""``RunStore.family_runs``: the finished, priced runs a prediction fits, with the GPU model of
the run's first GPU (from the devices the recorder stored), and ``predict_spec`` over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.core.clock import SimulatedClock
from costmeter.plugin_api import RunSpec
from costmeter.runs.commands import command_key
from costmeter.service.run_prediction import predict_spec, step_rate
from costmeter.store import Writer
from costmeter.store.runs import RunStore
from costmeter.store.testing import device_infos, host_info, make_tick

T0 = 1_800_000_000.0
TRAIN = ["python", "train.py", "--epochs"]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """host-a with two A100s, as the recorder stores them."""
    path = tmp_path / "runs.db"
    writer = Writer(path, clock=SimulatedClock(T0))
    writer.start()
    writer.register(host_info(), device_infos(n=2))
    writer.submit(make_tick(T0 + 1, devices=2, power_w=300.0))
    writer.stop()
    return path


def _insert(store: RunStore, argv: list[str], *, gpus: list[int], status: str = "succeeded",
            cost: float | None = 1.0, currency: str = "USD", duration: float = 10.0,
            run_dir: str | None = None) -> int:  # fmt: skip
    return store.insert(
        name="r", backend="local", status=status, spec={"argv": argv, "nproc_per_node": 2},
        command_key=command_key(argv, len(gpus)), started=T0, ended=T0 + duration, cost=cost,
        currency=currency, host="host-a", gpus=gpus, pids=[], run_dir=run_dir,
    )  # fmt: skip


def test_family_runs_are_the_succeeded_priced_runs_with_that_prefix(db: Path) -> None:
    with RunStore.open(db) as store:
        a = _insert(store, [*TRAIN, "2"], gpus=[1], duration=4.0)
        b = _insert(store, [*TRAIN, "4"], gpus=[], duration=8.0)
        _insert(store, [*TRAIN, "8"], gpus=[0], status="failed")
        _insert(store, [*TRAIN, "8"], gpus=[0], cost=None)
        _insert(store, [*TRAIN, "8"], gpus=[0], currency="EUR")
        _insert(store, ["python", "other.py", "--epochs", "8"], gpus=[0])
        _insert(store, ["python", "trainXa.py", "--epochs", "8"], gpus=[0])
        rows = store.family_runs("python train.py --epochs", currency="USD")
        # "_" and "%" in a command are letters, not LIKE's wildcards.
        assert store.family_runs("python train_a.py", currency="USD") == []
        assert store.family_runs("python %", currency="USD") == []
    assert [r.id for r in rows] == [b, a]  # newest first
    assert rows[1].gpu_model == "NVIDIA A100-SXM4-80GB" and rows[0].gpu_model is None
    assert (rows[1].duration_s, rows[1].cost, rows[1].nproc) == (4.0, 1.0, 2)
    assert rows[1].command_key == "gpus=1 python train.py --epochs 2"


def test_predict_spec_reads_the_family_and_the_runs_progress(db: Path, tmp_path: Path) -> None:
    pricing = Config().pricing()
    with RunStore.open(db) as store:
        for i, epochs in enumerate((2, 4, 8, 16)):
            run_dir = tmp_path / f"run{i}"
            run_dir.mkdir()
            lines = [
                f'{{"time": {T0 + 2 + 0.5 * s}, "step": {s}, "total": {epochs}}}'
                for s in range(1, epochs + 1)
            ]
            (run_dir / "progress.jsonl").write_text("\n".join(lines) + "\n")
            d = 2.0 + 0.5 * epochs
            _insert(store, [*TRAIN, str(epochs)], gpus=[], duration=d, cost=d / 100,
                    currency=pricing.currency, run_dir=str(run_dir))  # fmt: skip
        assert step_rate(str(tmp_path / "run3")) == (16.0, pytest.approx(0.5))
        assert step_rate(None) == (None, None)
        spec = RunSpec(argv=(*TRAIN, "40"), gpus=0)
        pred = predict_spec(store, spec, pricing)
    assert pred.basis.startswith("from the progress of 4 past runs of this command")
    assert pred.duration_s == pytest.approx(2.0 + 0.5 * 40, rel=0.02)
    assert pred.duration_s is not None
    assert pred.cost == pytest.approx(pred.duration_s / 100, rel=0.02)
