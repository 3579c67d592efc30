"""GPU sampling through NVML (``pynvml``), or through anything with the same API (the simulator).

One ``nvmlInit`` per sampler. Each device gets a prebuilt list of readings; a reading that raises
``NVMLError_NotSupported`` (or ``NoPermission``) is dropped from that list for good and reported
once, a device that raises ``NVMLError_GpuIsLost`` is never asked again, and any other NVML error
costs only that value for that tick.

MIG: a GPU in MIG mode has no utilisation of its own (NVML says NotSupported while the mode is
on, which is not "for good": the mode is checked again every ``MIG_CHECK_S``), and its MIG
devices are listed as devices of their own, as dcgm-exporter's are (``service/remote/dcgm.py``):
index of the parent, the MIG UUID, a name with "MIG <profile>" in it, their memory and their
processes. Power, energy, temperature and clocks belong to the physical GPU, so the energy (and
the hourly price, see ``cost/pricing.py``) is counted once.
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
from costmeter.sampling.nvml_processes import ProcessQuery, merge

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

#: How often (clock seconds) a MIG-capable GPU's mode and MIG devices are read again.
MIG_CHECK_S = 10.0
#: nvmlMemory_v2 (NVML_STRUCT_VERSION(Memory, 2)), for bindings that lack the constant.
_MEMORY_V2 = 0x02000028

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


_UTIL = _Reading(
    ("gpu_util", "mem_util"),
    "nvmlDeviceGetUtilizationRates",
    (),
    _put_util,
    "utilisation",
    "idle time cannot be measured",
)
#: v1 memory info: ``used`` includes the driver's reservation (``DeviceInfo.memory_reserved``).
_MEMORY = _Reading(("mem_used",), "nvmlDeviceGetMemoryInfo", (), _put_mem, "memory use")
_READINGS: tuple[_Reading, ...] = (
    _UTIL,
    _MEMORY,
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
#: What a MIG device is asked each tick besides its processes (the rest is the parent's).
_MIG_READINGS: tuple[_Reading, ...] = (_MEMORY,)
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
    __slots__ = (
        "handle",
        "index",
        "info",
        "instances",
        "last_seen_us",
        "lost",
        "mig_capable",
        "mig_next_check",
        "mig_on",
        "parent",
        "procs",
        "reads",
        "util_fn",
    )

    def __init__(
        self, index: int, handle: Any, info: DeviceInfo, parent: _Device | None = None
    ) -> None:
        self.index = index
        self.handle = handle
        self.info = info
        self.parent = parent
        self.reads: list[ReadCall] = []
        #: Process queries still asked (compute first); empty once the list is unsupported.
        self.procs: list[ProcessQuery] = []
        self.util_fn: Callable[[Any, int], Any] | None = None
        self.last_seen_us = 0
        self.lost = False
        self.mig_capable = False
        self.mig_on = False
        self.mig_next_check = 0.0
        #: MIG devices of this GPU while MIG mode is on.
        self.instances: list[_Device] = []

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
        self._no_permission: _Errors = ()
        self._lost: _Errors = ()
        self._not_found: _Errors = ()
        self._compute: ProcessQuery | None = None
        self._graphics: ProcessQuery | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self) -> list[DeviceInfo]:
        """Start NVML and read each GPU's static facts; SamplerUnavailable if there is no driver."""
        if self._state == "open":
            return self.devices
        nvml: Any = self._nvml
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
        self._no_permission = _errors(nvml, "NVMLError_NoPermission")
        self._lost = _errors(nvml, "NVMLError_GpuIsLost")
        self._not_found = _errors(nvml, "NVMLError_NotFound")
        try:
            nvml.nvmlInit()
        except Exception as err:  # any failure here means "no usable NVML", said in one sentence
            raise SamplerUnavailable(self._init_failure(nvml, err)) from None
        self._state = "open"
        self._devs = []
        self._compute = ProcessQuery(nvml, "Compute")
        self._graphics = ProcessQuery(nvml, "Graphics")
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
        now = self._clock.now()
        for index in range(count):
            dev = self._open_device(nvml, index)
            if dev is not None:
                self._devs.append(dev)
                if dev.mig_capable:
                    self._check_mig(dev, now, quiet=True)
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
        """Each GPU, followed by its MIG devices while it is in MIG mode."""
        out = []
        for d in self._devs:
            out.append(d.info)
            out.extend(m.info for m in d.instances)
        return out

    def driver_version(self) -> str | None:
        return self._driver

    def mig_gpus(self) -> frozenset[str]:
        """UUIDs of the GPUs in MIG mode (their MIG devices are listed after them)."""
        return frozenset(d.info.uuid for d in self._devs if d.mig_on and not d.lost)

    def process_calls(self) -> dict[str, str | None]:
        """The C symbol each process list uses ("Compute", "Graphics"), None before its first
        answer: which version of the call this driver has."""
        return {q.kind: q.symbol for q in (self._compute, self._graphics) if q is not None}

    def drain_messages(self) -> list[str]:
        """Messages for a person (a metric not supported, a GPU lost) since the last call."""
        out, self._messages = self._messages, []
        return out

    # -- sampling -----------------------------------------------------------------------------

    def sample(self) -> tuple[DeviceSample, ...]:
        """One sample per device (MIG devices after their GPU), all stamped with ``clock.now()``."""
        if self._state != "open":
            raise RuntimeError("NvmlSampler.sample() called before open() or after close()")
        ts = self._clock.now()
        out = []
        for d in self._devs:
            if d.mig_capable and not d.lost and ts >= d.mig_next_check:
                self._check_mig(d, ts)
            out.append(self._sample_device(d, ts))
            for m in d.instances:
                if d.lost and not m.lost:
                    self._mark_lost(m, ts, quiet=True)
                out.append(self._sample_device(m, ts))
        return tuple(out)

    def _sample_device(self, d: _Device, ts: float) -> DeviceSample:
        info = d.info
        if d.lost:
            return DeviceSample(info.uuid, d.index, ts, lost=True)
        h = d.handle
        v: list[Any] = [None, None, None, None, None, None, None, None]
        for fn, args, store, reading in d.reads:
            if d.mig_on and reading is _UTIL:
                continue  # the MIG devices carry the work; the GPU has no utilisation
            try:
                raw = fn(h, *args)
            except self._not_supported:
                if reading is _UTIL and d.mig_capable:
                    self._check_mig(d, ts)  # NotSupported while in MIG mode is not for good
                    if d.lost:
                        return DeviceSample(info.uuid, d.index, ts, lost=True)
                    if d.mig_on:
                        continue
                self._mark_unsupported(d, reading)
                continue
            except self._no_permission:
                self._mark_unsupported(d, reading, "not permitted for this user")
                continue
            except self._lost:
                return self._mark_lost(d, ts)
            except self._error:
                continue
            store(raw, v)
        procs: tuple[GpuProcess, ...] = ()
        if d.procs and not d.mig_on:
            try:
                procs = self._processes(d)
            except self._lost:
                return self._mark_lost(d, ts)
        gpu, mem_util, mem, power, energy, temp, sm, mem_clock = v
        return DeviceSample(
            info.uuid, d.index, ts, gpu, mem_util, mem, power, energy, temp, sm, mem_clock, procs
        )

    def _processes(self, d: _Device) -> tuple[GpuProcess, ...]:
        lists = []
        for query in list(d.procs):
            try:
                lists.append(query(d.handle))
            except self._lost:
                raise
            except (*self._not_supported, *self._no_permission) as err:
                if query is not self._compute:
                    d.procs.remove(query)  # graphics lists are a bonus: drop them quietly
                    continue
                why = "not permitted for this user" if isinstance(err, self._no_permission) else ""
                self._mark_unsupported(d, _PROCESSES, why)
                return ()
            except self._error:
                if query is self._compute:
                    return ()
        running = merge(lists)
        if not running:
            return ()
        sm = self._process_util(d) if d.util_fn is not None else {}
        return tuple(GpuProcess(pid, mem, sm.get(pid)) for pid, mem in running)

    def _process_util(self, d: _Device) -> dict[int, float]:
        assert d.util_fn is not None
        try:
            samples = d.util_fn(d.handle, d.last_seen_us)
        except self._not_found:  # no sample newer than last_seen_us yet
            samples = ()
        except self._not_supported:
            self._mark_unsupported(d, _PROCESS_UTIL)
            samples = ()
        except self._no_permission:
            self._mark_unsupported(d, _PROCESS_UTIL, "not permitted for this user")
            samples = ()
        except self._lost:
            raise
        except self._error:
            samples = ()
        newest: dict[int, tuple[int, float]] = {}
        last = d.last_seen_us
        for s in samples:
            stamp = s.timeStamp
            seen = newest.get(s.pid)
            if seen is None or stamp >= seen[0]:
                newest[s.pid] = (stamp, s.smUtil)
            if stamp > last:
                last = stamp
        d.last_seen_us = last
        return {pid: util for pid, (_, util) in newest.items()}

    # -- state changes ------------------------------------------------------------------------

    def _mark_unsupported(self, d: _Device, reading: _Reading, why: str = "") -> None:
        if reading is _PROCESSES:
            d.procs = []
        elif reading is _PROCESS_UTIL:
            d.util_fn = None
        else:
            d.reads = [r for r in d.reads if r[3] is not reading]
        d.info = dataclasses.replace(d.info, unsupported=d.info.unsupported | set(reading.metrics))
        tail = f"; {reading.consequence}" if reading.consequence else ""
        self._messages.append(f"{d.label}: {reading.what} {why or 'not supported'}{tail}.")

    def _mark_lost(self, d: _Device, ts: float, *, quiet: bool = False) -> DeviceSample:
        d.lost = True
        d.reads = []
        d.procs = []
        d.util_fn = None
        if not quiet:
            self._messages.append(
                f"{d.label} was lost (NVML: GPU has fallen off the bus) and is no longer sampled."
            )
        return DeviceSample(d.info.uuid, d.index, ts, lost=True)

    # -- MIG ----------------------------------------------------------------------------------

    def _check_mig(self, d: _Device, ts: float, *, quiet: bool = False) -> bool:
        """Read the GPU's MIG mode (and MIG devices when on); False if it cannot be read."""
        nvml: Any = self._nvml
        d.mig_next_check = ts + MIG_CHECK_S
        try:
            current = nvml.nvmlDeviceGetMigMode(d.handle)[0]
        except self._lost:
            self._mark_lost(d, ts)
            return False
        except (*self._not_supported, *self._no_permission):
            d.mig_capable = False
            return False
        except self._error:
            return False
        on = int(current) == int(getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))
        was = d.mig_on
        d.mig_on = on
        before = [m.info.uuid for m in d.instances]
        if on:
            self._scan_instances(d)
        else:
            d.instances = []
        after = [m.info.uuid for m in d.instances]
        if was != on and not quiet:
            state = "enabled" if on else "disabled"
            self._messages.append(f"{d.label}: MIG mode {state}.")
        if before != after and (not quiet or on):
            names = ", ".join(m.info.name.rsplit(" MIG ", 1)[-1] for m in d.instances) or "none"
            self._messages.append(
                f"{d.label}: MIG mode on; NVML gives no utilisation for the GPU or its MIG "
                f"devices, memory and processes are read per MIG device: {names}."
            )
        return True

    def _scan_instances(self, parent: _Device) -> None:
        """List the MIG devices of ``parent``; keep the ones already known (their state)."""
        nvml: Any = self._nvml
        try:
            count = int(nvml.nvmlDeviceGetMaxMigDeviceCount(parent.handle))
        except self._error:
            return
        known = {m.info.uuid: m for m in parent.instances}
        found: list[_Device] = []
        for slot in range(count):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent.handle, slot)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            except self._error:  # NotFound: an empty slot
                continue
            old = known.get(uuid)
            if old is not None:
                old.handle = handle
                found.append(old)
                continue
            found.append(self._open_instance(nvml, parent, handle, uuid))
        parent.instances = found

    def _open_instance(self, nvml: Any, parent: _Device, handle: Any, uuid: str) -> _Device:
        name = self._static(nvml, "nvmlDeviceGetName", handle)
        gi = self._static(nvml, "nvmlDeviceGetGpuInstanceId", handle)
        text = _text(name) if name is not None else ""
        if " MIG " not in f" {text} ":
            text = f"{parent.info.name} MIG {text or f'instance {gi}'}"
        mem = self._static(nvml, "nvmlDeviceGetMemoryInfo", handle)
        info = dataclasses.replace(
            parent.info,
            uuid=uuid,
            name=text,
            memory_total=int(mem.total) if mem is not None else 0,
            memory_reserved=None,
            power_limit_w=None,
            unsupported=frozenset(
                {"gpu_util", "mem_util", "power_w", "energy_mj", "temp_c", "sm_clock_mhz"}
                | {"mem_clock_mhz", "process_util"}
            ),
        )
        dev = _Device(parent.index, handle, info, parent)
        self._bind(nvml, dev, _MIG_READINGS)
        dev.util_fn = None  # per-process utilisation is not available in MIG mode
        return dev

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

    def _memory_at_open(self, nvml: Any, handle: Any) -> tuple[Any, int | None]:
        """Memory info and the driver's reservation: v2 where the driver has it (R510+)."""
        version = getattr(nvml, "nvmlMemory_v2", _MEMORY_V2)
        mem = self._static(nvml, "nvmlDeviceGetMemoryInfo", handle, version)
        if mem is not None and hasattr(mem, "reserved"):
            return mem, int(mem.reserved)
        return self._static(nvml, "nvmlDeviceGetMemoryInfo", handle), None

    def _open_device(self, nvml: Any, index: int) -> _Device | None:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except self._error as err:
            self._messages.append(f"GPU {index} could not be opened ({err}) and is skipped.")
            return None
        lost = False
        reserved: int | None = None
        try:
            name = self._static(nvml, "nvmlDeviceGetName", handle)
            mem, reserved = self._memory_at_open(nvml, handle)
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
            memory_reserved=reserved,
        )
        dev = _Device(index, handle, info)
        if lost:
            self._mark_lost(dev, 0.0)
            return dev
        self._bind(nvml, dev, _READINGS)
        dev.util_fn = getattr(nvml, _PROCESS_UTIL.function, None)
        dev.mig_capable = getattr(nvml, "nvmlDeviceGetMigMode", None) is not None
        return dev

    def _bind(self, nvml: Any, dev: _Device, readings: tuple[_Reading, ...]) -> None:
        for reading in readings:
            fn = getattr(nvml, reading.function, None)
            if fn is None:
                self._mark_unsupported(dev, reading)
                continue
            args = tuple(getattr(nvml, name, value) for name, value in reading.consts)
            dev.reads.append((fn, args, reading.store, reading))
        dev.procs = [q for q in (self._compute, self._graphics) if q is not None]
