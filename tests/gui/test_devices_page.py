"""The Devices page shows every sampled value, N/A for unsupported metrics, lost GPUs, no GPU."""

from __future__ import annotations

import dataclasses
import time

import pytest

from costmeter.core import DeviceInfo, DeviceSample, SimulatedClock, Tick
from costmeter.gui.pages.devices import DevicesPage
from costmeter.gui.widgets.device_panel import NOT_SUPPORTED, UNKNOWN, DevicePanel
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.simulated import SimulatedHostSampler, make_fake_nvml
from costmeter.store.testing import GIB, device_infos, host_info, make_tick

pytestmark = pytest.mark.gui

T0 = 1_700_000_000.0


def _page(ctx, qtbot, width: int = 1200) -> DevicesPage:
    page = DevicesPage(ctx)
    qtbot.addWidget(page)
    page.resize(width, 800)
    page.show()
    return page


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def test_every_metric_is_shown_with_its_unit(make_ctx, qtbot):
    ctx = make_ctx()
    ctx.live.set_devices(host_info(), device_infos(n=2))
    tick = make_tick(T0, with_processes=True)
    sample = dataclasses.replace(tick.devices[0], energy_mj=int(7.2e9))  # 2 kWh
    ctx.live.push(dataclasses.replace(tick, devices=(sample, tick.devices[1])))
    page = _page(ctx, qtbot)
    page.on_live()
    assert not page.showing_empty_state()
    panel = page.panels["GPU-host-a-0"]
    assert panel.header.text() == "GPU 0 · NVIDIA A100-SXM4-80GB · host"
    assert {k: panel.value_text(k) for k in panel.values} == {
        "util": "50 %",
        "mem": "10.0 GiB / 80.0 GiB (12%)",
        "mem_util": "20 %",
        "power": "200 W / 400 W limit",
        "energy": "2.00 kWh since the driver loaded",
        "temp": "55 °C",
        "sm_clock": "1410 MHz",
        "mem_clock": "1215 MHz",
        "arch": "Ampere · compute capability 8.0",
    }
    assert panel.mem_bar.value() == 125  # 10 of 80 GiB, in tenths of a percent
    assert page.panels["GPU-host-a-1"].value_text("energy") == UNKNOWN  # no counter this tick
    # The process, named from the host sample.
    assert panel.process_rows() == [["1000", "python", "1.0 GiB", "50"]]
    assert panel.proc_caption.text() == "Processes (1)"
    assert not panel.lost and panel.lost_label.isHidden()


def test_unsupported_metrics_read_not_applicable_in_grey(make_ctx, qtbot):
    ctx = make_ctx()
    info = dataclasses.replace(
        device_infos(n=1)[0], unsupported=frozenset({"energy_mj", "temp_c", "processes"})
    )
    ctx.live.set_devices(host_info(), [info])
    ctx.live.push(make_tick(T0, devices=1))
    page = _page(ctx, qtbot)
    page.on_live()
    panel = page.panels[info.uuid]
    for key in ("energy", "temp"):
        assert panel.value_text(key) == NOT_SUPPORTED == "N/A (not supported by this GPU)"
        assert panel.is_greyed(key)
    assert panel.value_text("util") == "50 %" and not panel.is_greyed("util")
    assert panel.proc_note.text() == NOT_SUPPORTED and panel.procs.isHidden()


def test_a_lost_gpu_is_marked_red_with_the_time_it_was_lost(make_ctx, qtbot):
    ctx = make_ctx()
    ctx.live.set_devices(host_info(), device_infos(n=2))
    ctx.live.push(make_tick(T0, with_processes=True))
    page = _page(ctx, qtbot)
    page.on_live()
    assert not page.panels["GPU-host-a-1"].lost
    for k in range(1, 4):  # lost at T0 + 1, still lost later
        ctx.live.push(make_tick(T0 + k, lost=frozenset({1}), with_processes=True))
    page.on_live()
    panel = page.panels["GPU-host-a-1"]
    assert panel.lost and not panel.lost_label.isHidden()
    assert panel.lost_label.text().startswith(f"Lost — fell off the bus at {_clock(T0 + 1)}")
    assert all(panel.value_text(k) == UNKNOWN for k in panel.values if k != "arch")
    assert panel.value_text("arch") == "Ampere · compute capability 8.0"  # still known
    assert panel.process_rows() == [] and panel.mem_bar.isHidden()
    assert not page.panels["GPU-host-a-0"].lost  # the other GPU goes on
    assert page.panels["GPU-host-a-0"].value_text("util") == "50 %"


def test_no_gpu_shows_a_friendly_empty_state(make_ctx, qtbot):
    ctx = make_ctx()
    page = _page(ctx, qtbot)
    page.on_live()
    assert page.showing_empty_state() and "Waiting" in page.empty.text()
    ctx.live.set_devices(host_info(), [])
    ctx.live.push(make_tick(T0, devices=0))
    page.on_live()
    assert page.showing_empty_state()
    assert page.empty.text().startswith("No GPU is being sampled")
    assert not page.panels


