"""A stand-in for the ``pynvml`` module, driven by simulated devices.

It has pynvml's function names, parameter names, return types and exceptions (the real
``pynvml.NVMLError_*`` classes, the real ctypes structs and ``nvmlFriendlyObject``), so the
NVML sampler runs on it unchanged. Every call before ``nvmlInit`` raises
``NVMLError_Uninitialized``, as the real library does. Faults can be injected per device.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Sequence
from typing import Any, NoReturn

import pynvml

from costmeter.core.clock import Clock, SystemClock
from costmeter.core.model import ProcessSample
from costmeter.core.owner import Owner
from costmeter.sampling.simulated.device import DevState, SimDevice, SimProcess
from costmeter.sampling.simulated.models import MIB, MODELS
from costmeter.sampling.simulated.noise import hex_digest
from costmeter.sampling.simulated.pids import PID_BASE
from costmeter.sampling.simulated.profiles import get_profile
from costmeter.sampling.simulated.spec import SimDeviceSpec, parse_spec

_NVMLError = pynvml.NVMLError
_floor = math.floor
_UNAVAILABLE_UINT = 0xFFFFFFFF  # gpuInstanceId/computeInstanceId when MIG is off
# Packed layouts of pynvml's structs; a test checks them against ctypes.sizeof and round trips.
_UTIL = struct.Struct("@II").pack
_MEM = struct.Struct("@QQQ").pack
_MEM_V2 = struct.Struct("@IQQQQ").pack
_PROC_UTIL = struct.Struct("@IQIIII").pack
# The fields of the nvmlProcessInfo_t pynvml turns into the nvmlFriendlyObject it returns for
# each running process (named here: nvidia-ml-py 12.535.77 has no c_nvmlProcessInfo_v2_t).
_PID, _USED, _GI, _CI = "pid", "usedGpuMemory", "gpuInstanceId", "computeInstanceId"
#: What a MIG device handle answers; anything else is NotSupported there, as on real drivers
#: (power, energy, temperature, clocks and utilisation belong to the physical GPU).
_MIG_OK = frozenset(
    {
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetArchitecture",
        "nvmlDeviceGetCudaComputeCapability",
        "nvmlDeviceIsMigDeviceHandle",
        "nvmlDeviceGetGpuInstanceId",
        "nvmlDeviceGetComputeInstanceId",
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    }
    | {
        f"nvmlDeviceGet{kind}RunningProcesses{suffix}"
        for kind in ("Compute", "Graphics")
        for suffix in ("", "_v2", "_v3")
    }
)


def mig_uuid(gpu_uuid: str, slot: int) -> str:
    """The UUID of MIG device ``slot`` of the simulated GPU ``gpu_uuid``."""
    h = hex_digest(gpu_uuid, "mig", slot)
    return f"MIG-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class FakeHandle:
    """Opaque per-device handle (pynvml's is a ``c_nvmlDevice_t`` pointer)."""

    __slots__ = ("calls", "device", "faults", "index", "memory_hidden", "mig", "mig_handles")

    def __init__(self, device: SimDevice, mig: int | None = None) -> None:
        self.device = device
        self.index = device.index
        #: The MIG device slot this handle names; None for the physical GPU.
        self.mig = mig
        #: The physical GPU's MIG device handles, by slot.
        self.mig_handles: tuple[FakeHandle, ...] = ()
        #: function name -> [NVML error code, calls left or -1 for always]
        self.faults: dict[str, list[int]] = {
            name: [pynvml.NVML_ERROR_NOT_SUPPORTED, -1] for name in device.model.unsupported
        }
        self.memory_hidden = False
        #: Calls made on this handle, by pynvml function name.
        self.calls: dict[str, int] = {}

    def __repr__(self) -> str:
        where = "" if self.mig is None else f" MIG {self.mig}"
        return f"<FakeHandle GPU {self.index}{where} {self.device.model.name}>"


def _raise_fault(handle: FakeHandle, function: str) -> NoReturn:
    fault = handle.faults[function]
    if fault[1] > 0:
        fault[1] -= 1
        if not fault[1]:
            del handle.faults[function]
    raise _NVMLError(fault[0])


class FakeNvml:
    """Module-like object with the pynvml API. See ``make_fake_nvml`` for the usual entry."""

    # The real exception classes and constants, so ``except nvml.NVMLError_...`` works on both.
    NVMLError = pynvml.NVMLError
    NVMLError_Uninitialized = pynvml.NVMLError_Uninitialized
    NVMLError_InvalidArgument = pynvml.NVMLError_InvalidArgument
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission
    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = pynvml.NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
    NVMLError_Unknown = pynvml.NVMLError_Unknown
    # Not in nvidia-ml-py 12.535.x: None there (the sampler then catches nothing by it).
    NVMLLibraryMismatchError = getattr(pynvml, "NVMLLibraryMismatchError", None)
    NVML_DEVICE_MIG_DISABLE = 0
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_CLOCK_GRAPHICS = pynvml.NVML_CLOCK_GRAPHICS
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_CLOCK_VIDEO = pynvml.NVML_CLOCK_VIDEO
    NVML_VALUE_NOT_AVAILABLE_ulonglong = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong
    c_nvmlMemory_t = pynvml.c_nvmlMemory_t
    c_nvmlUtilization_t = pynvml.c_nvmlUtilization_t
    c_nvmlProcessInfo_v2_t = getattr(pynvml, "c_nvmlProcessInfo_v2_t", pynvml.c_nvmlProcessInfo_t)
    c_nvmlProcessUtilizationSample_t = pynvml.c_nvmlProcessUtilizationSample_t

    def __init__(
        self,
        devices: Sequence[SimDeviceSpec],
        *,
        seed: int = 0,
        clock: Clock | None = None,
        driver_present: bool = True,
        init_error: int | None = None,
        driver_version: str = "550.54.15",
        cuda_driver_version: int = 12040,
        driver_loaded_at: float | None = None,
        machine: str = "",
    ) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        if init_error is None and not driver_present:
            init_error = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
        self._init_error = init_error
        self._refcount = 0
        #: Calls that take no handle (nvmlInit, nvmlShutdown), by function name.
        self._lib_calls: Counter[str] = Counter()
        loaded = self.clock.now() if driver_loaded_at is None else driver_loaded_at
        origin = math.floor(loaded)
        handles = []
        for i, spec in enumerate(devices):
            model = MODELS[spec.model]
            # A machine name keeps simulated GPUs of different machines (agents simulating GPUs
            # on one computer) apart: devices are keyed by UUID everywhere.
            parts = ("sim-gpu", seed, i, spec.model) + ((machine,) if machine else ())
            h = hex_digest(*parts)
            uuid = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
            dev = SimDevice(i, model, seed=seed, uuid=uuid, origin_sec=origin)
            dev.mig = tuple(p for p in (model.mig_profile(n) for n in spec.mig) if p is not None)
            profile = get_profile(spec.profile)
            if profile.has_process:
                pid = PID_BASE + 100 * i + 1
                proc = SimProcess(
                    pid,
                    profile,
                    name="python",
                    cmdline=profile.cmdline,
                    create_time=origin,
                    instance=0 if dev.mig else None,
                )
                dev.processes = (proc,)
            handle = FakeHandle(dev)
            handle.mig_handles = tuple(FakeHandle(dev, slot) for slot in range(len(dev.mig)))
            handles.append(handle)
        self._handles: tuple[FakeHandle, ...] = tuple(handles)
        #: Owners given to ``attach_process``, by pid.
        self._owners: dict[int, Owner] = {}

    @classmethod
    def without_driver(cls, code: int = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND) -> FakeNvml:
        """A fake whose ``nvmlInit`` fails with ``code`` (default: library not found)."""
        return cls((), init_error=code)

    # -- simulation control -----------------------------------------------------------------

    @property
    def devices(self) -> tuple[SimDevice, ...]:
        return tuple(h.device for h in self._handles)

    @property
    def handles(self) -> tuple[FakeHandle, ...]:
        """The physical GPUs' handles, by index (for the direct path, ``direct.py``)."""
        return self._handles

    def owner_of(self, proc: SimProcess) -> Owner:
        """Who ``proc`` belongs to: the owner given to ``attach_process``, else its user."""
        return self._owners.get(proc.pid) or Owner(user=proc.user)

    def call_count(self, function: str | None = None, index: int | None = None) -> int:
        """Calls of ``function`` (None: of any function) on device ``index`` (None: anywhere)."""
        handles = self._handles if index is None else (self._handles[index],)
        total = sum(n for h in handles for name, n in h.calls.items() if function in (None, name))
        if index is None:
            total += sum(n for name, n in self._lib_calls.items() if function in (None, name))
        return total

    def inject_not_supported(self, index: int, function: str) -> None:
        """From now on ``function`` raises NVMLError_NotSupported on device ``index``."""
        self.inject_error(index, function, pynvml.NVML_ERROR_NOT_SUPPORTED, times=-1)

    def inject_error(
        self, index: int, function: str, code: int = pynvml.NVML_ERROR_UNKNOWN, times: int = 1
    ) -> None:
        """Make the next ``times`` calls of ``function`` on ``index`` fail (-1: all of them)."""
        self._handles[index].faults[function] = [code, times]

    def lose_gpu(self, index: int, at: float | None = None) -> None:
        """From ``at`` (default now) every call on this GPU raises NVMLError_GpuIsLost."""
        self._handles[index].device.lost_at = self.clock.now() if at is None else at

    def hide_process_memory(self, index: int) -> None:
        """Report ``usedGpuMemory`` as not available, as NVML does under Windows WDDM."""
        self._handles[index].memory_hidden = True

    def attach_process(
        self,
        index: int,
        pid: int,
        profile: str,
        *,
        name: str = "python",
        cmdline: str | None = None,
        create_time: float | None = None,
        user: str = "sim",
        instance: int | None = None,
        owner: Owner | None = None,
    ) -> None:
        """Put process ``pid`` on GPU ``index`` (on its MIG device ``instance`` when the GPU is
        in MIG mode: the first one unless said), running ``profile`` from now on. ``owner``:
        who it belongs to, as ``process_sample`` reports it (default ``Owner(user=user)``)."""
        dev = self._handles[index].device
        if dev.mig:
            instance = 0 if instance is None else instance
            if not 0 <= instance < len(dev.mig):
                raise ValueError(f"GPU {index} has no MIG device {instance}")
        elif instance is not None:
            raise ValueError(f"GPU {index} is not in MIG mode")
        prof = get_profile(profile)
        now = self.clock.now()
        proc = SimProcess(
            pid,
            prof,
            name=name,
            cmdline=prof.cmdline if cmdline is None else cmdline,
            create_time=now if create_time is None else create_time,
            user=user,
            instance=instance,
        )
        proc.start_sec = max(proc.start_sec, math.floor(now))
        self._handles[index].device.add_process(proc, now)
        if owner is not None:
            self._owners[pid] = owner
        else:
            self._owners.pop(pid, None)

    def detach_process(self, index: int, pid: int) -> bool:
        """Take ``pid`` off GPU ``index``; False if it was not there."""
        removed = self._handles[index].device.remove_process(pid, self.clock.now()) is not None
        if pid not in self.simulated_pids():
            self._owners.pop(pid, None)
        return removed

    def simulated_pids(self) -> list[int]:
        return [p.pid for h in self._handles for p in h.device.processes]

    def process_sample(self, pid: int) -> ProcessSample | None:
        """The host-side view of a simulated process (its first GPU if it has several)."""
        t = self.clock.now()
        for h in self._handles:
            dev = h.device
            for p in dev.processes:
                if p.pid != pid:
                    continue
                cpu = next((r[4] for r in dev.state(math.floor(t)).procs if r[0] is p), 0.0)
                owner = self.owner_of(p)
                return ProcessSample(
                    pid=pid,
                    create_time=p.create_time,
                    name=p.name,
                    cmdline=p.cmdline,
                    user=owner.user or p.user,
                    cpu_percent=cpu,
                    rss=p.profile.rss,
                    cpu_time_s=dev.cpu_time_s(p, t),
                    owner=owner,
                )
        return None

    # -- plumbing ---------------------------------------------------------------------------

    def _check_init(self) -> None:
        if not self._refcount:
            raise _NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _enter(self, handle: object, function: str) -> tuple[SimDevice, float]:
        """Checks every device call makes: initialised, valid handle, lost, injected faults."""
        if not self._refcount:
            raise _NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if type(handle) is not FakeHandle:
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        calls = handle.calls
        calls[function] = calls.get(function, 0) + 1
        dev = handle.device
        t = self.clock.now()
        if dev.lost_at is not None and t >= dev.lost_at:
            raise _NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if handle.faults and function in handle.faults:
            _raise_fault(handle, function)
        if handle.mig is not None and function not in _MIG_OK:
            raise _NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return dev, t

    def _now_state(self, handle: object, function: str) -> DevState:
        """``_enter`` (inlined: this is the per-tick path), then the state for this second."""
        if not self._refcount:
            raise _NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if type(handle) is not FakeHandle:
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        calls = handle.calls
        calls[function] = calls.get(function, 0) + 1
        dev = handle.device
        t = self.clock.now()
        if dev.lost_at is not None and t >= dev.lost_at:
            raise _NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if handle.faults and function in handle.faults:
            _raise_fault(handle, function)
        if handle.mig is not None and function not in _MIG_OK:
            raise _NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return dev.state(_floor(t))

    # -- the pynvml API: library and system -------------------------------------------------

    def nvmlInit(self) -> None:
        self._lib_calls["nvmlInit"] += 1
        if self._init_error is not None:
            raise _NVMLError(self._init_error)
        self._refcount += 1

    def nvmlShutdown(self) -> None:
        self._lib_calls["nvmlShutdown"] += 1
        self._check_init()
        self._refcount -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return self.driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._check_init()
        return f"{self.cuda_driver_version // 1000}.{self.driver_version}"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check_init()
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self._handles)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._check_init()
        if not isinstance(index, int) or not 0 <= index < len(self._handles):
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        handle = self._handles[index]
        lost_at = handle.device.lost_at
        if lost_at is not None and self.clock.now() >= lost_at:
            raise _NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return handle

    # -- static device information ------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: object) -> str:
        dev = self._enter(handle, "nvmlDeviceGetName")[0]
        slot = handle.mig if isinstance(handle, FakeHandle) else None
        return dev.model.name if slot is None else f"{dev.model.name} MIG {dev.mig[slot].name}"

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        dev = self._enter(handle, "nvmlDeviceGetUUID")[0]
        slot = handle.mig if isinstance(handle, FakeHandle) else None
        return dev.uuid if slot is None else mig_uuid(dev.uuid, slot)

    def nvmlDeviceGetPowerManagementLimit(self, handle: object) -> int:
        dev = self._enter(handle, "nvmlDeviceGetPowerManagementLimit")[0]
        return dev.model.power_limit_w * 1000

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: object) -> int:
        return self._enter(handle, "nvmlDeviceGetEnforcedPowerLimit")[0].model.power_limit_w * 1000

    def nvmlDeviceGetCudaComputeCapability(self, handle: object) -> tuple[int, int]:
        return self._enter(handle, "nvmlDeviceGetCudaComputeCapability")[0].model.compute_capability

    def nvmlDeviceGetArchitecture(self, device: object) -> int:
        return self._enter(device, "nvmlDeviceGetArchitecture")[0].model.architecture

    def nvmlDeviceGetMaxClockInfo(self, handle: object, type: int) -> int:
        model = self._enter(handle, "nvmlDeviceGetMaxClockInfo")[0].model
        if type in (pynvml.NVML_CLOCK_GRAPHICS, pynvml.NVML_CLOCK_SM):
            return model.max_sm_mhz
        if type == pynvml.NVML_CLOCK_MEM:
            return model.max_mem_mhz
        if type == pynvml.NVML_CLOCK_VIDEO:
            return model.max_sm_mhz * 9 // 10
        raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    # -- per-tick readings --------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> Any:
        st = self._now_state(handle, "nvmlDeviceGetUtilizationRates")
        if st.mig_used or (isinstance(handle, FakeHandle) and handle.device.mig):
            # "On MIG-enabled GPUs, querying device utilization rates is not currently supported."
            raise _NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return pynvml.c_nvmlUtilization_t.from_buffer_copy(_UTIL(st.gpu_util, st.mem_util))

    def nvmlDeviceGetMemoryInfo(self, handle: object, version: int | None = None) -> Any:
        dev, t = self._enter(handle, "nvmlDeviceGetMemoryInfo")
        slot = handle.mig if isinstance(handle, FakeHandle) else None
        if slot is not None:  # a MIG device: its own memory, no reservation of its own
            total = dev.mig[slot].memory_mib * MIB
            used = dev.state(_floor(t)).mig_used[slot]
            reserved = 0
        else:
            # v1 "used" includes the driver's reservation; v2 gives it apart.
            used = dev.state(_floor(t)).mem_used
            total = dev.model.memory_total
            reserved = min(used, dev.model.memory_reserved)
        if not version:
            return pynvml.c_nvmlMemory_t.from_buffer_copy(_MEM(total, total - used, used))
        if version != pynvml.nvmlMemory_v2:
            raise _NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        packed = _MEM_V2(version, total, reserved, total - used, used - reserved)
        return pynvml.c_nvmlMemory_v2_t.from_buffer_copy(packed)

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        return self._now_state(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        dev, t = self._enter(handle, "nvmlDeviceGetTotalEnergyConsumption")
        return dev.energy_mj(t)

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        st = self._now_state(handle, "nvmlDeviceGetTemperature")
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return st.temp_c

    def nvmlDeviceGetClockInfo(self, handle: object, type: int) -> int:
        st = self._now_state(handle, "nvmlDeviceGetClockInfo")
        if type == pynvml.NVML_CLOCK_SM or type == pynvml.NVML_CLOCK_GRAPHICS:
            return st.sm_clock_mhz
        if type == pynvml.NVML_CLOCK_MEM:
            return st.mem_clock_mhz
        if type == pynvml.NVML_CLOCK_VIDEO:
            return st.sm_clock_mhz * 9 // 10
        raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def _running(self, handle: object, function: str, graphics: bool = False) -> list[Any]:
        st = self._now_state(handle, function)
        assert isinstance(handle, FakeHandle)
        slot = handle.mig
        if slot is None and handle.device.mig:
            # In MIG mode the GPU's aggregate list needs privileges a normal user lacks.
            raise _NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        if graphics:
            return []  # simulated workloads have compute contexts only
        out = []
        gi = ci = _UNAVAILABLE_UINT
        if slot is not None:
            gi, ci = slot + 1, 0
        for row in st.procs:
            if row[0].instance != slot:
                continue
            # pynvml turns NVML_VALUE_NOT_AVAILABLE into None; so does the fake.
            mem = None if handle.memory_hidden else row[1]
            fields = {_PID: row[0].pid, _USED: mem, _GI: gi, _CI: ci}
            out.append(pynvml.nvmlFriendlyObject(fields))
        return out

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: object) -> list[Any]:
        return self._running(handle, "nvmlDeviceGetComputeRunningProcesses_v3")

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: object) -> list[Any]:
        return self._running(handle, "nvmlDeviceGetComputeRunningProcesses_v2")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> list[Any]:
        return self._running(handle, "nvmlDeviceGetComputeRunningProcesses")

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: object) -> list[Any]:
        return self._running(handle, "nvmlDeviceGetGraphicsRunningProcesses_v3", graphics=True)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: object) -> list[Any]:
        return self._running(handle, "nvmlDeviceGetGraphicsRunningProcesses_v2", graphics=True)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: object) -> list[Any]:
        return self._running(handle, "nvmlDeviceGetGraphicsRunningProcesses", graphics=True)

    # -- MIG ----------------------------------------------------------------------------------

    def _mig_parent(self, handle: object, function: str) -> FakeHandle:
        dev = self._enter(handle, function)[0]
        assert isinstance(handle, FakeHandle)
        if not dev.model.mig_profiles:
            raise _NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if handle.mig is not None:
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle

    def nvmlDeviceGetMigMode(self, device: object) -> list[int]:
        handle = self._mig_parent(device, "nvmlDeviceGetMigMode")
        mode = int(bool(handle.device.mig))
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: object) -> int:
        self._mig_parent(device, "nvmlDeviceGetMaxMigDeviceCount")
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: object, index: int) -> FakeHandle:
        handle = self._mig_parent(device, "nvmlDeviceGetMigDeviceHandleByIndex")
        if not 0 <= index < 7:
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if index >= len(handle.mig_handles):
            raise _NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return handle.mig_handles[index]

    def nvmlDeviceIsMigDeviceHandle(self, device: object) -> bool:
        self._enter(device, "nvmlDeviceIsMigDeviceHandle")
        return isinstance(device, FakeHandle) and device.mig is not None

    def nvmlDeviceGetGpuInstanceId(self, device: object) -> int:
        self._enter(device, "nvmlDeviceGetGpuInstanceId")
        if not isinstance(device, FakeHandle) or device.mig is None:
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return device.mig + 1

    def nvmlDeviceGetComputeInstanceId(self, device: object) -> int:
        self._enter(device, "nvmlDeviceGetComputeInstanceId")
        if not isinstance(device, FakeHandle) or device.mig is None:
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return 0

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: object) -> FakeHandle:
        self._enter(migDevice, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle")
        if not isinstance(migDevice, FakeHandle) or migDevice.mig is None:
            raise _NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handles[migDevice.index]

    def nvmlDeviceGetProcessUtilization(self, handle: object, timeStamp: int) -> list[Any]:
        st = self._now_state(handle, "nvmlDeviceGetProcessUtilization")
        if st.mig_used:
            raise _NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        stamp = st.sec * 1_000_000
        if not st.procs or stamp <= timeStamp:
            # NVML has no sample newer than timeStamp.
            raise _NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        make = pynvml.c_nvmlProcessUtilizationSample_t.from_buffer_copy
        return [make(_PROC_UTIL(r[0].pid, stamp, r[2], r[3], 0, 0)) for r in st.procs]


def make_fake_nvml(
    spec: str, *, seed: int = 0, clock: Clock | None = None, machine: str = ""
) -> FakeNvml:
    """A fake NVML with the GPUs that ``spec`` describes (see ``parse_spec``); ``machine`` (a
    host name) gives its GPUs UUIDs of their own."""
    return FakeNvml(parse_spec(spec), seed=seed, clock=clock, machine=machine)
