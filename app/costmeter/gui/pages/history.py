"""The History page: any recorded metric over any range, with what that range cost.

Every read goes through ``ctx.reader`` (a worker thread). Panning or zooming re-queries the
visible range once the view settles, so months of data stay a few thousand points at the
resolution the zoom needs (the store picks raw, 1-minute or hourly rows).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PySide6.QtCore import QSettings, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QVBoxLayout

from costmeter.cost.ledger import CostReport
from costmeter.gui.context import AppContext
from costmeter.gui.history_data import (
    MARGIN,
    VISIBLE_POINTS,
    Catalogue,
    Metric,
    Target,
    axis_scale,
    describe_resolution,
    load_catalogue,
    load_cost,
    load_series,
    metrics_for,
    plot_arrays,
    preset_range,
    same_range,
    y_range,
)
from costmeter.gui.pages.base import Page
from costmeter.gui.theme import colour_for
from costmeter.gui.who_pays_data import OwnerFootprint
from costmeter.gui.widgets.history_controls import HistoryControls
from costmeter.gui.widgets.history_cost import CostPanel
from costmeter.gui.widgets.history_plot import HistoryPlot
from costmeter.gui.widgets.owner_filter_bar import OwnerFilterBar
from costmeter.service.export import write_series
from costmeter.service.reading import Series, Store

T = TypeVar("T")

NO_HISTORY = (
    "No history yet.\nCostmeter records while it runs: come back in a few minutes, "
    "or fill a test database with `costmeter simulate`."
)
#: How often a "Last …" range slides forward to now while the page is shown.
SLIDE_MS = 60_000


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


class HistoryPage(Page):
    title = "History"
    key = "history"
    #: An export finished: the file and the number of points written.
    exported = Signal(str, int)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.targets: list[Target] = []
        self.span: tuple[float, float] | None = None
        #: The last series drawn, and the range and point budget it was asked for.
        self.series: Series | None = None
        self.loaded: tuple[float, float, int] | None = None
        #: The last cost report shown, priced over exactly the visible range.
        self.cost: CostReport | None = None
        self._busy: set[str] = set()
        self._request_id = 0
        self._shown_id = 0
        self._expected: tuple[float, float] | None = None
        self._saved: dict[str, str] = {}
        #: A message for the status line until the next read (an export, an error).
        self._note: tuple[str, bool] | None = None
        #: Only this owner's GPUs (from the Who pays page), and its period to show once.
        self.owner: OwnerFootprint | None = None
        self._owner_range: tuple[float, float] | None = None
        self._build()
        self.controls.set_preset("24h")
        self._custom = QTimer(self, singleShot=True, interval=600)
        self._custom.timeout.connect(self._apply_custom)
        self._slide = QTimer(self, interval=SLIDE_MS)
        self._slide.timeout.connect(self._slide_forward)
        self._slide.start()
        ctx.signals.theme_changed.connect(lambda _name: self.plot.apply_theme())
        ctx.signals.config_changed.connect(
            lambda _c: self._request_cost(*self.plot.visible_range(), force=True)
        )
        ctx.signals.host_filter_changed.connect(self._host_changed)

    def _host_changed(self, _host: object) -> None:
        if self.isVisible():
            self.on_shown()  # the targets of the host chosen

    def _build(self) -> None:
        self.controls = c = HistoryControls()
        self.plot = HistoryPlot()
        self.costs = CostPanel()
        body = QHBoxLayout()
        body.addWidget(self.plot, 1)
        body.addWidget(self.costs)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        self.owner_bar = OwnerFilterBar("device")
        self.owner_bar.cleared.connect(lambda: self.filter_owner(None))
        layout.addWidget(self.owner_bar)
        layout.addWidget(c)
        layout.addLayout(body, 1)
        c.device_box.currentIndexChanged.connect(self._target_changed)
        c.metric_box.currentIndexChanged.connect(lambda _i: self._reload())
        c.preset_box.currentIndexChanged.connect(self._preset_changed)
        for edit in (c.start_edit, c.end_edit):
            edit.dateTimeChanged.connect(lambda _dt: self._custom.start())
        c.export_button.clicked.connect(self._ask_export)
        self.plot.range_settled.connect(self._on_range)

    # -- Page --------------------------------------------------------------------------------
    def on_shown(self) -> None:
        self._submit("catalogue", load_catalogue, self._on_catalogue)

    def has_data(self) -> bool:
        return self.series is not None and self.loaded is not None

    def loading(self) -> bool:
        """True while a read of this page is on the reader (the "Loading…" hint shows)."""
        return bool(self._busy)

    def save_state(self, settings: QSettings) -> None:
        settings.setValue("history/preset", self.controls.preset())
        target = self.current_target()
        if target is not None:
            settings.setValue("history/device", target.key)
        metric = self.current_metric()
        if metric is not None:
            settings.setValue("history/metric", metric.name)
        if self.loaded is not None:  # the range, for a custom one to come back
            start, end = self.plot.visible_range()
            settings.setValue("history/start", start)
            settings.setValue("history/end", end)

    def restore_state(self, settings: QSettings) -> None:
        for name in ("preset", "device", "metric", "start", "end"):
            value = settings.value(f"history/{name}")
            if value is not None:
                self._saved[name] = str(value)
        self.controls.set_preset(self._saved.get("preset", "24h"))

    # -- choices -----------------------------------------------------------------------------
    def current_target(self) -> Target | None:
        i = self.controls.device_box.currentIndex()
        return self.targets[i] if 0 <= i < len(self.targets) else None

    def current_metric(self) -> Metric | None:
        target, name = self.current_target(), self.controls.metric_box.currentData()
        if target is None:
            return None
        return next((m for m in metrics_for(target.kind) if m.name == name), None)

    def _on_catalogue(self, catalogue: Catalogue) -> None:
        self.span = catalogue.span
        previous = self.current_target()
        shown = [  # the host filter, and the owner's GPUs when one was chosen
            t for t in catalogue.targets if self.ctx.shows_host(t.host) and self._owner_used(t)
        ]
        gpus = [t.key for t in shown if t.kind == "device"]
        wanted = previous.key if previous else self._saved.pop("device", gpus[0] if gpus else "")
        self.targets = shown
        self.controls.set_targets(self.targets, wanted)
        if self.span is None or not self.targets:
            self.series = None
            self.plot.clear()
            self.plot.show_message(NO_HISTORY)
            self.costs.show_nothing("nothing recorded yet")
            return
        self._fill_metrics(self._saved.pop("metric", ""))
        start, end = float(self._saved.pop("start", 0)), float(self._saved.pop("end", 0))
        if self._owner_range is not None:
            self.show_range(*self._owner_range)
            self._owner_range = None
        elif previous is None and self.controls.preset() == "custom" and end > start:
            self.show_range(start, end)  # the custom range of the last session
        else:
            self._apply_preset()

    def filter_owner(
        self, key: Mapping[str, str | None] | None, footprint: OwnerFootprint | None = None
    ) -> None:
        """List only the GPUs (and their hosts) the owner used, over the period it was looked
        at (``footprint`` from the Who pays page); None lists every device again."""
        self.owner = footprint if key and footprint is not None else None
        self._owner_range = (footprint.start, footprint.end) if self.owner and footprint else None
        if self.owner is None:
            self.owner_bar.show_owner(None)
        else:
            count = len(self.owner.uuids)
            gpus = f"the {count} GPU{'s' if count != 1 else ''} used" if count else "no GPU used"
            when = f"between {_when(self.owner.start)} and {_when(self.owner.end)}"
            self.owner_bar.show_owner(key, f"{gpus} {when}, and their hosts")
        self.on_shown()

    def _owner_used(self, target: Target) -> bool:
        owner = self.owner
        if owner is None:
            return True
        return target.uuid in owner.uuids if target.kind == "device" else target.host in owner.hosts

    def _fill_metrics(self, wanted: str) -> None:
        target = self.current_target()
        if target is None:
            return
        current = self.current_metric()
        keep = wanted or (current.name if current else "")
        self.controls.set_metrics(metrics_for(target.kind), keep)
        index = target.index if target.kind == "device" else 6
        self.plot.set_colour(colour_for(index))
        self.costs.set_target(target)

    def _target_changed(self, _index: int) -> None:
        self._fill_metrics("")
        if self.cost is not None:  # the report covers every device: no new read needed
            self._show_cost(self.cost)
        self._reload()

    def _reload(self) -> None:
        self.plot.clear()
        self._request(*self.plot.visible_range(), force=True)

    # -- ranges ------------------------------------------------------------------------------
    def _preset_changed(self, _index: int) -> None:
        if self.controls.preset() != "custom":
            self._apply_preset()

    def _apply_preset(self) -> None:
        wanted = preset_range(self.controls.preset(), time.time(), self.span)
        if wanted is not None:
            self._show(*wanted)
        elif self.loaded is not None:
            self._request(*self.plot.visible_range(), force=True)
        else:  # a custom range without one chosen yet
            self.controls.set_preset("24h")
            self._apply_preset()

    def _slide_forward(self) -> None:
        if self.isVisible() and self.controls.preset() not in ("custom", "all") and self.span:
            self._apply_preset()

    def show_range(self, start: float, end: float) -> None:
        """Show ``[start, end]`` (Unix seconds) as a custom range and load it."""
        self.controls.set_preset("custom")
        self._show(start, end)

    def _show(self, start: float, end: float) -> None:
        self._expected = (start, end)
        self.controls.set_range(start, end)
        self.plot.set_visible_range(start, end)
        self.plot.settle_now()

    def _apply_custom(self) -> None:
        start, end = self.controls.edited_range()
        if end <= start:
            self._note = ("The start of the range must be before its end.", True)
            self._update_status()
            return
        self.show_range(start, end)

    def _on_range(self, start: float, end: float) -> None:
        """The view settled: a pan or zoom by the mouse makes the range a custom one."""
        expected, self._expected = self._expected, None
        if expected is None or not same_range(expected, (start, end)):
            self.controls.set_preset("custom")
            self.controls.set_range(start, end)
        self._request(start, end)

    # -- reads -------------------------------------------------------------------------------
    def _request(self, start: float, end: float, force: bool = False) -> None:
        target, metric = self.current_target(), self.current_metric()
        if target is None or metric is None or end <= start or self.span is None:
            return
        pad = (end - start) * MARGIN
        wanted = (start - pad, end + pad, int(VISIBLE_POINTS * (1 + 2 * MARGIN)))
        if force or self.loaded is None or not same_range(self.loaded[:2], wanted[:2]):
            self._request_id += 1
            rid = self._request_id
            self._submit(
                "series",
                lambda store: load_series(store, target, metric.name, *wanted),
                lambda series: self._on_series(rid, target, metric, wanted, series),
            )
        self._request_cost(start, end)

    def _request_cost(self, start: float, end: float, force: bool = False) -> None:
        if self.span is None or end <= start:
            return
        same = self.cost is not None and same_range((self.cost.start, self.cost.end), (start, end))
        if same and not force:
            return
        pricing = self.ctx.pricing()
        self._submit("cost", lambda store: load_cost(store, pricing, start, end), self._show_cost)

    def _submit(
        self,
        name: str,
        job: Callable[[Store], T],
        done: Callable[[T], None],
        what: str = "load the history",
    ) -> None:
        """Run ``job`` on the reader; "Loading…" shows until every read of this page is back."""
        key = f"history/{name}"
        self._busy.add(key)
        self._note = None
        self._update_status()

        def finished(result: Any) -> None:
            self._busy.discard(key)
            done(result)
            self._update_status()

        def failed(message: str) -> None:
            self._busy.discard(key)
            self._note = (f"Could not {what}: {message}", True)
            if self.series is None and name != "export":
                self.plot.show_message(f"Could not {what}.\n{message}")
            self._update_status()

        self.ctx.reader.submit(key, job, finished, failed)

    def _on_series(
        self,
        rid: int,
        target: Target,
        metric: Metric,
        wanted: tuple[float, float, int],
        series: Series,
    ) -> None:
        if (
            rid < self._shown_id
            or target != self.current_target()
            or metric != self.current_metric()
        ):
            return  # an older answer, or one for another choice
        self._shown_id = rid
        self.series, self.loaded = series, wanted
        largest = float(np.nanmax(series.max)) if np.isfinite(series.max).any() else math.nan
        factor, unit = axis_scale(metric.unit, largest)
        self.plot.set_axis_label(metric.label, unit)
        self.plot.set_y_range(y_range(metric, largest / factor))
        self.plot.set_data(plot_arrays(series, factor), band=series.resolution != "raw")
        if math.isnan(largest):
            self.plot.set_hint(self._nothing_text(target, metric, bool(len(series))))
        else:
            self.plot.set_hint("")

    def _nothing_text(self, target: Target, metric: Metric, had_rows: bool) -> str:
        if had_rows:
            return f"{target.label} reported no {metric.label.lower()} in this range."
        text = "Nothing recorded in this range."
        if self.span is not None:
            text += f"\nThe history runs from {_when(self.span[0])} to {_when(self.span[1])}."
        return text

    def _show_cost(self, report: CostReport) -> None:
        self.cost = report
        self.costs.show_report(report, self.current_target())

    def _update_status(self) -> None:
        text, error = self._note or ("", False)
        if not text and self._busy:
            text = "Loading…"
        elif not text and self.series is not None and len(self.series):
            band = "" if self.series.resolution == "raw" else ", shaded band = min to max"
            text = f"{describe_resolution(self.series)}{band} · {len(self.series):,} points"
        self.controls.set_status(text, error)

    # -- export ------------------------------------------------------------------------------
    def _ask_export(self) -> None:
        target, metric = self.current_target(), self.current_metric()
        if target is None or metric is None:
            return
        name = f"costmeter-{target.key.split(':')[-1][:16]}-{metric.name}.csv"
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export the visible range", str(Path.home() / name), "CSV (*.csv);;JSON (*.json)"
        )
        if path:
            if "json" in chosen and not path.lower().endswith(".json"):
                path = str(Path(path).with_suffix(".json"))
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        """Write the visible range, at the resolution shown, to ``path`` (on the reader)."""
        target, metric = self.current_target(), self.current_metric()
        if target is None or metric is None:
            return
        start, end = self.plot.visible_range()

        def job(store: Store) -> int:
            series = load_series(store, target, metric.name, start, end, VISIBLE_POINTS)
            return write_series(
                path, series, device=target.label, start=start, end=end, unit=metric.unit
            )

        def done(count: int) -> None:
            self._note = (f"Exported {count:,} points to {path}.", False)
            self.exported.emit(str(path), count)

        self._submit("export", job, done, what="export")
