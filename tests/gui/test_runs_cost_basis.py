"""The Runs page's cost cell says when a batch job's cost is an estimate (issue 15): "~$X est."
with the reason in its tooltip; a measured cost shows as before. Rows from a real database."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from costmeter.config import Config
from costmeter.cost.run_cost import format_cost
from costmeter.gui.models.run_model import COL_COST, RunTableModel, merge
from costmeter.service.run_costs import cost_columns, cost_of_run
from costmeter.store import Store
from costmeter.store.runs import RunStore


def test_an_estimated_cost_is_marked_and_its_tooltip_says_why(tmp_path: Path, qapp: object) -> None:
    db = tmp_path / "runs.db"
    Store.open(db).close()
    pricing = Config().pricing()
    with RunStore.open(db) as store:
        ids = []
        for node, job in (("gpu-n9", "31"), (None, None)):
            run_id = store.insert(
                name="train", backend="slurm", spec={"gpus": 1}, status="succeeded",
                started=1_700_000_000.0, ended=1_700_003_600.0, node=node, job=job,
                allocated_gpus=1 if job else None, currency="USD",
            )  # fmt: skip
            row = store.get(run_id)
            assert row is not None
            store.update(run_id, **cost_columns(cost_of_run(store, row, pricing)))
            ids.append(run_id)
        rows = [store.get(i) for i in ids]
    estimated, measured = rows
    assert estimated is not None and measured is not None
    assert estimated.estimated and not measured.estimated
    model = RunTableModel()
    model.set_rows([merge(r, None, None, "USD") for r in (estimated, measured)])
    est_cell = model.index(0, COL_COST)
    assert est_cell.data() == f"~{format_cost(estimated.cost or 0, 'USD')} est."
    tip = est_cell.data(Qt.ItemDataRole.ToolTipRole)
    assert "Estimated" in tip and "gpu-n9" in tip and "1 GPU(s) allocated" in tip
    plain = model.index(1, COL_COST)
    assert plain.data() == format_cost(measured.cost or 0, "USD")
    assert not (plain.data(Qt.ItemDataRole.ToolTipRole) or "").startswith("Estimated")
