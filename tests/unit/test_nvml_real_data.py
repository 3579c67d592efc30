"""The simulator and the NVML stub against real ``nvidia-smi`` output (tests/data/nvml).

The captures are nvidia_gpu_exporter's, from a real H100 80GB HBM3 on driver 590.48.01, once
whole and once in MIG mode (3g.40gb, 2g.20gb, 1g.10gb x2), idle and under load (see
tests/data/nvml/PROVENANCE.md). Where the simulator or the stub and the capture disagree, the
capture wins.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pynvml
import pytest

from costmeter.core import SimulatedClock
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.nvml_processes import ProcessQuery
from costmeter.sampling.simulated import MODELS, make_fake_nvml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nvml_stub as ns

DATA = Path(__file__).resolve().parents[1] / "data" / "nvml" / "nvidia_gpu_exporter"
BAR = "#" * 80
MIB = 1024 * 1024
T0 = 1_700_000_000.0


def _sections(name: str) -> dict[str, str]:
    """Capture sections by title ("idle :: query (-q)") -> their raw text."""
    parts = (DATA / name).read_text().split(BAR + "\n")
    out = {}
    for title_block, body in zip(parts[3::2], parts[4::2], strict=False):
        if title_block.startswith("# "):
            out[title_block.splitlines()[0][2:].strip()] = body
    return out


def _query(text: str) -> dict[tuple[str, ...], str]:
    """``nvidia-smi -q`` text -> {(section, ..., key): value}; a repeated section such as
    "MIG Device" is numbered ("MIG Device#1")."""
    out: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    seen: dict[tuple[str, ...], int] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("=", "Timestamp")):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key, colon, value = line.strip().partition(" : ")
        parents = tuple(k for _, k in stack)
        if colon:
            out[(*parents, key.strip())] = value.strip()
        elif not line.strip().endswith(":"):
            name = line.strip()
            n = seen.get((*parents, name), 0)
            seen[(*parents, name)] = n + 1
            stack.append((indent, f"{name}#{n}" if name == "MIG Device" else name))
    return out


def _mib(value: str) -> int:
    return int(value.split()[0])


def _gpu_key(q: dict[tuple[str, ...], str]) -> str:
    return next(k[0] for k in q if k[0].startswith("GPU 0000"))


@pytest.fixture(scope="module")
def whole() -> dict[tuple[str, ...], str]:
    return _query(_sections("h100-80gb-hbm3__590.48.01.txt")["idle :: query (-q)"])


@pytest.fixture(scope="module")
def mig_idle() -> dict[tuple[str, ...], str]:
    return _query(_sections("h100-mig__590.48.01.txt")["idle :: query (-q)"])


@pytest.fixture(scope="module")
def mig_load() -> dict[tuple[str, ...], str]:
    return _query(_sections("h100-mig__590.48.01.txt")["load :: query (-q)"])


def test_simulated_h100_has_the_captured_board_figures(whole: dict[tuple[str, ...], str]) -> None:
    gpu = _gpu_key(whole)
    h100 = MODELS["h100"]
    assert whole[(gpu, "Product Name")] == h100.name
    assert _mib(whole[(gpu, "FB Memory Usage", "Total")]) == h100.memory_mib
    assert _mib(whole[(gpu, "FB Memory Usage", "Reserved")]) == h100.reserved_mib
    assert float(whole[(gpu, "GPU Power Readings", "Current Power Limit")].split()[0]) == (
        h100.power_limit_w
    )
    idle_w = float(whole[(gpu, "GPU Power Readings", "Instantaneous Power Draw")].split()[0])
    assert abs(h100.idle_w - idle_w) / idle_w < 0.05
    assert _mib(whole[(gpu, "Max Clocks", "SM")]) == h100.max_sm_mhz
    assert _mib(whole[(gpu, "Clocks", "SM")]) == h100.idle_sm_mhz
    assert _mib(whole[(gpu, "Max Clocks", "Memory")]) == h100.max_mem_mhz


def test_simulated_idle_h100_memory_is_the_captured_one(whole: dict[tuple[str, ...], str]) -> None:
    gpu = _gpu_key(whole)
    clock = SimulatedClock(T0)
    fake = make_fake_nvml("h100:free", clock=clock)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    v1 = fake.nvmlDeviceGetMemoryInfo(h)
    v2 = fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    used = _mib(whole[(gpu, "FB Memory Usage", "Used")])
    reserved = _mib(whole[(gpu, "FB Memory Usage", "Reserved")])
    # nvidia-smi shows v2; v1 "used" is that plus the reservation, as NVML documents.
    assert (v2.used // MIB, v2.reserved // MIB) == (used, reserved)
    assert v1.used // MIB == used + reserved and v1.total == v2.total
    assert v1.free == v2.free == v1.total - v1.used


def test_mig_profiles_are_the_captured_ones(mig_idle: dict[tuple[str, ...], str]) -> None:
    gpu = _gpu_key(mig_idle)
    assert mig_idle[(gpu, "MIG Mode", "Current")] == "Enabled"
    listing = _sections("h100-mig__590.48.01.txt")["capabilities :: list (-L)"]
    names = re.findall(r"MIG (\S+)\s+Device\s+\d+:", listing)
    assert names == ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]
    h100 = MODELS["h100"]
    for i, name in enumerate(names):
        dev = (gpu, f"MIG Device#{i}")
        profile = h100.mig_profile(name)
        assert profile is not None
        assert _mib(mig_idle[(*dev, "Shared FB Memory Usage", "Total")]) == profile.memory_mib
        assert _mib(mig_idle[(*dev, "Shared FB Memory Usage", "Used")]) == profile.idle_used_mib
        assert _mib(mig_idle[(*dev, "Shared FB Memory Usage", "Reserved")]) == 0
        sms = mig_idle[(*dev, "Device Attributes", "Shared", "Multiprocessor count")]
        assert int(sms) == profile.sm_count


def test_simulated_mig_h100_matches_the_idle_capture(mig_idle: dict[tuple[str, ...], str]) -> None:
    gpu = _gpu_key(mig_idle)
    clock = SimulatedClock(T0)
    fake = make_fake_nvml("h100:free:mig=3g.40gb+2g.20gb+1g.10gb*2", clock=clock)
    sampler = NvmlSampler(fake, clock=clock)
    parent, *migs = sampler.open()
    samples = sampler.sample()
    assert [m.memory_total // MIB for m in migs] == [
        _mib(mig_idle[(gpu, f"MIG Device#{i}", "Shared FB Memory Usage", "Total")])
        for i in range(4)
    ]
    assert [s.mem_used // MIB for s in samples[1:]] == [  # type: ignore[operator]
        _mib(mig_idle[(gpu, f"MIG Device#{i}", "Shared FB Memory Usage", "Used")]) for i in range(4)
    ]
    # The GPU: utilisation N/A, as nvidia-smi shows; used (v2) within a few MiB of the capture
    # (the driver's figure for the GPU and the sum over MIG devices differ by 2 MiB there).
    assert mig_idle[(gpu, "Utilization", "GPU")] == "N/A" and samples[0].gpu_util is None
    fake.nvmlInit()
    v2 = fake.nvmlDeviceGetMemoryInfo(fake.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlMemory_v2)
    assert abs(v2.used // MIB - _mib(mig_idle[(gpu, "FB Memory Usage", "Used")])) <= 4
    assert v2.reserved // MIB == _mib(mig_idle[(gpu, "FB Memory Usage", "Reserved")])
    assert parent.memory_reserved == v2.reserved


def test_stub_mig_gpu_is_the_loaded_capture(mig_load: dict[tuple[str, ...], str]) -> None:
    """The MIG fixture the NVML tests use holds what the capture under load shows."""
    gpu = _gpu_key(mig_load)
    stub_gpu = ns.h100_mig_capture()
    assert stub_gpu.name == mig_load[(gpu, "Product Name")]
    assert stub_gpu.uuid == mig_load[(gpu, "GPU UUID")]
    assert stub_gpu.memory_reserved // MIB == _mib(mig_load[(gpu, "FB Memory Usage", "Reserved")])
    for i, mig in enumerate(stub_gpu.mig):
        assert mig is not None
        dev = (gpu, f"MIG Device#{i}")
        assert int(mig_load[(*dev, "GPU Instance ID")]) == mig.gpu_instance
        assert int(mig_load[(*dev, "Compute Instance ID")]) == mig.compute_instance
        assert mig.memory_total // MIB == _mib(mig_load[(*dev, "Shared FB Memory Usage", "Total")])
        assert mig.memory_used // MIB == _mib(mig_load[(*dev, "Shared FB Memory Usage", "Used")])
    apps = _sections("h100-mig__590.48.01.txt")["load :: query-compute-apps (per-process)"]
    rows = [line.split(", ") for line in apps.strip().splitlines()[1:]]
    assert stub_gpu.mig[0] is not None
    assert sorted((int(r[5]), _mib(r[7])) for r in rows) == sorted(
        (pid, mem // MIB) for pid, mem in stub_gpu.mig[0].processes
    )
    listing = _sections("h100-mig__590.48.01.txt")["capabilities :: list (-L)"]
    assert re.findall(r"UUID: (MIG-[0-9a-f-]+)", listing) == [
        m.uuid for m in stub_gpu.mig if m is not None
    ]


def _driver_symbols(name: str) -> set[str]:
    body = _sections(name)["capabilities :: nvml-symbols"]
    return {line.strip() for line in body.splitlines() if line.startswith("nvml")}


def test_every_c_symbol_the_stub_exports_is_in_a_real_driver() -> None:
    symbols = _driver_symbols("h100-mig__590.48.01.txt")
    assert len(symbols) > 300
    assert set(ns.SIGNATURES) <= symbols, set(ns.SIGNATURES) - symbols
    # ...and the process calls the sampler falls back through are all there too.
    query = ProcessQuery(pynvml, "Compute")
    assert {name for name, _ in query._candidates} <= symbols
