"""A stub of the NVML C library under the real ``pynvml`` module, for tests without a GPU.

pynvml loads ``libnvidia-ml.so.1`` into ``pynvml.nvmlLib`` and finds each C function with
``getattr(nvmlLib, name)`` (``_nvmlGetFunctionPointer``, cached). ``NvmlStub.install(pynvml)``
puts an object there whose attributes are ctypes ``CFUNCTYPE`` function pointers, so every call
goes through pynvml's real code: its ctypes structs and ``byref`` arguments are marshalled to C
and back, the stub writes through the pointers it receives as the C library would (its own
structs, with the C layouts of ``nvml.h``), and returns real ``nvmlReturn_t`` codes. A symbol the
stub lacks is missing the way it is from an older driver: pynvml raises
``NVMLError_FunctionNotFound``.

    stub = NvmlStub([StubGpu(name="NVIDIA H100 80GB HBM3", ...)])
    with stub.installed(pynvml):
        sampler = NvmlSampler(pynvml)   # or NvmlSampler() for the default real path
        ...

Faults: ``gpu.errors[symbol] = code`` makes that C function return ``code`` on that GPU
(``NOT_SUPPORTED``, ``NO_PERMISSION``, ``GPU_IS_LOST``...); ``missing`` leaves symbols out of the
library. ``calls`` counts C calls by symbol.

Importing: ``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))``, then
``import nvml_stub``. Standard library only, so a test can load it under another pynvml.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# nvmlReturn_t values (nvml.h).
SUCCESS = 0
UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
INSUFFICIENT_SIZE = 7
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
ARGUMENT_VERSION_MISMATCH = 25
UNKNOWN = 999

#: Unset MIG ids in nvmlProcessInfo_t when MIG is off (0xFFFFFFFF).
NO_ID = 0xFFFFFFFF
MIB = 1024 * 1024


class Memory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class MemoryV2(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("total", ctypes.c_ulonglong),
        ("reserved", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


#: nvmlMemory_v2: NVML_STRUCT_VERSION(Memory, 2) = sizeof | 2 << 24.
MEMORY_V2 = ctypes.sizeof(MemoryV2) | 2 << 24


class Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class ProcessInfoV1(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


class ProcessInfoV2(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_uint),
        ("usedGpuMemory", ctypes.c_ulonglong),
        ("gpuInstanceId", ctypes.c_uint),
        ("computeInstanceId", ctypes.c_uint),
    ]


class ProcessUtilSample(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_uint),
        ("timeStamp", ctypes.c_ulonglong),
        ("smUtil", ctypes.c_uint),
        ("memUtil", ctypes.c_uint),
        ("encUtil", ctypes.c_uint),
        ("decUtil", ctypes.c_uint),
    ]


@dataclass
class StubMig:
    """One MIG device (a GPU instance with its compute instance)."""

    uuid: str
    profile: str
    gpu_instance: int
    memory_total: int
    memory_used: int
    compute_instance: int = 0
    #: (pid, bytes used)
    processes: list[tuple[int, int]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class StubGpu:
    """One physical GPU as the driver reports it (units as NVML gives them)."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000001"
    memory_total: int = 81559 * MIB
    #: The driver's reservation: part of v1 ``used``, separate in v2.
    memory_reserved: int = 479 * MIB
    #: What processes hold (v2 ``used``).
    memory_used: int = 0
    gpu_util: int = 0
    mem_util: int = 0
    power_mw: int = 69_620
    energy_mj: int = 1_000_000
    temp_c: int = 41
    sm_mhz: int = 345
    mem_mhz: int = 2619
    power_limit_mw: int = 700_000
    architecture: int = 9
    compute_capability: tuple[int, int] = (9, 0)
    processes: list[tuple[int, int]] = field(default_factory=list)
    graphics_processes: list[tuple[int, int]] = field(default_factory=list)
    #: (pid, timestamp in µs, SM %) samples for nvmlDeviceGetProcessUtilization
    process_util: list[tuple[int, int, int]] = field(default_factory=list)
    #: None: not MIG capable (NOT_SUPPORTED); otherwise the current mode.
    mig_mode: bool | None = None
    max_mig: int = 7
    #: MIG devices by slot (None: an empty slot, NOT_FOUND).
    mig: list[StubMig | None] = field(default_factory=list)
    #: C symbol -> nvmlReturn_t it returns on this GPU (always).
    errors: dict[str, int] = field(default_factory=dict)


