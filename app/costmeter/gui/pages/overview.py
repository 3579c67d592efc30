"""The Overview: money now and today, energy and carbon, GPU states, the month end, live plots."""

from __future__ import annotations

from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from costmeter.core.units import format_energy_kwh
from costmeter.cost.ledger import format_money
from costmeter.cost.rates import RateNow, gpu_states, rate_now
from costmeter.gui.context import AppContext
from costmeter.gui.pages.base import Page
from costmeter.gui.theme import colour_for
from costmeter.gui.widgets.card import Card
from costmeter.gui.widgets.live_plot import LivePlot
from costmeter.gui.widgets.savings_card import SavingsCard
from costmeter.service.budgets import BudgetStatus, describe_over
from costmeter.service.summary import CostSummary


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class OverviewPage(Page):
    title = "Overview"
    key = "overview"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.summary: CostSummary | None = None
        self.rate: RateNow | None = None
        self._many_hosts = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(12)
        cards = QHBoxLayout()
        cards.setSpacing(10)
        self.card_rate = Card("Cost per hour now")
        self.card_today = Card("Cost today")
        self.card_energy = Card("Energy today")
        self.card_gpus = Card("GPUs")
        self.card_month = Card("Projected month end")
        self.card_savings = SavingsCard(ctx)
        for card in (
            self.card_rate,
            self.card_today,
            self.card_energy,
            self.card_gpus,
            self.card_month,
            self.card_savings,
        ):
            cards.addWidget(card, 1)
        layout.addLayout(cards)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(placeholder-text);")
        layout.addWidget(self.note)
        #: ``[[budgets]]`` owners past their daily or monthly budget (hidden when none).
        self.budgets_over = QLabel("")
        self.budgets_over.setWordWrap(True)
        self.budgets_over.hide()
        layout.addWidget(self.budgets_over)
        grid = QGridLayout()
        grid.setSpacing(10)
        self.plot_util = LivePlot("GPU utilisation", "%", y_range=(0, 100))
        self.plot_mem = LivePlot("GPU memory used", "%", y_range=(0, 100))
        self.plot_power = LivePlot("GPU power", "W")
        self.plot_host = LivePlot("Host CPU and memory", "%", y_range=(0, 100))
        grid.addWidget(self.plot_util, 0, 0)
        grid.addWidget(self.plot_mem, 0, 1)
        grid.addWidget(self.plot_power, 1, 0)
        grid.addWidget(self.plot_host, 1, 1)
        plots = QWidget()
        plots.setLayout(grid)
        layout.addWidget(plots, 1)
        ctx.signals.summary_ready.connect(self._show_cost)
        ctx.signals.summary_failed.connect(self._cost_failed)
        ctx.signals.budgets_ready.connect(self._show_budgets)
        if ctx.summary is not None:
            self._show_cost(ctx.summary)

    # -- cost from the store (worker thread) -------------------------------------------------
    def refresh_cost(self) -> None:
        self.ctx.signals.cost_refresh_requested.emit()

    def _show_cost(self, summary: CostSummary) -> None:
        self.summary = summary
        cur = summary.today.currency
        today = summary.today.total
        self.card_today.set(
            format_money(today.cost, cur),
            f"of which idle {format_money(today.idle_cost, cur)} (paid for, not used)",
        )
        self.card_energy.set(
            format_energy_kwh(today.energy_kwh),
            f"{today.carbon_kg:.2f} kg CO2e at {self.ctx.pricing().carbon_g_per_kwh:g} g/kWh",
        )
        p = summary.projection
        basis = (
            f"{format_money(p.per_day, cur)}/day over the last {p.days_observed:.1f} days"
            if p.days_observed >= 1
            else f"from {p.days_observed * 24:.1f} h of history: a rough guess"
        )
        self.card_month.set(
            format_money(p.month_end, cur), f"{format_money(p.month_to_date, cur)} so far; {basis}"
        )
        self.ctx.signals.cost_today.emit(today.cost)

    def _show_budgets(self, statuses: tuple[BudgetStatus, ...]) -> None:
        over = [line for s in statuses for line in describe_over(s, format_money)]
        self.budgets_over.setText("Over budget: " + "; ".join(over) if over else "")
        self.budgets_over.setVisible(bool(over))

    def _cost_failed(self, message: str) -> None:
        self.note.setText(f"Cost figures could not be read: {message}")

    # -- live ---------------------------------------------------------------------------------
    def on_shown(self) -> None:
        self.refresh_cost()

    def has_data(self) -> bool:
        return self.ctx.live.latest is not None and self.summary is not None

    def on_live(self) -> None:
        live, host = self.ctx.live, self.ctx.host_filter
        tick = live.tick_for(host)  # host None: every host's GPUs, this machine's CPU
        self._label_scope()
        if tick is None:
            if host is not None:  # a host with no sample yet: show nothing rather than another's
                for card in (self.card_rate, self.card_gpus):
                    card.set("—", f"no sample of {host} yet")
                for plot in (self.plot_util, self.plot_mem, self.plot_power, self.plot_host):
                    plot.retain(set())
            return
        pricing = self.ctx.pricing()
        self.rate = rate_now(
            live.devices_for(host),
            tick.devices,
            live.host_info_for(host),
            tick.host_sample,
            pricing,
        )
        cur = pricing.currency
        self.card_rate.set(
            format_money(self.rate.per_hour, cur) + "/h",
            f"idle {format_money(self.rate.idle_per_hour, cur)}/h · "
            f"{self.rate.power_w:,.0f} W drawn",
        )
        states = gpu_states(tick.devices)
        if tick.devices:
            parts = [f"{states['busy']} busy", f"{states['idle']} idle"]
            if states["idle-allocated"]:
                parts.append(f"{states['idle-allocated']} idle but allocated")
            if states["lost"]:
                parts.append(f"{states['lost']} lost")
            self.card_gpus.set(f"{states['busy']} / {len(tick.devices)} busy", " · ".join(parts))
        else:
            self.card_gpus.set("none", "no GPU is being sampled")
        alloc = states["idle-allocated"]
        self.note.setText(
            f"{_plural(alloc, 'GPU')} {'is' if alloc == 1 else 'are'} held by a process that "
            "does no work: still paid for. See Devices for the processes."
            if alloc
            else ""
        )
        self._plot(tick.ts)

    def _label_scope(self) -> None:
        """Say which hosts the figures cover once there is more than this machine."""
        host, remote = (
            self.ctx.host_filter,
            bool(self.ctx.config.hosts or self.ctx.live.remote_latest),
        )
        live_scope = f" ({host})" if host else " (all hosts)" if remote else ""
        store_scope = " (all hosts)" if remote or host else ""
        for card, caption, scope in (
            (self.card_rate, "Cost per hour now", live_scope),
            (self.card_gpus, "GPUs", live_scope),
            (self.card_today, "Cost today", store_scope),
            (self.card_energy, "Energy today", store_scope),
            (self.card_month, "Projected month end", store_scope),
        ):
            card.caption.setText(caption + scope)

    def _plot(self, now: float) -> None:
        live, host = self.ctx.live, self.ctx.host_filter
        devices = live.devices_for(host)
        hosts = sorted({d.host for d in devices.values()})
        many = len(hosts) > 1  # then one colour and one legend entry per host
        for plot in (self.plot_util, self.plot_mem, self.plot_power):
            plot.retain(set(devices) if many == self._many_hosts else set())  # relabel all
        self._many_hosts = many
        for uuid, info in devices.items():
            colour = colour_for(hosts.index(info.host) if many else info.index)
            label = info.host if many else f"GPU {info.index}"
            ts, util = live.device_series(uuid, "gpu_util")
            self.plot_util.set_series(uuid, label, colour, ts, util, now)
            ts, mem = live.device_series(uuid, "mem_used")
            pct = mem * 100.0 / info.memory_total if info.memory_total else mem * 0
            self.plot_mem.set_series(uuid, label, colour, ts, pct, now)
            ts, power = live.device_series(uuid, "power_w")
            self.plot_power.set_series(uuid, label, colour, ts, power, now)
        local = live.local_host
        shown = host or (local if live.remote_latest and local else None)  # name it when several
        self.plot_host.set_title(f"{shown} CPU and memory" if shown else "Host CPU and memory")
        ts, cpu = live.host_series("cpu_percent", host)
        self.plot_host.set_series("cpu", "CPU", "#3b82f6", ts, cpu, now)
        host_info = live.host_info_for(host)
        if host_info is not None and host_info.memory_total:
            ts, mem = live.host_series("mem_used", host)
            self.plot_host.set_series(
                "mem", "memory", "#10b981", ts, mem * 100.0 / host_info.memory_total, now
            )
