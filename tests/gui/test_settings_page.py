"""The Settings page: it shows the configuration, refuses bad values in words without writing, saves
good ones atomically and puts them in force, edits the price table, and switches the theme."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from costmeter.config import Config, load_config
from costmeter.gui.context import AppContext
from costmeter.gui.pages.settings import SettingsPage
from costmeter.gui.widgets.price_table import DATE, HOURLY, MATCH, MODEL, ORIGIN, SOURCE

pytestmark = pytest.mark.gui

ORIGINAL = """\
# my own notes
[sampling]
interval_s = 2.5

[retention]
raw_days = 3
minute_days = 30
hour_days = "forever"

[cost]
currency = "EUR"
tariff_per_kwh = 0.31

[[cost.gpu]]
name = "A100 80GB"
hourly = 1.5
source = "our reserved instances"
date = "2025-03-01"

[alerts]
daily_budget = 12
"""

MakeCtx = Callable[..., AppContext]


@pytest.fixture
def ctx(make_ctx: MakeCtx, tmp_path: Path) -> AppContext:
    """A context whose configuration file exists (so "not changed" can be checked)."""
    path = tmp_path / "config.toml"
    path.write_text(ORIGINAL, encoding="utf-8")
    return make_ctx(config=load_config(path))


@pytest.fixture
def page(ctx: AppContext, qtbot: QtBot) -> SettingsPage:
    page = SettingsPage(ctx)
    qtbot.addWidget(page)
    return page


def test_the_form_shows_the_configuration_in_force(page: SettingsPage, ctx: AppContext) -> None:
    text = {key: edit.text() for key, edit in page.edits.items()}
    assert text["sampling.interval_s"] == "2.5"
    assert (text["retention.raw_days"], text["retention.minute_days"]) == ("3", "30")
    assert page.forever["retention.hour_days"].isChecked()
    assert not page.edits["retention.hour_days"].isEnabled()
    assert (text["cost.currency"], text["cost.tariff_per_kwh"]) == ("EUR", "0.31")
    assert text["alerts.daily_budget"] == "12" and text["alerts.idle_allocated_minutes"] == "30"
    assert text["cost.carbon_g_per_kwh"] == ""  # empty: the default, which the placeholder names
    defaults = ctx.pricing()
    placeholder = page.edits["cost.carbon_g_per_kwh"].placeholderText()
    assert placeholder.startswith(f"{defaults.carbon_g_per_kwh:g} (default: ")
    assert defaults.carbon_source[:20] in placeholder
    assert page.fields["cost.tariff_per_kwh"].unit.text() == "EUR per kWh"
    assert page.light.isChecked() and not page.dirty
    # Every row in force, with its source and date, and whose it is.
    table = page.prices
    assert table.row_count() == len(ctx.pricing().gpu_rows)
    for index, row in enumerate(ctx.pricing().gpu_rows):
        assert table.text(index, MODEL) == row.model
        assert (table.text(index, SOURCE), table.text(index, DATE)) == (row.source, row.date)
    a100 = table.row_of("A100 80GB")
    assert table.text(a100, HOURLY) == "1.5"
    assert table.text(a100, ORIGIN) == "you (replaces default)"
    assert table.text(a100, MATCH) == "A100.*80GB"  # the default's patterns, kept
    assert table.text(table.row_of("T4 16GB"), ORIGIN) == "default table"


@pytest.mark.parametrize(
    ("key", "text", "beside", "summary"),
    [
        (
            "sampling.interval_s",
            "0",
            "Must be greater than 0",
            "Sampling interval: must be greater",
        ),
        (
            "sampling.interval_s",
            "fast",
            "Enter a number such as 1, not “fast”",
            "Sampling interval",
        ),
        ("cost.tariff_per_kwh", "-0.1", "Cannot be negative, got -0.1", "Electricity tariff:"),
        ("cost.currency", "US", "Must be a three-letter currency code", "Currency: must be"),
        (
            "retention.minute_days",
            "2",
            "1-minute data must be kept at least as long as raw samples (3 days).",
            "Retention: 1-minute data must be kept at least as long as raw samples",
        ),
        ("alerts.daily_budget", "0", "Must be greater than 0", "Daily budget: must be greater"),
        (
            "sampling.interval_s",
            "1e-300",
            "Is too small, got 1e-300; give a value from 0.05 to 3600.",
            "Sampling interval: is too small, got 1e-300",
        ),
        (
            "cost.tariff_per_kwh",
            "1e308",
            "Is too large, got 1e+308; give a value from 0 to 10000.",
            "Electricity tariff: is too large",
        ),
    ],
)
def test_a_bad_value_is_refused_in_words_and_nothing_is_written(
    page: SettingsPage, ctx: AppContext, key: str, text: str, beside: str, summary: str
) -> None:
    emitted: list[object] = []
    ctx.signals.config_changed.connect(emitted.append)
    before = ctx.config
    page.edits[key].setText(text)
    assert page.dirty
    assert page.save() is False
    assert beside in page.fields[key].error_text()
    assert not page.message.isHidden()
    assert "Not saved" in page.message.text() and summary in page.message.text()
    assert ctx.config_path.read_text(encoding="utf-8") == ORIGINAL
    assert not ctx.config_path.with_name("config.toml.bak").exists()
    assert ctx.config is before and emitted == []


def test_an_hour_retention_shorter_than_minute_retention_is_refused(page: SettingsPage) -> None:
    page.forever["retention.hour_days"].setChecked(False)
    assert page.edits["retention.hour_days"].isEnabled()
    page.edits["retention.hour_days"].setText("10")
    assert page.save() is False
    assert (
        "Retention: 1-hour data must be kept at least as long as 1-minute data (30 days)."
        in page.message.text()
    )
    assert page.fields["retention.hour_days"].error_text()


def test_a_valid_change_is_saved_and_put_in_force(
    page: SettingsPage, ctx: AppContext, qtbot: QtBot
) -> None:
    page.edits["sampling.interval_s"].setText("5")
    page.edits["cost.tariff_per_kwh"].setText("0.25")
    page.edits["cost.carbon_g_per_kwh"].setText("300")
    page.edits["alerts.daily_budget"].setText("")
    with qtbot.waitSignal(ctx.signals.config_changed, timeout=1000) as blocker:
        qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    saved = load_config(ctx.config_path)
    assert saved.interval_s == 5.0 and saved.alerts.daily_budget is None
    assert saved.cost.tariff_per_kwh == 0.25 and saved.cost.carbon_g_per_kwh == 300.0
    assert saved.cost.currency == "EUR" and saved.retention.raw_days == 3.0  # untouched, kept
    assert saved.cost.gpu[0].source == "our reserved instances"
    assert ctx.config == saved and blocker.args == [ctx.config]
    assert ctx.pricing().tariff_per_kwh == 0.25
    assert ctx.config_path.with_name("config.toml.bak").read_text(encoding="utf-8") == ORIGINAL
    message = page.message.text()
    assert f"Saved to {ctx.config_path}." in message and "apply now" in message
    assert "Changes to the sampling intervals apply the next time Costmeter starts" in message
    assert not page.dirty and page.edits["cost.tariff_per_kwh"].text() == "0.25"


def test_a_new_database_location_is_saved_for_the_next_start(
    page: SettingsPage, ctx: AppContext, tmp_path: Path
) -> None:
    page.edits["storage.database"].setText(str(tmp_path / "elsewhere" / "costs.db"))
    assert page.save() is True
    assert load_config(ctx.config_path).storage.database == tmp_path / "elsewhere" / "costs.db"
    assert "database location apply the next time" in page.message.text()


def test_editing_a_default_price_makes_a_row_of_the_users_with_its_source(
    page: SettingsPage, ctx: AppContext
) -> None:
    table = page.prices
    t4 = table.row_of("T4 16GB")
    table.table.item(t4, HOURLY).setText("0.35")
    # The default's source does not vouch for the new price.
    assert table.text(t4, SOURCE) == "entered in Settings"
    assert table.text(t4, DATE) == datetime.date.today().isoformat()
    assert table.text(t4, ORIGIN) == "you (replaces default)"
    table.table.item(t4, SOURCE).setText("our T4 lease, invoice 42")
    assert page.save() is True
    rows = {row.model: row for row in load_config(ctx.config_path).cost.gpu}
    assert set(rows) == {"A100 80GB", "T4 16GB"}
    t4_row = rows["T4 16GB"]
    assert (t4_row.hourly, t4_row.source, t4_row.match) == (0.35, "our T4 lease, invoice 42", ())
    price = ctx.pricing().gpu_price("Tesla T4")
    assert price.hourly == 0.35 and price.source == "our T4 lease, invoice 42"
    assert page.prices.text(page.prices.row_of("T4 16GB"), ORIGIN) == "you (replaces default)"


def test_a_restored_default_row_leaves_the_file(page: SettingsPage, ctx: AppContext) -> None:
    table = page.prices
    a100 = table.row_of("A100 80GB")
    table.table.setCurrentCell(a100, MODEL)
    assert table.restore_button.isEnabled() and not table.remove_button.isEnabled()
    table.restore_button.click()
    assert table.text(a100, ORIGIN) == "default table" and table.text(a100, HOURLY) == "2.79"
    assert page.save() is True
    assert load_config(ctx.config_path).cost.gpu == ()


def test_an_added_model_needs_device_names_and_can_be_removed(
    page: SettingsPage, ctx: AppContext
) -> None:
    table = page.prices
    table.add_row()
    new = table.row_count() - 1
    assert table.text(new, ORIGIN) == "you" and table.remove_button.isEnabled()
    table.table.item(new, MODEL).setText("RTX 3090")
    table.table.item(new, HOURLY).setText("0.22")
    assert page.save() is False
    assert "row 14 (RTX 3090): say which device names it is for" in page.message.text()
    assert ctx.config_path.read_text(encoding="utf-8") == ORIGINAL
    table.table.item(new, MATCH).setText(r"RTX 3090, 3090\s*Ti")
    assert page.save() is True
    row = next(r for r in load_config(ctx.config_path).cost.gpu if r.model == "RTX 3090")
    assert row.match == ("RTX 3090", r"3090\s*Ti") and row.hourly == 0.22
    assert ctx.pricing().gpu_price("NVIDIA GeForce RTX 3090").hourly == 0.22
    new = table.row_of("RTX 3090")
    table.table.setCurrentCell(new, MODEL)
    table.remove_button.click()
    assert table.row_of("RTX 3090") == -1
    assert page.save() is True
    assert [r.model for r in load_config(ctx.config_path).cost.gpu] == ["A100 80GB"]


def test_a_bad_price_is_refused(page: SettingsPage, ctx: AppContext) -> None:
    table = page.prices
    table.table.item(table.row_of("V100"), HOURLY).setText("cheap")
    assert page.save() is False
    assert "(V100): the price per hour: enter a number such as 1.29" in page.message.text()
    assert ctx.config_path.read_text(encoding="utf-8") == ORIGINAL


def test_revert_drops_unsaved_changes(page: SettingsPage, ctx: AppContext) -> None:
    page.edits["sampling.interval_s"].setText("9")
    page.prices.table.item(0, HOURLY).setText("9.99")
    assert page.dirty
    page.revert_button.click()
    assert page.edits["sampling.interval_s"].text() == "2.5" and not page.dirty
    assert page.prices.text(0, HOURLY) == f"{ctx.pricing().gpu_rows[0].hourly:g}"
    assert page.prices.text(0, ORIGIN) == "default table"


def test_a_file_that_cannot_be_written_is_said_in_words(
    make_ctx: MakeCtx, tmp_path: Path, qtbot: QtBot
) -> None:
    ctx = make_ctx(config=Config())
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    ctx.config_path = blocker / "config.toml"
    page = SettingsPage(ctx)
    qtbot.addWidget(page)
    page.edits["sampling.interval_s"].setText("3")
    assert page.save() is False
    assert "could not be written" in page.message.text() and ctx.config == Config()


def test_the_theme_switches_at_once_and_is_remembered(
    page: SettingsPage, ctx: AppContext, qtbot: QtBot
) -> None:
    with qtbot.waitSignal(ctx.signals.theme_changed, timeout=1000) as blocker:
        page.dark.click()
    assert blocker.args == ["dark"]
    assert ctx.settings.value("appearance/theme") == "dark"
    assert not page.dirty  # a preference of this computer, not part of the file
    with qtbot.waitSignal(ctx.signals.theme_changed, timeout=1000) as blocker:
        page.light.click()
    assert blocker.args == ["light"] and ctx.settings.value("appearance/theme") == "light"
    assert ctx.config_path.read_text(encoding="utf-8") == ORIGINAL


def test_a_narrow_window_puts_the_sections_in_one_column(page: SettingsPage, qtbot: QtBot) -> None:
    page.resize(1100, 900)
    page.show()
    qtbot.waitExposed(page)
    sampling, cost = page._boxes["sampling"], page._boxes["cost"]
    assert cost.x() > sampling.x() + sampling.width()  # side by side
    page.resize(620, 900)
    qtbot.waitUntil(lambda: cost.x() == sampling.x(), timeout=1000)
    assert cost.y() > sampling.y() and cost.width() == sampling.width()