# C signatures: (symbol, argument types). Every function returns nvmlReturn_t (int).
_VP = ctypes.c_void_p
_U = ctypes.c_uint
SIGNATURES: dict[str, tuple[Any, ...]] = {
    "nvmlInitWithFlags": (_U,),
    "nvmlInit_v2": (),
    "nvmlShutdown": (),
    "nvmlSystemGetDriverVersion": (_VP, _U),
    "nvmlSystemGetNVMLVersion": (_VP, _U),
    "nvmlSystemGetCudaDriverVersion": (_VP,),
    "nvmlSystemGetCudaDriverVersion_v2": (_VP,),
    "nvmlDeviceGetCount_v2": (_VP,),
    "nvmlDeviceGetHandleByIndex_v2": (_U, _VP),
    "nvmlDeviceGetName": (_VP, _VP, _U),
    "nvmlDeviceGetUUID": (_VP, _VP, _U),
    "nvmlDeviceGetMemoryInfo": (_VP, _VP),
    "nvmlDeviceGetMemoryInfo_v2": (_VP, _VP),
    "nvmlDeviceGetEnforcedPowerLimit": (_VP, _VP),
    "nvmlDeviceGetPowerManagementLimit": (_VP, _VP),
    "nvmlDeviceGetArchitecture": (_VP, _VP),
    "nvmlDeviceGetCudaComputeCapability": (_VP, _VP, _VP),
    "nvmlDeviceGetUtilizationRates": (_VP, _VP),
    "nvmlDeviceGetPowerUsage": (_VP, _VP),
    "nvmlDeviceGetTotalEnergyConsumption": (_VP, _VP),
    "nvmlDeviceGetTemperature": (_VP, _U, _VP),
    "nvmlDeviceGetClockInfo": (_VP, _U, _VP),
    "nvmlDeviceGetProcessUtilization": (_VP, _VP, _VP, ctypes.c_ulonglong),
    "nvmlDeviceGetMigMode": (_VP, _VP, _VP),
    "nvmlDeviceGetMaxMigDeviceCount": (_VP, _VP),
    "nvmlDeviceGetMigDeviceHandleByIndex": (_VP, _U, _VP),
    "nvmlDeviceIsMigDeviceHandle": (_VP, _VP),
    "nvmlDeviceGetGpuInstanceId": (_VP, _VP),
    "nvmlDeviceGetComputeInstanceId": (_VP, _VP),
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle": (_VP, _VP),
}
for _kind in ("Compute", "Graphics"):
    for _suffix in ("", "_v2", "_v3"):
        SIGNATURES[f"nvmlDeviceGet{_kind}RunningProcesses{_suffix}"] = (_VP, _VP, _VP)

#: Symbols a driver before R510 lacks (no _v3 process calls, no memory v2).
PRE_R510 = frozenset(
    {
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
        "nvmlDeviceGetMemoryInfo_v2",
    }
)
#: And before R450 (no _v2 process calls, no MIG).
PRE_R450 = PRE_R510 | {
    "nvmlDeviceGetComputeRunningProcesses_v2",
    "nvmlDeviceGetGraphicsRunningProcesses_v2",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceIsMigDeviceHandle",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
}

# Functions a MIG device handle answers (the rest: NOT_SUPPORTED, as on real drivers, where
# power, energy, clocks, temperature and utilisation belong to the physical GPU).
_MIG_OK = frozenset(
    {
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceIsMigDeviceHandle",
        "nvmlDeviceGetGpuInstanceId",
        "nvmlDeviceGetComputeInstanceId",
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        "nvmlDeviceGetArchitecture",
        "nvmlDeviceGetCudaComputeCapability",
    }
) | {n for n in SIGNATURES if "RunningProcesses" in n}


def _put(ptr: int | None, ctype: Any, value: Any) -> None:
    ctypes.cast(ptr, ctypes.POINTER(ctype))[0] = value


class _Lib:
    """What pynvml sees as ``nvmlLib``: only the symbols the stub exports."""


