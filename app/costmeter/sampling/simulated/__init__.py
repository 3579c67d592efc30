"""A fake of the pynvml API with real device specs and workload profiles, for tests and demos.

The fake NVML (and the simulated host, built on it) import ``pynvml``; they are loaded on first
use of their names, so code that only needs ``PID_BASE``, the models or the spec parser never
loads them, and neither does the real NVML path.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from costmeter.sampling.simulated.models import MODELS, GpuModel, MigProfile
from costmeter.sampling.simulated.pids import PID_BASE
from costmeter.sampling.simulated.profiles import PROFILES, Profile
from costmeter.sampling.simulated.spec import SimDeviceSpec, parse_spec

if TYPE_CHECKING:
    from costmeter.sampling.simulated.fake_nvml import FakeHandle, FakeNvml, make_fake_nvml
    from costmeter.sampling.simulated.host import SimulatedHostSampler

_LAZY = {
    "FakeHandle": "fake_nvml",
    "FakeNvml": "fake_nvml",
    "make_fake_nvml": "fake_nvml",
    "SimulatedHostSampler": "host",
}

__all__ = [
    "MODELS",
    "PID_BASE",
    "PROFILES",
    "FakeHandle",
    "FakeNvml",
    "GpuModel",
    "MigProfile",
    "Profile",
    "SimDeviceSpec",
    "SimulatedHostSampler",
    "make_fake_nvml",
    "parse_spec",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
