from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from costmeter.core import ProcessSample
from costmeter.sampling import host as host_module
from costmeter.sampling.host import HostSampler
from costmeter.sampling.rapl import RaplReader

BUSY = "import os, time\nwhile True:\n    pass\n"


@pytest.fixture
def no_rapl(tmp_path: Path) -> RaplReader:
    return RaplReader(tmp_path / "no-powercap")


@pytest.fixture
def busy_child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def never_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any call of the blocking form cpu_percent(interval > 0)."""
    real = psutil.cpu_percent

    def guarded(interval: float | None = None, percpu: bool = False) -> object:
        assert interval is None, "blocking cpu_percent(interval=...) called"
        return real(interval=None, percpu=percpu)

    monkeypatch.setattr(host_module.psutil, "cpu_percent", guarded)


def test_host_sample_values_are_sane(no_rapl: RaplReader, never_blocking: None) -> None:
    sampler = HostSampler(rapl=no_rapl)
    info = sampler.info()
    assert info.cpu_count == psutil.cpu_count()
    assert info.memory_total > 0 and info.cpu_model
    time.sleep(0.2)
    s = sampler.sample()
    assert 0.0 <= s.cpu_percent <= 100.0
    assert len(s.per_core) == info.cpu_count
    assert 0 < s.mem_used <= s.mem_total
    assert s.disk_read_bps >= 0 and s.net_rx_bps >= 0
    assert s.cpu_energy_uj is None  # no RAPL here
    assert s.processes == ()


def test_tracked_process_cpu_and_rss(
    no_rapl: RaplReader, busy_child: subprocess.Popen[bytes]
) -> None:
    sampler = HostSampler(rapl=no_rapl)
    sampler.sample({busy_child.pid})
    time.sleep(0.5)
    (proc,) = sampler.sample({busy_child.pid}).processes
    assert proc.pid == busy_child.pid
    assert proc.cpu_percent > 40  # a busy loop uses most of a core
    assert proc.rss > 1_000_000
    assert "python" in proc.name.lower() and "while True" in proc.cmdline
    assert proc.cpu_time_s > 0


def test_children_of_a_run_are_found(no_rapl: RaplReader) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
            "print(c.pid, flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        pids = {p.pid for p in HostSampler(rapl=no_rapl).sample({parent.pid}).processes}
        assert pids == {parent.pid, child_pid}
    finally:
        for p in psutil.Process(parent.pid).children(recursive=True):
            p.kill()
        parent.kill()
        parent.wait()


def test_a_process_that_dies_is_dropped_without_error(no_rapl: RaplReader) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    sampler = HostSampler(rapl=no_rapl)
    assert [p.pid for p in sampler.sample({proc.pid}).processes] == [proc.pid]
    proc.kill()
    proc.wait()
    assert sampler.sample({proc.pid}).processes == ()


def test_unknown_pids_use_the_fallback(no_rapl: RaplReader) -> None:
    fake = ProcessSample(5_000_001, 0.0, "python", "python train.py", "sim", 97.0, 10**9, 12.0)
    sampler = HostSampler(
        rapl=no_rapl, process_fallback=lambda pid: fake if pid == fake.pid else None
    )
    assert sampler.sample({5_000_001, 5_000_002}).processes == (fake,)


def test_rapl_counters_are_passed_through(tmp_path: Path) -> None:
    pkg = tmp_path / "intel-rapl:0"
    pkg.mkdir()
    (pkg / "name").write_text("package-0\n")
    (pkg / "energy_uj").write_text("123456\n")
    (pkg / "max_energy_range_uj").write_text("262143328850\n")
    s = HostSampler(rapl=RaplReader(tmp_path)).sample()
    assert s.cpu_energy_uj == (123456,)
    assert s.cpu_energy_range_uj == (262143328850,)