class NvmlStub:
    def __init__(
        self,
        gpus: Iterable[StubGpu],
        *,
        missing: Iterable[str] = (),
        driver: str = "550.54.15",
        cuda: int = 12040,
        init_error: int | None = None,
    ) -> None:
        self.gpus = list(gpus)
        self.driver = driver
        self.cuda = cuda
        self.init_error = init_error
        self.calls: Counter[str] = Counter()
        self.initialised = 0
        self.lost: set[int] = set()
        # Handles are addresses of buffers the stub owns: slot 0 of each GPU is the GPU itself,
        # slots 1..max_mig its MIG devices.
        self._buffers: list[ctypes.Array[ctypes.c_char]] = []
        self._targets: dict[int, tuple[StubGpu, StubMig | None]] = {}
        self._handles: dict[tuple[int, int], int] = {}
        for g, gpu in enumerate(self.gpus):
            for slot in range(1 + max(gpu.max_mig, len(gpu.mig))):
                buf = ctypes.create_string_buffer(8)
                self._buffers.append(buf)
                self._handles[(g, slot)] = ctypes.addressof(buf)
        self._missing = frozenset(missing)
        self.lib = _Lib()
        self._keep: list[Any] = []
        for name, argtypes in SIGNATURES.items():
            if name in self._missing:
                continue
            impl = getattr(self, "_" + name, None)
            if impl is None:
                impl = self._processes_impl(name) if "RunningProcesses" in name else None
            assert impl is not None, name
            fn = ctypes.CFUNCTYPE(ctypes.c_int, *argtypes)(self._counted(name, impl))
            self._keep.append(fn)
            setattr(self.lib, name, fn)

    # -- installing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self, pynvml: Any) -> Iterator[NvmlStub]:
        """Make ``pynvml`` call this stub (as if it had loaded it) until the block ends."""
        saved = pynvml.nvmlLib, dict(pynvml._nvmlGetFunctionPointer_cache)
        saved_refcount = getattr(pynvml, "_nvmlLib_refcount", None)
        pynvml._nvmlGetFunctionPointer_cache.clear()
        pynvml.nvmlLib = self.lib
        try:
            yield self
        finally:
            pynvml.nvmlLib = saved[0]
            pynvml._nvmlGetFunctionPointer_cache.clear()
            pynvml._nvmlGetFunctionPointer_cache.update(saved[1])
            if saved_refcount is not None:
                pynvml._nvmlLib_refcount = saved_refcount

    def lose(self, index: int) -> None:
        """GPU ``index`` falls off the bus: every call on it returns GPU_IS_LOST from now on."""
        self.lost.add(index)

    # -- plumbing --------------------------------------------------------------------------

    def _counted(self, name: str, impl: Callable[..., int]) -> Callable[..., int]:
        def call(*args: Any) -> int:
            self.calls[name] += 1
            if name not in ("nvmlInitWithFlags", "nvmlInit_v2") and not self.initialised:
                return UNINITIALIZED
            try:
                return impl(*args)
            except Exception:  # a bug in the stub must not unwind through C
                import traceback

                traceback.print_exc()
                return UNKNOWN

        return call

    def _target(self, handle: int | None, name: str) -> tuple[int, StubGpu, StubMig | None]:
        """The GPU (and MIG device) a handle names; raises _Fail with the code to return."""
        for (g, slot), addr in self._handles.items():
            if addr == handle:
                gpu = self.gpus[g]
                mig = None
                if slot:
                    if not gpu.mig_mode or slot > len(gpu.mig) or gpu.mig[slot - 1] is None:
                        raise _Fail(INVALID_ARGUMENT)
                    mig = gpu.mig[slot - 1]
                if g in self.lost:
                    raise _Fail(GPU_IS_LOST)
                errors = mig.errors if mig is not None else gpu.errors
                if name in errors:
                    raise _Fail(errors[name])
                if mig is not None and name not in _MIG_OK:
                    raise _Fail(NOT_SUPPORTED)
                return g, gpu, mig
        raise _Fail(INVALID_ARGUMENT)

    def _device_call(self, name: str, body: Callable[..., int]) -> Callable[..., int]:
        def call(handle: int | None, *rest: Any) -> int:
            try:
                g, gpu, mig = self._target(handle, name)
            except _Fail as f:
                return f.code
            return body(g, gpu, mig, *rest)

        return call

    def __getattr__(self, attr: str) -> Any:
        # "_nvmlDeviceX" -> the device-call wrapper around "_dev_nvmlDeviceX".
        if attr.startswith("_nvmlDevice") and attr != "_nvmlDeviceGetCount_v2":
            body = self.__dict__.get("_dev" + attr) or getattr(type(self), "_dev" + attr, None)
            if body is not None:
                return self._device_call(attr[1:], body.__get__(self))
        raise AttributeError(attr)

    # -- library and system ----------------------------------------------------------------

    def _nvmlInitWithFlags(self, flags: int) -> int:
        if self.init_error is not None:
            return self.init_error
        self.initialised += 1
        return SUCCESS

    def _nvmlInit_v2(self) -> int:
        return self._nvmlInitWithFlags(0)

    def _nvmlShutdown(self) -> int:
        self.initialised -= 1
        return SUCCESS

    def _nvmlSystemGetDriverVersion(self, buf: int, size: int) -> int:
        return _text(buf, size, self.driver)

    def _nvmlSystemGetNVMLVersion(self, buf: int, size: int) -> int:
        return _text(buf, size, f"{self.cuda // 1000}.{self.driver}")

    def _nvmlSystemGetCudaDriverVersion(self, out: int) -> int:
        _put(out, ctypes.c_int, self.cuda)
        return SUCCESS

    _nvmlSystemGetCudaDriverVersion_v2 = _nvmlSystemGetCudaDriverVersion

    def _nvmlDeviceGetCount_v2(self, out: int) -> int:
        _put(out, ctypes.c_uint, len(self.gpus))
        return SUCCESS

    def _nvmlDeviceGetHandleByIndex_v2(self, index: int, out: int) -> int:
        if index >= len(self.gpus):
            return INVALID_ARGUMENT
        if index in self.lost:
            return GPU_IS_LOST
        _put(out, ctypes.c_void_p, self._handles[(index, 0)])
        return SUCCESS

    # -- device calls (g, gpu, mig, C arguments after the handle) --------------------------

    def _dev_nvmlDeviceGetName(
        self, g: int, gpu: StubGpu, mig: StubMig | None, buf: int, n: int
    ) -> int:
        name = gpu.name if mig is None else f"{gpu.name} MIG {mig.profile}"
        return _text(buf, n, name)

    def _dev_nvmlDeviceGetUUID(
        self, g: int, gpu: StubGpu, mig: StubMig | None, buf: int, n: int
    ) -> int:
        return _text(buf, n, gpu.uuid if mig is None else mig.uuid)

    def _memory(self, gpu: StubGpu, mig: StubMig | None) -> tuple[int, int, int]:
        """total, reserved, used (v2 meaning: without the reservation)."""
        if mig is not None:
            return mig.memory_total, 0, mig.memory_used
        used = gpu.memory_used
        if gpu.mig_mode:
            used = sum(m.memory_used for m in gpu.mig if m is not None)
        return gpu.memory_total, gpu.memory_reserved, used

    def _dev_nvmlDeviceGetMemoryInfo(
        self, g: int, gpu: StubGpu, mig: StubMig | None, out: int
    ) -> int:
        total, reserved, used = self._memory(gpu, mig)
        # v1: used includes what the driver reserves.
        _put(out, Memory, Memory(total, total - used - reserved, used + reserved))
        return SUCCESS

    def _dev_nvmlDeviceGetMemoryInfo_v2(
        self, g: int, gpu: StubGpu, mig: StubMig | None, out: int
    ) -> int:
        mem = ctypes.cast(out, ctypes.POINTER(MemoryV2))[0]
        if mem.version != MEMORY_V2:
            return ARGUMENT_VERSION_MISMATCH
        total, reserved, used = self._memory(gpu, mig)
        _put(out, MemoryV2, MemoryV2(MEMORY_V2, total, reserved, total - used - reserved, used))
        return SUCCESS

    def _uint(self, out: int, value: int) -> int:
        _put(out, ctypes.c_uint, value)
        return SUCCESS

    def _dev_nvmlDeviceGetEnforcedPowerLimit(self, g: int, gpu: StubGpu, mig: Any, out: int) -> int:
        return self._uint(out, gpu.power_limit_mw)

    _dev_nvmlDeviceGetPowerManagementLimit = _dev_nvmlDeviceGetEnforcedPowerLimit

    def _dev_nvmlDeviceGetArchitecture(self, g: int, gpu: StubGpu, mig: Any, out: int) -> int:
        return self._uint(out, gpu.architecture)

    def _dev_nvmlDeviceGetCudaComputeCapability(
        self, g: int, gpu: StubGpu, mig: Any, major: int, minor: int
    ) -> int:
        _put(major, ctypes.c_int, gpu.compute_capability[0])
        _put(minor, ctypes.c_int, gpu.compute_capability[1])
        return SUCCESS

    def _dev_nvmlDeviceGetUtilizationRates(self, g: int, gpu: StubGpu, mig: Any, out: int) -> int:
        if gpu.mig_mode:
            return NOT_SUPPORTED  # NVML: not supported on MIG-enabled GPUs
        _put(out, Utilization, Utilization(gpu.gpu_util, gpu.mem_util))
        return SUCCESS

    def _dev_nvmlDeviceGetPowerUsage(self, g: int, gpu: StubGpu, mig: Any, out: int) -> int:
        return self._uint(out, gpu.power_mw)

    def _dev_nvmlDeviceGetTotalEnergyConsumption(
        self, g: int, gpu: StubGpu, mig: Any, out: int
    ) -> int:
        _put(out, ctypes.c_ulonglong, gpu.energy_mj)
        return SUCCESS

    def _dev_nvmlDeviceGetTemperature(
        self, g: int, gpu: StubGpu, mig: Any, sensor: int, out: int
    ) -> int:
        if sensor != 0:
            return INVALID_ARGUMENT
        return self._uint(out, gpu.temp_c)

    def _dev_nvmlDeviceGetClockInfo(
        self, g: int, gpu: StubGpu, mig: Any, kind: int, out: int
    ) -> int:
        clocks = {0: gpu.sm_mhz, 1: gpu.sm_mhz, 2: gpu.mem_mhz, 3: gpu.sm_mhz * 9 // 10}
        if kind not in clocks:
            return INVALID_ARGUMENT
        return self._uint(out, clocks[kind])

    def _dev_nvmlDeviceGetProcessUtilization(
        self, g: int, gpu: StubGpu, mig: Any, samples: int | None, count: int, last_seen: int
    ) -> int:
        if gpu.mig_mode:
            return NOT_SUPPORTED
        rows = [s for s in gpu.process_util if s[1] > last_seen]
        if not rows:
            return NOT_FOUND
        n = ctypes.cast(count, ctypes.POINTER(ctypes.c_uint))
        if samples is None or n[0] < len(rows):
            n[0] = len(rows)
            return INSUFFICIENT_SIZE
        out = ctypes.cast(samples, ctypes.POINTER(ProcessUtilSample))
        for i, (pid, stamp, sm) in enumerate(rows):
            out[i] = ProcessUtilSample(pid, stamp, sm, 0, 0, 0)
        n[0] = len(rows)
        return SUCCESS

    def _processes_impl(self, name: str) -> Callable[..., int]:
        graphics = "Graphics" in name
        layout = ProcessInfoV1 if name.endswith("Processes") else ProcessInfoV2

        def body(g: int, gpu: StubGpu, mig: StubMig | None, count: int, infos: int | None) -> int:
            if mig is not None:
                rows = (
                    []
                    if graphics
                    else [(p, m, mig.gpu_instance, mig.compute_instance) for p, m in mig.processes]
                )
            elif gpu.mig_mode:
                # The aggregate over instances needs privileges a normal user lacks.
                return NO_PERMISSION
            else:
                src = gpu.graphics_processes if graphics else gpu.processes
                rows = [(p, m, NO_ID, NO_ID) for p, m in src]
            n = ctypes.cast(count, ctypes.POINTER(ctypes.c_uint))
            if not rows:
                n[0] = 0
                return SUCCESS
            if infos is None or n[0] < len(rows):
                n[0] = len(rows)
                return INSUFFICIENT_SIZE
            out = ctypes.cast(infos, ctypes.POINTER(layout))
            for i, (pid, mem, gi, ci) in enumerate(rows):
                out[i] = layout(pid, mem, gi, ci) if layout is ProcessInfoV2 else layout(pid, mem)
            n[0] = len(rows)
            return SUCCESS

        return self._device_call(name, body)

    # -- MIG -------------------------------------------------------------------------------

    def _dev_nvmlDeviceGetMigMode(
        self, g: int, gpu: StubGpu, mig: Any, cur: int, pending: int
    ) -> int:
        if gpu.mig_mode is None:
            return NOT_SUPPORTED
        _put(cur, ctypes.c_uint, int(gpu.mig_mode))
        _put(pending, ctypes.c_uint, int(gpu.mig_mode))
        return SUCCESS

    def _dev_nvmlDeviceGetMaxMigDeviceCount(self, g: int, gpu: StubGpu, mig: Any, out: int) -> int:
        if gpu.mig_mode is None:
            return NOT_SUPPORTED
        return self._uint(out, gpu.max_mig)

    def _dev_nvmlDeviceGetMigDeviceHandleByIndex(
        self, g: int, gpu: StubGpu, mig: Any, index: int, out: int
    ) -> int:
        if gpu.mig_mode is None:
            return NOT_SUPPORTED
        if index >= gpu.max_mig:
            return INVALID_ARGUMENT
        if not gpu.mig_mode or index >= len(gpu.mig) or gpu.mig[index] is None:
            return NOT_FOUND
        _put(out, ctypes.c_void_p, self._handles[(g, index + 1)])
        return SUCCESS

    def _dev_nvmlDeviceIsMigDeviceHandle(self, g: int, gpu: StubGpu, mig: Any, out: int) -> int:
        return self._uint(out, int(mig is not None))

    def _dev_nvmlDeviceGetGpuInstanceId(
        self, g: int, gpu: StubGpu, mig: StubMig | None, out: int
    ) -> int:
        if mig is None:
            return INVALID_ARGUMENT
        return self._uint(out, mig.gpu_instance)

    def _dev_nvmlDeviceGetComputeInstanceId(
        self, g: int, gpu: StubGpu, mig: StubMig | None, out: int
    ) -> int:
        if mig is None:
            return INVALID_ARGUMENT
        return self._uint(out, mig.compute_instance)

    def _dev_nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
        self, g: int, gpu: StubGpu, mig: StubMig | None, out: int
    ) -> int:
        if mig is None:
            return INVALID_ARGUMENT
        _put(out, ctypes.c_void_p, self._handles[(g, 0)])
        return SUCCESS


