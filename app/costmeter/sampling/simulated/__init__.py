"""A fake of the pynvml API with real device specs and workload profiles, for tests and demos."""

from costmeter.sampling.simulated.fake_nvml import PID_BASE, FakeHandle, FakeNvml, make_fake_nvml
from costmeter.sampling.simulated.host import SimulatedHostSampler
from costmeter.sampling.simulated.models import MODELS, GpuModel
from costmeter.sampling.simulated.profiles import PROFILES, Profile
from costmeter.sampling.simulated.spec import SimDeviceSpec, parse_spec

__all__ = [
    "MODELS",
    "PID_BASE",
    "PROFILES",
    "FakeHandle",
    "FakeNvml",
    "GpuModel",
    "Profile",
    "SimDeviceSpec",
    "SimulatedHostSampler",
    "make_fake_nvml",
    "parse_spec",
]
