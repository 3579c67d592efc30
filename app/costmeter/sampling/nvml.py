"""GPU sampling through NVML (``pynvml``), or through anything with the same API (the simulator).

One ``nvmlInit`` per sampler. Each device gets a prebuilt list of readings; a reading that raises
``NVMLError_NotSupported`` is dropped from that list for good and reported once, a device that
raises ``NVMLError_GpuIsLost`` is never asked again, and any other NVML error costs only that
value for that tick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from costmeter.core.clock import Clock, SystemClock
from costmeter.core.errors import SamplerUnavailable
from costmeter.core.model import DeviceInfo, DeviceSample, GpuProcess

#: nvmlDeviceGetArchitecture values (NVML_DEVICE_ARCH_*) and the names people know them by.
ARCHITECTURES: dict[int, str] = {
    2: "Kepler",
    3: "Maxwell",
    4: "Pascal",
    5: "Volta",
    6: "Turing",
    7: "Ampere",
    8: "Ada",
    9: "Hopper",
    10: "Blackwell",
    13: "Rubin",
}

#: NVML_VALUE_NOT_AVAILABLE for an unsigned long long (older pynvml passes it through).
_NOT_AVAILABLE_ULL = (1 << 64) - 1

_SIMULATE_HINT = "running in CPU-only mode. Use --simulate N to try Costmeter with simulated GPUs."

Store = Callable[[Any, list[Any]], None]


def _put_nothing(raw: Any, v: list[Any]) -> None:
    pass


def _put_util(raw: Any, v: list[Any]) -> None:
    v[0] = raw.gpu
    v[1] = raw.memory


def _put_mem(raw: Any, v: list[Any]) -> None:
    v[2] = raw.used


def _put_power(raw: Any, v: list[Any]) -> None:
    v[3] = raw / 1000.0


def _put_energy(raw: Any, v: list[Any]) -> None:
    v[4] = int(raw)


def _put_at(slot: int) -> Store:
    def put(raw: Any, v: list[Any]) -> None:
        v[slot] = raw

    return put


@dataclass(frozen=True, slots=True)
class _Reading:
    """One NVML call per tick. ``store`` writes into a list in ``DEVICE_METRICS`` order."""

    metrics: tuple[str, ...]
    function: str
    #: Extra arguments after the handle: (pynvml constant name, its NVML ABI value).
    consts: tuple[tuple[str, int], ...]
    store: Store
    what: str
    consequence: str = ""


_READINGS: tuple[_Reading, ...] = (
    _Reading(
        ("gpu_util", "mem_util"),
        "nvmlDeviceGetUtilizationRates",
        (),
        _put_util,
        "utilisation",
        "idle time cannot be measured",
    ),
    _Reading(("mem_used",), "nvmlDeviceGetMemoryInfo", (), _put_mem, "memory use"),
    _Reading(("power_w",), "nvmlDeviceGetPowerUsage", (), _put_power, "power draw"),
    _Reading(
        ("energy_mj",),
        "nvmlDeviceGetTotalEnergyConsumption",
        (),
        _put_energy,
        "total energy counter",
        "energy will be estimated from power",
    ),
    _Reading(
        ("temp_c",),
        "nvmlDeviceGetTemperature",
        (("NVML_TEMPERATURE_GPU", 0),),
        _put_at(5),
        "temperature",
    ),
    _Reading(
        ("sm_clock_mhz",), "nvmlDeviceGetClockInfo", (("NVML_CLOCK_SM", 1),), _put_at(6), "SM clock"
    ),
    _Reading(
        ("mem_clock_mhz",),
        "nvmlDeviceGetClockInfo",
        (("NVML_CLOCK_MEM", 2),),
        _put_at(7),
        "memory clock",
    ),
)
_PROCESSES = _Reading(
    ("processes",),
    "nvmlDeviceGetComputeRunningProcesses",
    (),
    _put_nothing,
    "process list",
    "GPU memory cannot be attributed to processes",
)
_PROCESS_UTIL = _Reading(
    ("process_util",),
    "nvmlDeviceGetProcessUtilization",
    (),
    _put_nothing,
    "per-process utilisation",
)

ReadCall = tuple[Callable[..., Any], tuple[Any, ...], Store, _Reading]


class _Device:
    __slots__ = ("handle", "index", "info", "last_seen_us", "lost", "proc_fn", "reads", "util_fn")

    def __init__(self, index: int, handle: Any, info: DeviceInfo) -> None:
        self.index = index
        self.handle = handle
        self.info = info
        self.reads: list[ReadCall] = []
        self.proc_fn: Callable[[Any], Any] | None = None
        self.util_fn: Callable[[Any, int], Any] | None = None
        self.last_seen_us = 0
        self.lost = False

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.info.name})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_Errors = tuple[type[BaseException], ...]


def _errors(nvml: Any, name: str) -> _Errors:
    """pynvml's exception class ``name`` in a tuple; empty (catches nothing) if it is missing."""
    cls = getattr(nvml, name, None)
    return (cls,) if isinstance(cls, type) and issubclass(cls, BaseException) else ()


