"""Standard-library-only foundation: value types, clocks and errors shared by every layer."""

from costmeter.core.clock import Clock, SimulatedClock, SystemClock
from costmeter.core.errors import (
    ConfigError,
    CostmeterError,
    SamplerUnavailable,
    StoreError,
    StoreLockedError,
)
from costmeter.core.model import (
    DEVICE_METRICS,
    IDLE_UTIL_PERCENT,
    DeviceInfo,
    DeviceSample,
    DeviceUsage,
    GpuProcess,
    HostInfo,
    HostSample,
    HostUsage,
    Interval,
    ProcessSample,
    Tick,
)

__all__ = [
    "DEVICE_METRICS",
    "IDLE_UTIL_PERCENT",
    "Clock",
    "ConfigError",
    "CostmeterError",
    "DeviceInfo",
    "DeviceSample",
    "DeviceUsage",
    "GpuProcess",
    "HostInfo",
    "HostSample",
    "HostUsage",
    "Interval",
    "ProcessSample",
    "SamplerUnavailable",
    "SimulatedClock",
    "StoreError",
    "StoreLockedError",
    "SystemClock",
    "Tick",
]
