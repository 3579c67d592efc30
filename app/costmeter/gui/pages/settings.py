"""The Settings page: the configuration file as a form, the GPU price table, and the theme.

Nothing is written until Save, and then only what the loader accepts: the form builds a new
``Config``, the writer turns it into text and reads that text back with the loader's own checks
before touching the file. A refusal is shown in words beside its field and at the top, and the file
is left as it was. Prices and alerts apply at once (``ctx.set_config``); the sampling intervals,
retention and database location are read when Costmeter starts, and the page says so. The theme is
a preference of this computer (QSettings), not of the configuration, and applies as it is clicked.
Saving touches only a small file on the GUI thread, never the database.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QPalette, QResizeEvent, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from costmeter.config import Config
from costmeter.config_writer import save_config
from costmeter.core.errors import ConfigError
from costmeter.cost.pricing import load_default_pricing
from costmeter.gui.context import AppContext
from costmeter.gui.pages.base import Page
from costmeter.gui.widgets.form_field import HINT_STYLE, FormField, line_edit, section
from costmeter.gui.widgets.price_table import PriceTable
from costmeter.service.form_text import number_text
from costmeter.service.reading import default_db_path
from costmeter.service.settings_form import (
    FIELDS,
    MONEY_UNITS,
    build_config,
    cost_defaults,
    in_words,
    what_applies,
)

#: The message at the top of the page: a refusal, or what was saved.
MESSAGE_STYLES = {
    "error": "background:#fee2e2; color:#7f1d1d; border-radius:6px; padding:8px;",
    "ok": "background:#dcfce7; color:#14532d; border-radius:6px; padding:8px;",
}
#: The QSettings key of the theme preference.
THEME_KEY = "appearance/theme"
#: Below this page width the sections stand in one column.
TWO_COLUMNS_FROM = 900


class SettingsPage(Page):
    title = "Settings"
    key = "settings"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.edits: dict[str, QLineEdit] = {}
        self.fields: dict[str, FormField] = {}
        self.forever: dict[str, QCheckBox] = {}
        self._loading = False
        self.dirty = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(16, 12, 16, 12)
        outer.setSpacing(8)
        self.message = QLabel()
        self.message.setObjectName("settings-message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        outer.addWidget(self.message)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(0, 0, 8, 0)
        column.setSpacing(12)
        top = QHBoxLayout()
        top.setSpacing(12)
        self._columns: tuple[QVBoxLayout, QVBoxLayout] = (QVBoxLayout(), QVBoxLayout())
        self._boxes = {
            "sampling": self._sampling_box(),
            "retention": self._retention_box(),
            "cost": self._cost_box(),
            "alerts": self._alerts_box(),
            "appearance": self._appearance_box(),
        }
        for layout in self._columns:
            layout.addStretch(1)
            top.addLayout(layout, 1)
        self._top = top
        self._arrange(2)
        column.addLayout(top)
        column.addWidget(self._database_box())
        column.addWidget(self._prices_box())
        column.addStretch(1)
        self.scroll_area.setWidget(body)
        outer.addWidget(self.scroll_area, 1)
        outer.addLayout(self._button_bar())
        shortcut = QShortcut(QKeySequence(QKeySequence.StandardKey.Save), self)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(self.save)
        self.load(ctx.config)
        ctx.signals.config_changed.connect(self._config_changed)

    # -- building ----------------------------------------------------------------------------
    def _arrange(self, count: int) -> None:
        """The small sections in two columns, or in one when the window is narrow."""
        if getattr(self, "_column_count", 0) == count:
            return
        self._column_count = count
        names: tuple[tuple[str, ...], tuple[str, ...]] = (
            (("sampling", "retention", "alerts"), ("cost", "appearance"))
            if count == 2
            else (("sampling", "retention", "cost", "alerts", "appearance"), ())
        )
        for layout in self._columns:
            for box in self._boxes.values():
                layout.removeWidget(box)
        for layout, column in zip(self._columns, names, strict=True):
            for index, name in enumerate(column):
                layout.insertWidget(index, self._boxes[name])  # before the closing stretch
        self._top.setStretch(1, 1 if count == 2 else 0)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._arrange(2 if event.size().width() >= TWO_COLUMNS_FROM else 1)
        super().resizeEvent(event)

    def _field(
        self,
        form: QFormLayout,
        key: str,
        label: str,
        *,
        width: int = 90,
        flexible: bool = False,
        unit: str = "",
        hint: str = "",
        extra: QWidget | None = None,
    ) -> QLineEdit:
        """A line edit for config ``key``; retention fields get their "forever" box."""
        edit = line_edit(width, flexible=flexible)
        edit.setObjectName(key)
        edit.textChanged.connect(self._edited)
        if key.startswith("retention."):
            extra = QCheckBox("forever")
            extra.setObjectName(f"{key}.forever")
            extra.toggled.connect(lambda on, k=key: self._forever_toggled(k, on))
            self.forever[key] = extra
        field = FormField(edit, unit=unit, hint=hint, extra=extra)
        self.edits[key], self.fields[key] = edit, field
        form.addRow(label, field)
        return edit

    def _sampling_box(self) -> QGroupBox:
        box, form = section("Sampling", "Applies the next time Costmeter starts.")
        self._field(form, "sampling.interval_s", "Sample every", unit="seconds")
        self._field(
            form, "sampling.process_scan_interval_s", "List processes every", unit="seconds"
        )
        return box

    def _retention_box(self) -> QGroupBox:
        box, form = section(
            "Retention",
            "How long each resolution is kept; coarser data at least as long as finer data. "
            "Applies the next time Costmeter starts.",
        )
        self._field(form, "retention.raw_days", "Raw samples", unit="days")
        self._field(form, "retention.minute_days", "1-minute averages", unit="days")
        self._field(form, "retention.hour_days", "1-hour averages", unit="days")
        return box

    def _alerts_box(self) -> QGroupBox:
        box, form = section("Alerts", "Desktop notifications; they apply at once.")
        self._field(
            form,
            "alerts.idle_allocated_minutes",
            "GPU idle but allocated",
            unit="minutes",
            hint="A process holds the GPU's memory but does no work for this long.",
        )
        self._field(form, "alerts.daily_budget", "Daily budget", unit="per day")
        self.edits["alerts.daily_budget"].setPlaceholderText("none")
        return box

    def _cost_box(self) -> QGroupBox:
        box, form = section(
            "Cost", "Leave a field empty to use the default shown in it. Applies at once."
        )
        d = load_default_pricing()
        self._field(
            form,
            "cost.currency",
            "Currency",
            width=110,
            hint="Only the symbol shown: prices are not converted, so enter them in this currency.",
        )
        self.edits["cost.currency"].setPlaceholderText(f"{d.currency} (default)")
        for key, label, unit, value, source, date in cost_defaults(d):
            edit = self._field(form, key, label, width=270, flexible=True, unit=unit)
            said = source if source.startswith("default:") else f"default: {source}"
            edit.setPlaceholderText(f"{number_text(value)} ({said})")
            money = f"{d.currency} " if key in MONEY_UNITS else ""
            edit.setToolTip(
                f"Default: {number_text(value)} {money}{unit}\n{source}"
                + (f"\n{date}" if date else "")
            )
        self.fields["cost.cpu_tdp_w"].set_hint(
            "All sockets together; used when the CPU's energy counters cannot be read."
        )
        return box

    def _appearance_box(self) -> QGroupBox:
        box, form = section("Appearance")
        row = QHBoxLayout()
        self.theme_buttons = QButtonGroup(self)
        self.light = QRadioButton("Light")
        self.dark = QRadioButton("Dark")
        for button in (self.light, self.dark):
            self.theme_buttons.addButton(button)
            row.addWidget(button)
        row.addStretch(1)
        holder = QWidget()
        holder.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        form.addRow("Theme", holder)
        self.dark.toggled.connect(self._theme_toggled)
        return box

    def _database_box(self) -> QGroupBox:
        box, form = section("Database location")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        where = f"Recording now into {self.ctx.db_path}."
        if self.ctx.simulate:
            where += " Simulated GPUs are recorded into a separate file beside the chosen one."
        edit = self._field(
            form,
            "storage.database",
            "Database file",
            width=560,
            flexible=True,
            extra=browse,
            hint=f"{where} A new location applies the next time Costmeter starts; the history "
            "already recorded stays in the old file. (--db on the command line wins over this.)",
        )
        edit.setPlaceholderText(f"{default_db_path()} (default)")
        return box

    def _prices_box(self) -> QGroupBox:
        box = QGroupBox("GPU prices")
        layout = QVBoxLayout(box)
        intro = QLabel(
            "Each model's price per hour, where it comes from and when. Edit a default row to use "
            "your own price (it becomes your row); add the models Costmeter does not know. "
            "Applies at once."
        )
        intro.setWordWrap(True)
        intro.setStyleSheet(HINT_STYLE)
        layout.addWidget(intro)
        self.prices = PriceTable()
        self.prices.changed.connect(self._edited)
        layout.addWidget(self.prices)
        return box

    def _button_bar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        self.state = QLabel()
        self.state.setStyleSheet(HINT_STYLE)
        self.revert_button = QPushButton("Revert")
        self.revert_button.setToolTip("Show the saved settings again, dropping unsaved changes.")
        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_button.setToolTip(f"Write the settings to {self.ctx.config_path} (Ctrl+S).")
        self.revert_button.clicked.connect(self.revert)
        self.save_button.clicked.connect(self.save)
        bar.addWidget(self.state, 1)
        bar.addWidget(self.revert_button)
        bar.addWidget(self.save_button)
        return bar

    # -- showing -----------------------------------------------------------------------------
    def load(self, config: Config) -> None:
        """Show ``config`` (and the price table it puts in force) in the form."""
        self._loading = True
        try:
            for key, spec in FIELDS.items():
                value = spec.read(config)
                if key in self.forever:
                    self.forever[key].setChecked(value is None)
                    self.edits[key].setEnabled(value is not None)
                text = value if isinstance(value, str) else number_text(value)
                self.edits[key].setText(text)
            pricing = config.pricing()
            for key, per in MONEY_UNITS.items():
                self.fields[key].unit.setText(f"{pricing.currency} {per}")
            self.prices.load(pricing.gpu_rows, pricing.currency)
            self._show_theme()
        finally:
            self._loading = False
        self._clear_errors()
        self._set_dirty(False)

    def _show_theme(self) -> None:
        """The theme in use: the palette tells even when ``--theme`` overrode the preference."""
        app = QApplication.instance()
        dark = False
        if isinstance(app, QApplication):
            dark = app.palette().color(QPalette.ColorRole.Window).lightness() < 128
        (self.dark if dark else self.light).setChecked(True)

    def _say(self, text: str, level: str) -> None:
        self.message.setStyleSheet(f"QLabel#settings-message {{ {MESSAGE_STYLES[level]} }}")
        self.message.setText(text)
        self.message.show()

    def _clear_errors(self) -> None:
        for field in self.fields.values():
            field.set_error(None)

    def _set_dirty(self, dirty: bool) -> None:
        self.dirty = dirty
        self.state.setText(
            "Unsaved changes." if dirty else f"Settings are kept in {self.ctx.config_path}."
        )

    # -- reacting ----------------------------------------------------------------------------
    def _edited(self, *_: object) -> None:
        if not self._loading:
            self._set_dirty(True)

    def _forever_toggled(self, key: str, forever: bool) -> None:
        edit = self.edits[key]
        edit.setEnabled(not forever)
        if self._loading:
            return
        if forever:
            edit.clear()
        elif not edit.text():
            edit.setText(number_text(FIELDS[key].fallback))
        self._set_dirty(True)

    def _theme_toggled(self) -> None:
        if self._loading:
            return
        name = "dark" if self.dark.isChecked() else "light"
        self.ctx.settings.setValue(THEME_KEY, name)
        self.ctx.settings.sync()
        self.ctx.signals.theme_changed.emit(name)

    def _browse(self) -> None:
        current = self.edits["storage.database"].text().strip()
        start = current or str(self.ctx.db_path)
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Database file",
            start,
            "SQLite databases (*.db);;All files (*)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.edits["storage.database"].setText(path)

    def _config_changed(self, config: object) -> None:
        if isinstance(config, Config) and not self.dirty:
            self.load(config)

    # -- saving ------------------------------------------------------------------------------
    def revert(self) -> None:
        """Drop unsaved changes: show ``ctx.config`` again."""
        self.load(self.ctx.config)
        self.message.hide()

    def save(self) -> bool:
        """Check the form, write the file, put the new configuration in force. True if saved."""
        self._clear_errors()
        texts = {key: edit.text() for key, edit in self.edits.items()}
        forever = {key: box.isChecked() for key, box in self.forever.items()}
        rows, row_problems = self.prices.user_rows()
        config, problems = build_config(texts, forever, rows, self.ctx.config_path)
        for key, (beside, _summary) in problems.items():
            self.fields[key].set_error(beside)
        summaries = [summary for _beside, summary in problems.values()] + row_problems
        if config is None or summaries:
            return self._refuse(summaries)
        old = self.ctx.config  # the tables this form does not show are kept as they are
        config = dataclasses.replace(
            config, backends=old.backends, hosts=old.hosts, advice=old.advice
        )
        try:
            saved = save_config(config, self.ctx.config_path)
        except ConfigError as err:
            key = err.key or ""
            if key in self.fields:
                beside, summary = in_words(err.message, key)
                self.fields[key].set_error(beside)
                return self._refuse([summary])
            return self._refuse([err.message if key.startswith("cost.gpu") else str(err)])
        before = self.ctx.config
        self._set_dirty(False)
        self.ctx.set_config(saved)  # the page shows it again through config_changed
        self._say(f"Saved to {self.ctx.config_path}. {what_applies(before, saved)}", "ok")
        return True

    def _refuse(self, summaries: list[str]) -> bool:
        lines = "\n".join(f"• {s}" for s in summaries)
        self._say(f"Not saved; nothing was written. Please correct:\n{lines}", "error")
        first = next((f for f in self.fields.values() if f.error_text()), self.prices)
        self.scroll_area.ensureWidgetVisible(first)
        return False