def test_one_or_two_columns_depending_on_width(make_ctx, qtbot):
    ctx = make_ctx()
    ctx.live.set_devices(host_info(), device_infos(n=3))
    ctx.live.push(make_tick(T0, devices=3))
    page = _page(ctx, qtbot, width=1200)
    page.on_live()

    def positions() -> list[tuple[int, int]]:
        out = []
        for uuid in page._order:
            r, c, _, _ = page.grid.getItemPosition(page.grid.indexOf(page.panels[uuid]))
            out.append((r, c))
        return out

    assert positions() == [(0, 0), (0, 1), (1, 0)]
    page.resize(700, 800)
    qtbot.waitUntil(lambda: positions() == [(0, 0), (1, 0), (2, 0)], timeout=2000)
    page.resize(1300, 800)
    qtbot.waitUntil(lambda: positions() == [(0, 0), (0, 1), (1, 0)], timeout=2000)


def test_sparklines_follow_the_ring_buffers(make_ctx, qtbot):
    ctx = make_ctx()
    ctx.live.set_devices(host_info(), device_infos(n=1))
    for k in range(30):
        ctx.live.push(make_tick(T0 + k, devices=1, util=float(k), power_w=100.0 + k))
    page = _page(ctx, qtbot)
    page.on_live()
    panel = page.panels["GPU-host-a-0"]
    x, y = panel.util_spark.curve.getData()
    assert len(x) == 30 and x[-1] == 0.0 and x[0] == -29.0
    assert list(y) == [float(k) for k in range(30)]
    _, p = panel.power_spark.curve.getData()
    assert p[-1] == 129.0
    # 29 s of history: the shortest window, said in the caption; it grows up to 5 minutes.
    assert (
        panel.util_spark.window_s == 30.0 and panel.util_caption.text() == "Utilisation, last 30 s"
    )
    for k in range(30, 400):
        ctx.live.push(make_tick(T0 + k, devices=1, util=50.0))
    page.on_live()
    assert panel.util_spark.window_s == 300.0 and panel.power_caption.text() == "Power, last 5 min"


def test_panel_without_device_record_still_shows_the_sample(qtbot):
    panel = DevicePanel("GPU-abcdef12-0000", 3)
    qtbot.addWidget(panel)
    panel.update_from(None, DeviceSample("GPU-abcdef12-0000", 3, T0, gpu_util=7.0, mem_used=GIB))
    assert panel.header.text() == "GPU 3 · unknown GPU · abcdef12"
    assert panel.value_text("util") == "7 %" and panel.value_text("mem") == "1.0 GiB"


def test_driven_by_the_simulated_driver(make_ctx, qtbot):
    """The real sampler on a fake NVML: a Pascal board without an energy counter, per-process
    utilisation switched off on another, and a GPU that falls off the bus."""
    clock = SimulatedClock(T0)
    fake = make_fake_nvml("a100:train,h100:train,p4:bursty", clock=clock)
    gpu = NvmlSampler(fake, host="sim-host", clock=clock)
    gpu.open()
    host = SimulatedHostSampler(fake, clock=clock)
    fake.lose_gpu(1, at=T0 + 5)
    fake.inject_not_supported(0, "nvmlDeviceGetProcessUtilization")
    ctx = make_ctx()
    ctx.live.set_devices(host.info(), gpu.devices)
    page = _page(ctx, qtbot)
    tick: Tick | None = None
    for _ in range(10):
        devices = gpu.sample()
        tick = Tick(ts=clock.now(), host="sim-host", host_sample=host.sample(), devices=devices)
        ctx.live.set_devices(ctx.live.host_info, gpu.devices)
        ctx.live.push(tick)
        page.on_live()
        clock.advance(1.0)
    gpu.close()
    assert tick is not None
    infos: dict[str, DeviceInfo] = {d.uuid: d for d in gpu.devices}
    a100, h100, p4 = (page.panels[d.uuid] for d in tick.devices)
    s = tick.devices[0]
    assert a100.value_text("util") == f"{s.gpu_util:.0f} %"
    assert a100.value_text("power") == f"{s.power_w:.0f} W / 400 W limit"
    assert a100.value_text("temp") == f"{s.temp_c:.0f} °C"
    assert a100.value_text("sm_clock") == f"{s.sm_clock_mhz:.0f} MHz"
    assert a100.value_text("energy").endswith("since the driver loaded")
    assert a100.process_rows()[0][0] == str(s.processes[0].pid)
    assert a100.process_rows()[0][1] == "python" and a100.process_rows()[0][3] == "N/A"
    assert "energy_mj" in infos[tick.devices[2].uuid].unsupported
    assert p4.value_text("energy") == NOT_SUPPORTED and p4.is_greyed("energy")
    assert p4.value_text("util") == f"{tick.devices[2].gpu_util:.0f} %"
    assert h100.lost and _clock(T0 + 5) in h100.lost_label.text()
    assert h100.value_text("power") == UNKNOWN
