"""Storage end to end: a real run writes five torch checkpoints over time into its output
folder; the run service measures the folder while it runs and at its end (rows growing, the
totals and the storage cost in the run's row); ``runs``, ``report`` and ``advise`` show it;
``costmeter checkpoints --delete`` deletes nothing without confirmation and, with it, exactly
the files it listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.plugin_api import BackendConfig, RunSpec
from costmeter.runs.local import LocalBackend
from costmeter.service.runs import RunService, RunServiceOptions
from costmeter.store.runs import RunStore

pytestmark = pytest.mark.integration
PY = sys.executable
#: A training loop that saves a float32 state dict (1 MiB of tensors) per epoch.
TRAIN = """
import sys, time, torch
out = sys.argv[1]
for epoch in range(1, 6):
    torch.save({"w": torch.full((512, 512), float(epoch))}, f"{out}/model_epoch_{epoch}.pt")
    time.sleep(0.4)
"""


def costmeter(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "costmeter", *args, "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=db.parent,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """One run for the module (the deletion test comes last: it changes the folder)."""
    tmp_path = tmp_path_factory.mktemp("storage")
    db = tmp_path / "c.db"
    out = tmp_path / "out"
    out.mkdir()
    service = RunService(
        LocalBackend(BackendConfig(state_dir=tmp_path)),
        RunServiceOptions(
            db_path=db,
            pricing=Config().pricing(),
            runs_dir=tmp_path / "runs",
            poll_s=0.05,
            storage_interval_s=0.05,
        ),
    )
    try:
        spec = RunSpec(argv=(PY, "-c", TRAIN, str(out)), output_dirs=(str(out),))
        run_id = service.submit(spec)
        assert service.wait(120)
    finally:
        service.close()
    return db, out, run_id


def test_the_output_folder_is_measured_while_the_run_writes_and_at_its_end(
    finished_run: tuple[Path, Path, int],
) -> None:
    db, out, run_id = finished_run
    files = sorted(out.iterdir())
    total = sum(f.stat().st_size for f in files)
    with RunStore.open(db) as store:
        history = store.storage_history(run_id)
        row = store.get(run_id)
    assert row is not None and row.status == "succeeded"
    sizes = [h.bytes for h in history]
    assert sizes == sorted(sizes) and len(set(sizes)) >= 2  # it grew while measured
    assert sizes[-1] == total and history[-1].files == 5 and history[-1].path == str(out)
    assert (row.storage_bytes, row.storage_files) == (total, 5)
    assert row.storage_cost == pytest.approx(total / 1e9 * 0.08)  # the shipped EBS gp3 price
    listed = json.loads(costmeter("runs", "--format", "json", db=db).stdout)[0]
    assert listed["storage_bytes"] == total
    assert listed["storage_cost_per_month"] == pytest.approx(row.storage_cost)
    table = costmeter("runs", db=db).stdout
    assert "stored" in table and "/mo" in table


def test_report_adds_the_storage_kept_in_the_window(finished_run: tuple[Path, Path, int]) -> None:
    db, _out, _run_id = finished_run
    text = costmeter("report", "--since", "1h", db=db)
    assert text.returncode == 0, text.stderr
    assert "Storage: run outputs kept" in text.stdout and "/month to keep" in text.stdout
    data = json.loads(costmeter("report", "--since", "1h", "--format", "json", db=db).stdout)
    storage = data["storage"]
    assert storage["runs"] == 1 and storage["price_gb_month"] == 0.08
    assert storage["gb_months"] > 0 and storage["cost"] == pytest.approx(
        storage["gb_months"] * 0.08
    )
    csv_text = costmeter("report", "--since", "1h", "--format", "csv", db=db).stdout
    assert csv_text.splitlines()[-1].startswith("storage,")


def test_advice_then_deletion_only_after_confirmation(finished_run: tuple[Path, Path, int]) -> None:
    db, out, run_id = finished_run
    files = sorted(out.iterdir())
    old = files[:3]
    sizes = [f.stat().st_size for f in old]
    recs = json.loads(costmeter("advise", "--format", "json", db=db).stdout)
    [rec] = [r for r in recs if r["rule"] == "checkpoints"]
    assert rec["evidence"]["values"]["superseded_bytes"] == sum(sizes)
    assert rec["action"]["kind"] == "delete_files"
    # Listed, not deleted: no terminal to ask on and no --yes.
    refused = costmeter("checkpoints", "--run", str(run_id), "--delete", db=db)
    assert refused.returncode == 2 and "nothing deleted" in refused.stderr
    assert all(str(f) in refused.stdout for f in old) and sorted(out.iterdir()) == files
    done = costmeter("checkpoints", "--run", str(run_id), "--delete", "--yes", db=db)
    assert done.returncode == 0, done.stderr
    deleted = [ln for ln in done.stdout.splitlines() if ln.startswith("deleted ")]
    assert deleted == [f"deleted {f} ({size} bytes)" for f, size in zip(old, sizes, strict=True)]
    assert sorted(out.iterdir()) == files[3:]
    with RunStore.open(db) as store:
        row = store.get(run_id)
    assert row is not None and row.storage_files == 2
    assert row.storage_bytes == sum(f.stat().st_size for f in files[3:])


def test_costmeter_run_with_output_dir_says_what_keeping_the_outputs_costs(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    out.mkdir()
    write = "import sys; open(sys.argv[1] + '/ckpt-1.pt', 'wb').write(b'x' * 250000)"
    done = costmeter(
        "run", "--output-dir", str(out), "--", PY, "-c", write, str(out), db=tmp_path / "c.db"
    )
    assert done.returncode == 0, done.stderr
    assert "outputs 250.0 kB in 1 files: $0.000020/month to keep" in done.stderr
