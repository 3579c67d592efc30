"""The History page on an imported nvidia-smi log: the GPUs are offered, "All history" shows the
imported range, and the plot and cost are the store's, as for recorded data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from costmeter.gui.history_data import same_range
from costmeter.gui.pages.history import HistoryPage
from costmeter.service.log_import import ImportOptions, import_log
from costmeter.store import Store

pytestmark = pytest.mark.gui

LOG = Path(__file__).resolve().parents[1] / "data" / "nvidia_smi" / "nanogpt_8gpu_train_nounits.csv"


def test_history_shows_an_imported_log(make_ctx, qtbot, tmp_path: Path) -> None:
    db = tmp_path / "imported.db"
    columns = ("timestamp", "index", "temperature.gpu", "utilization.gpu", "power.draw")
    import_log(LOG, db, ImportOptions(host="gpu-box-1", gpu_model="h100", columns=columns))

    page = HistoryPage(make_ctx(db_path=db))
    qtbot.addWidget(page)
    page.resize(1100, 700)
    page.show()
    page.on_shown()
    qtbot.waitUntil(lambda: bool(page.targets), timeout=10_000)
    labels = [t.label for t in page.targets if t.kind == "device"]
    assert len(labels) == 8 and all("NVIDIA H100 80GB HBM3" in label for label in labels)

    page.controls.preset_box.setCurrentIndex(page.controls.preset_box.findData("all"))

    def cost_of_the_view() -> bool:
        # The cost card of the range first shown stays until the new one arrives (its request
        # waits out a debounce): wait for the card of the range in view, not for any card.
        cost = page.cost
        return (
            page.has_data()
            and not page.loading()
            and cost is not None
            and same_range((cost.start, cost.end), page.plot.visible_range())
        )

    qtbot.waitUntil(cost_of_the_view, timeout=10_000)
    target, metric = page.current_target(), page.current_metric()
    assert target is not None and metric is not None and page.loaded is not None
    with Store.open(db) as store:
        series = store.query_series(target.id, metric.name, *page.loaded)
        usage = store.device_usage(*page.plot.visible_range())
    assert len(series) > 0 and page.series == series
    _, drawn = page.plot.drawn()
    np.testing.assert_allclose(drawn[np.isfinite(drawn)], np.asarray(series.avg, dtype=float))
    assert sum(d.energy_kwh for d in page.cost.devices) == pytest.approx(
        sum(u.energy_j for u in usage) / 3.6e6
    )
