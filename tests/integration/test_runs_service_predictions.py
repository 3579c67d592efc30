"""The prediction a run service records at submit is the one made from scratch on the file at
that moment: the kept family rows, progress rates and fits (``RunStore.family_runs``,
``service.run_prediction``) change nothing. Real processes through the local backend (with
progress files, a parameter that varies), a real database file, runs one after another so
that each submit sees every earlier run priced."""

from __future__ import annotations

import socket
import sqlite3
import sys
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.cost.prediction import Prediction, Target, command_family, key_prefix, predict
from costmeter.plugin_api import BackendConfig, RunSpec
from costmeter.runs.commands import command_key
from costmeter.runs.local import LocalBackend
from costmeter.service.run_prediction import PAST_LIMIT, PROGRESS_LIMIT, past_runs, step_rate
from costmeter.service.runs import RunService, RunServiceOptions
from costmeter.store.runs import RunStore

pytestmark = pytest.mark.integration
PY = sys.executable
#: Sleeps argv[1] hundredths of a second in 4 steps, reporting each to its progress file.
SCRIPT = (
    "import json, os, sys, time\n"
    "n = int(sys.argv[1])\n"
    "with open(os.environ['COSTMETER_PROGRESS_FILE'], 'a') as f:\n"
    "    for s in range(1, 5):\n"
    "        time.sleep(n / 400)\n"
    "        f.write(json.dumps({'time': time.time(), 'step': s * n, 'total': 4 * n}) + '\\n')\n"
)


def from_scratch(store: RunStore, spec: RunSpec, currency: str) -> Prediction:
    """``predict_spec`` as it was before anything was kept: the query, every file read."""
    key = command_key(spec.argv, spec.gpus)
    family = command_family(key).key
    rows = store.family_runs(key_prefix(key), currency=currency, limit=PAST_LIMIT)
    rows = [r for r in rows if command_family(r.command_key).key == family]
    rates = [step_rate(r.run_dir) for r in rows[:PROGRESS_LIMIT]]
    model = None
    if spec.gpus and any(r.gpu_model for r in rows):
        model = store.gpu_model(socket.gethostname())
    return predict(Target(key, model, spec.nproc_per_node), past_runs(rows, rates))


def test_recorded_predictions_equal_the_ones_made_from_scratch(tmp_path: Path) -> None:
    pricing = Config().pricing()
    db = tmp_path / "p.db"
    service = RunService(
        LocalBackend(BackendConfig(state_dir=tmp_path)),
        RunServiceOptions(db_path=db, pricing=pricing, runs_dir=tmp_path / "runs", poll_s=0.02),
    )
    plain = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    reference = RunStore(plain, db)  # keeps nothing
    methods = []
    try:
        for i in range(12):
            spec = RunSpec(argv=(PY, "-c", SCRIPT, str(1 + i % 4)))
            want = from_scratch(reference, spec, pricing.currency)
            run_id = service.submit(spec)
            assert service.wait(60)
            row = service.row(run_id)
            assert row is not None and row.status == "succeeded", row
            got = (row.predicted_duration_s, row.predicted_cost, row.predicted_low)
            assert got == (want.duration_s, want.cost, want.low), i
            assert (row.predicted_high, row.prediction_basis) == (want.high, want.basis), i
            methods.append(want.method)
    finally:
        service.close()
        plain.close()
    # The runs gave the prediction something to stand on: nothing, then fits.
    assert methods[0] == "none" and methods[-1] == "fit"