class _Fail(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _text(buf: int | bytes | None, size: int, value: str) -> int:
    data = value.encode()
    if len(data) + 1 > size:
        return INSUFFICIENT_SIZE
    ctypes.memmove(ctypes.cast(buf, ctypes.c_void_p), data + b"\0", len(data) + 1)
    return SUCCESS


def h100_mig_capture() -> StubGpu:
    """The H100 of tests/data/nvml (nvidia_gpu_exporter's capture, driver 590.48.01) under load:
    four MIG devices (3g.40gb, 2g.20gb, 1g.10gb x2) with the memory and processes it shows."""
    return StubGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-00000000-0000-0000-0000-000000000000",
        memory_total=81559 * MIB,
        memory_reserved=479 * MIB,
        power_mw=432_000,
        temp_c=52,
        mig_mode=True,
        mig=[
            StubMig(
                "MIG-00000000-0000-0000-0000-000000000000",
                "3g.40gb",
                2,
                40448 * MIB,
                11091 * MIB,
                processes=[(21180, 2296 * MIB), (21181, 1272 * MIB), (21198, 7484 * MIB)],
            ),
            StubMig(
                "MIG-00000001-0000-0000-0000-000000000001", "2g.20gb", 3, 20096 * MIB, 17 * MIB
            ),
            StubMig("MIG-00000002-0000-0000-0000-000000000002", "1g.10gb", 9, 9984 * MIB, 9 * MIB),
            StubMig("MIG-00000003-0000-0000-0000-000000000003", "1g.10gb", 10, 9984 * MIB, 9 * MIB),
        ],
    )
