"""The oldest and the newest nvidia-ml-py that pyproject allows, each in a fresh interpreter.

The oldest, 12.535.77, is kept in tests/data/nvml/bindings (BSD licence, notice in the file; see
tests/data/nvml/PROVENANCE.md): it lacks ``c_nvmlProcessInfo_v2_t``, ``NVMLLibraryMismatchError``
and any ``_v2`` process wrapper, which crashed ``record`` and ``doctor`` at import before. The
newest is the one installed in the virtualenv. Under each, the script below imports the real-path
modules (the simulator must not be loaded by them), reads GPUs through the NVML stub (a normal
one, an older driver, the MIG H100 capture), runs ``doctor``'s NVML check, records one tick into
a real SQLite file, and runs the simulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
OLDEST = TESTS / "data" / "nvml" / "bindings" / "nvidia-ml-py-12.535.77"

SCRIPT = r"""
import argparse, sys, tempfile
from pathlib import Path
import pynvml
expected = sys.argv[1]
assert (expected == "installed") == ("site-packages" in pynvml.__file__), pynvml.__file__
import costmeter.cli.main, costmeter.cli.record_cmd, costmeter.cli.doctor_cmd
import costmeter.service.monitor, costmeter.service.agent.agent
assert "costmeter.sampling.simulated.fake_nvml" not in sys.modules, "simulator on the real path"
import nvml_stub as ns
from costmeter.config import load_config
from costmeter.core import SimulatedClock
from costmeter.sampling.nvml import NvmlSampler
from costmeter.service.monitor import Monitor, MonitorOptions

MIB = ns.MIB
plain = ns.StubGpu(processes=[(11, 300 * MIB)], memory_used=300 * MIB, gpu_util=70)
for missing in (frozenset(), ns.PRE_R510, ns.PRE_R450):  # R510+, R470, R440 (no MIG yet)
    gpus = [plain] if missing is ns.PRE_R450 else [plain, ns.h100_mig_capture()]
    stub = ns.NvmlStub(gpus, missing=missing)
    with stub.installed(pynvml):
        sampler = NvmlSampler(clock=SimulatedClock(1.7e9))
        sampler.open()
        samples = sampler.sample()
        sampler.close()
    assert len(samples) == 1 + 5 * (len(gpus) - 1), samples
    assert samples[0].gpu_util == 70 and [p.pid for p in samples[0].processes] == [11]
    assert samples[0].processes[0].used_memory == 300 * MIB
    if len(gpus) > 1:
        assert samples[1].power_w == 432.0 and samples[1].gpu_util is None
        assert [len(s.processes) for s in samples[2:]] == [3, 0, 0, 0]

stub = ns.NvmlStub([plain, ns.h100_mig_capture()])
with tempfile.TemporaryDirectory() as tmp, stub.installed(pynvml):
    args = argparse.Namespace(config=None, simulate=None, seed=0, db=str(Path(tmp) / "d.db"))
    costmeter.cli.doctor_cmd._check_nvml(costmeter.cli.doctor_cmd.Checklist(), args, None)
    said = []
    monitor = Monitor(
        MonitorOptions(db_path=Path(tmp) / "r.db", config=load_config(Path(tmp) / "no.toml")),
        on_message=said.append,
    )
    monitor.open()
    assert monitor.gpu_mode == "nvml" and len(monitor.devices) == 6
    tick = monitor.tick()
    monitor.close()
    assert tick is not None and len(tick.devices) == 6
    import sqlite3
    conn = sqlite3.connect(Path(tmp) / "r.db")
    names = {r[0] for r in conn.execute("SELECT name FROM devices")}
    conn.close()
    assert "NVIDIA H100 80GB HBM3 MIG 3g.40gb" in names, names
assert "costmeter.sampling.simulated.fake_nvml" not in sys.modules

from costmeter.sampling.simulated import make_fake_nvml
clock = SimulatedClock(1.7e9)
sim = NvmlSampler(make_fake_nvml("h100:train:mig=3g.40gb+1g.10gb*2,p4", clock=clock), clock=clock)
sim.open()
out = sim.sample()
assert len(out) == 5 and len(out[1].processes) == 1, out
print("OK", pynvml.__file__)
"""


def _run(pythonpath: list[Path], which: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env.pop("COSTMETER_SIMULATE", None)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, which],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=TESTS,
    )


@pytest.mark.parametrize("which", ["oldest", "installed"])
def test_record_doctor_and_simulate_under_allowed_bindings(which: str) -> None:
    path = [OLDEST, TESTS] if which == "oldest" else [TESTS]
    done = _run(path, which)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\nOK " in done.stdout
    if which == "oldest":
        assert f"path: real NVML through pynvml from {OLDEST / 'pynvml.py'}" in done.stdout
    else:
        assert "path: real NVML through nvidia-ml-py 1" in done.stdout


def test_the_kept_oldest_bindings_are_the_floor_pyproject_names() -> None:
    text = (TESTS.parent / "pyproject.toml").read_text()
    assert '"nvidia-ml-py>=12.535,<14"' in text
    header = (OLDEST / "pynvml.py").read_text()[:2000]
    assert "Copyright (c) 2011-2022, NVIDIA Corporation" in header  # BSD notice kept
    # It is the old one: no v2 process struct, no mismatch error class.
    source = (OLDEST / "pynvml.py").read_text()
    assert "class c_nvmlProcessInfo_v2_t" not in source
    assert "NVMLLibraryMismatchError" not in source