class NvmlSampler:
    """Reads every NVIDIA GPU on this host; ``nvml`` may be pynvml or a fake with its API."""

    def __init__(
        self, nvml: Any | None = None, *, host: str | None = None, clock: Clock | None = None
    ) -> None:
        self._nvml = nvml
        self._host = host if host is not None else socket.gethostname()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._devs: list[_Device] = []
        self._messages: list[str] = []
        self._driver: str | None = None
        self._state = "new"  # new -> open -> closed
        # pynvml's exception classes, bound at open() (an empty tuple catches nothing).
        self._error: _Errors = ()
        self._not_supported: _Errors = ()
        self._lost: _Errors = ()
        self._not_found: _Errors = ()

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self) -> list[DeviceInfo]:
        """Start NVML and read each GPU's static facts; SamplerUnavailable if there is no driver."""
        if self._state == "open":
            return self.devices
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml
            except ImportError:
                raise SamplerUnavailable(
                    f"The pynvml package (nvidia-ml-py) is not installed: {_SIMULATE_HINT}"
                ) from None
            nvml = self._nvml = pynvml
        self._error = _errors(nvml, "NVMLError")
        # An older driver lacking a function counts as "not supported" too.
        self._not_supported = (
            _errors(nvml, "NVMLError_NotSupported")
            + _errors(nvml, "NVMLError_FunctionNotFound")
            + _errors(nvml, "NVMLLibraryMismatchError")
        )
        self._lost = _errors(nvml, "NVMLError_GpuIsLost")
        self._not_found = _errors(nvml, "NVMLError_NotFound")
        try:
            nvml.nvmlInit()
        except Exception as err:  # any failure here means "no usable NVML", said in one sentence
            raise SamplerUnavailable(self._init_failure(nvml, err)) from None
        self._state = "open"
        self._devs = []
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except self._error as err:
            self.close()
            raise SamplerUnavailable(
                f"The NVIDIA driver answered but could not list GPUs ({err}): {_SIMULATE_HINT}"
            ) from None
        self._driver = self._static(nvml, "nvmlSystemGetDriverVersion")
        if self._driver is not None:
            self._driver = _text(self._driver)
        for index in range(count):
            dev = self._open_device(nvml, index)
            if dev is not None:
                self._devs.append(dev)
        return self.devices

    def close(self) -> None:
        """Shut NVML down (once); later calls do nothing."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        if self._nvml is not None:
            with contextlib.suppress(*self._error):
                self._nvml.nvmlShutdown()

    def __enter__(self) -> NvmlSampler:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def devices(self) -> list[DeviceInfo]:
        return [d.info for d in self._devs]

    def driver_version(self) -> str | None:
        return self._driver

    def drain_messages(self) -> list[str]:
        """Messages for a person (a metric not supported, a GPU lost) since the last call."""
        out, self._messages = self._messages, []
        return out

    # -- sampling -----------------------------------------------------------------------------

    def sample(self) -> tuple[DeviceSample, ...]:
        """One sample per GPU, all stamped with the same ``clock.now()``."""
        if self._state != "open":
            raise RuntimeError("NvmlSampler.sample() called before open() or after close()")
        ts = self._clock.now()
        return tuple([self._sample_device(d, ts) for d in self._devs])

    def _sample_device(self, d: _Device, ts: float) -> DeviceSample:
        info = d.info
        if d.lost:
            return DeviceSample(info.uuid, d.index, ts, lost=True)
        h = d.handle
        v: list[Any] = [None, None, None, None, None, None, None, None]
        for fn, args, store, reading in d.reads:
            try:
                raw = fn(h, *args)
            except self._not_supported:
                self._mark_unsupported(d, reading)
                continue
            except self._lost:
                return self._mark_lost(d, ts)
            except self._error:
                continue
            store(raw, v)
        procs: tuple[GpuProcess, ...] = ()
        if d.proc_fn is not None:
            try:
                procs = self._processes(d, d.proc_fn)
            except self._lost:
                return self._mark_lost(d, ts)
        gpu, mem_util, mem, power, energy, temp, sm, mem_clock = v
        return DeviceSample(
            info.uuid, d.index, ts, gpu, mem_util, mem, power, energy, temp, sm, mem_clock, procs
        )

    def _processes(self, d: _Device, proc_fn: Callable[[Any], Any]) -> tuple[GpuProcess, ...]:
        try:
            running = proc_fn(d.handle)
        except self._not_supported:
            self._mark_unsupported(d, _PROCESSES)
            return ()
        except self._lost:
            raise
        except self._error:
            return ()
        if not running:
            return ()
        sm: dict[int, tuple[int, float]] = {}
        if d.util_fn is not None:
            try:
                samples = d.util_fn(d.handle, d.last_seen_us)
            except self._not_found:  # no sample newer than last_seen_us yet
                samples = ()
            except self._not_supported:
                self._mark_unsupported(d, _PROCESS_UTIL)
                samples = ()
            except self._lost:
                raise
            except self._error:
                samples = ()
            last = d.last_seen_us
            for s in samples:
                stamp = s.timeStamp
                seen = sm.get(s.pid)
                if seen is None or stamp >= seen[0]:
                    sm[s.pid] = (stamp, s.smUtil)
                if stamp > last:
                    last = stamp
            d.last_seen_us = last
        out = []
        for p in running:
            mem = p.usedGpuMemory
            if mem is not None and mem >= _NOT_AVAILABLE_ULL:
                mem = None
            seen = sm.get(p.pid)
            out.append(GpuProcess(p.pid, mem, None if seen is None else seen[1]))
        return tuple(out)

    # -- state changes ------------------------------------------------------------------------

    def _mark_unsupported(self, d: _Device, reading: _Reading) -> None:
        if reading is _PROCESSES:
            d.proc_fn = None
        elif reading is _PROCESS_UTIL:
            d.util_fn = None
        else:
            d.reads = [r for r in d.reads if r[3] is not reading]
        d.info = dataclasses.replace(d.info, unsupported=d.info.unsupported | set(reading.metrics))
        tail = f"; {reading.consequence}" if reading.consequence else ""
        self._messages.append(f"{d.label}: {reading.what} not supported{tail}.")

    def _mark_lost(self, d: _Device, ts: float) -> DeviceSample:
        d.lost = True
        d.reads = []
        d.proc_fn = d.util_fn = None
        self._messages.append(
            f"{d.label} was lost (NVML: GPU has fallen off the bus) and is no longer sampled."
        )
        return DeviceSample(d.info.uuid, d.index, ts, lost=True)

    # -- opening ------------------------------------------------------------------------------

    def _init_failure(self, nvml: Any, err: BaseException) -> str:
        if isinstance(err, _errors(nvml, "NVMLError_LibraryNotFound")):
            return f"No NVIDIA driver found (libnvidia-ml.so could not be loaded): {_SIMULATE_HINT}"
        if isinstance(err, _errors(nvml, "NVMLError_DriverNotLoaded")):
            return f"The NVIDIA driver is installed but not loaded: {_SIMULATE_HINT}"
        if isinstance(err, _errors(nvml, "NVMLError_NoPermission")):
            return f"No permission to talk to the NVIDIA driver: {_SIMULATE_HINT}"
        return f"NVML could not start ({err or type(err).__name__}): {_SIMULATE_HINT}"

    def _static(self, nvml: Any, function: str, *args: Any) -> Any:
        """A value read once at open; None if missing, unsupported or failing."""
        fn = getattr(nvml, function, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except self._lost:
            raise
        except self._error:
            return None

    def _open_device(self, nvml: Any, index: int) -> _Device | None:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except self._error as err:
            self._messages.append(f"GPU {index} could not be opened ({err}) and is skipped.")
            return None
        lost = False
        try:
            name = self._static(nvml, "nvmlDeviceGetName", handle)
            mem = self._static(nvml, "nvmlDeviceGetMemoryInfo", handle)
            limit = self._static(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
            if limit is None:
                limit = self._static(nvml, "nvmlDeviceGetPowerManagementLimit", handle)
            arch = self._static(nvml, "nvmlDeviceGetArchitecture", handle)
            cc = self._static(nvml, "nvmlDeviceGetCudaComputeCapability", handle)
        except self._lost:
            lost = True
            name = mem = limit = arch = cc = None
        info = DeviceInfo(
            host=self._host,
            index=index,
            uuid=uuid,
            name=_text(name) if name is not None else f"GPU {index}",
            memory_total=int(mem.total) if mem is not None else 0,
            power_limit_w=limit / 1000.0 if limit is not None else None,
            architecture=ARCHITECTURES.get(arch) if arch is not None else None,
            compute_capability=(int(cc[0]), int(cc[1])) if cc is not None else None,
        )
        dev = _Device(index, handle, info)
        if lost:
            self._mark_lost(dev, 0.0)
            return dev
        for reading in _READINGS:
            fn = getattr(nvml, reading.function, None)
            if fn is None:
                self._mark_unsupported(dev, reading)
                continue
            args = tuple(getattr(nvml, name, value) for name, value in reading.consts)
            dev.reads.append((fn, args, reading.store, reading))
        dev.proc_fn = getattr(nvml, _PROCESSES.function, None)
        dev.util_fn = getattr(nvml, _PROCESS_UTIL.function, None)
        return dev
