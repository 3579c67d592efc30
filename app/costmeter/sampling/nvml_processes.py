"""Running-process lists from NVML, on whichever version of the call the driver has.

Drivers export ``nvmlDevice{Compute,Graphics}RunningProcesses`` as ``_v3`` (R510 and later),
``_v2`` (R450..R470) and the unversioned call (older), and the Python bindings wrap only some of
them (nvidia-ml-py 12.535 has no ``_v2`` wrapper, and its unversioned wrapper calls ``_v3``). So
with the real ``pynvml`` the C symbols are called here directly, through the binding's own symbol
lookup (``_nvmlGetFunctionPointer``), each with the struct layout of its version. A module without
that lookup (the simulator) is asked for its Python functions of the same names.

The first symbol the library has is kept for later calls; a missing one raises
``NVMLError_FunctionNotFound`` and the next older one is tried.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

#: NVML_VALUE_NOT_AVAILABLE for an unsigned long long: the memory is not known (Windows WDDM).
NOT_AVAILABLE_ULL = (1 << 64) - 1
_SUCCESS = 0
_INSUFFICIENT_SIZE = 7
_SUFFIXES = ("_v3", "_v2", "")


class _InfoV1(ctypes.Structure):
    """``nvmlProcessInfo_v1_t``: what the unversioned call fills."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


class _InfoV2(ctypes.Structure):
    """``nvmlProcessInfo_v2_t`` (also ``nvmlProcessInfo_t``): what ``_v2`` and ``_v3`` fill."""

    _fields_ = [
        ("pid", ctypes.c_uint),
        ("usedGpuMemory", ctypes.c_ulonglong),
        ("gpuInstanceId", ctypes.c_uint),
        ("computeInstanceId", ctypes.c_uint),
    ]


_LAYOUT: dict[str, type[ctypes.Structure]] = {"_v3": _InfoV2, "_v2": _InfoV2, "": _InfoV1}

#: (pid, bytes of GPU memory or None when the driver cannot say)
ProcessRow = tuple[int, int | None]
Lister = Callable[[Any], list[ProcessRow]]


def _c_lister(nvml: Any, symbol: str, layout: type[ctypes.Structure]) -> Lister:
    """A call of C ``symbol`` as NVML documents it: size with a NULL array, then fill."""
    lookup = nvml._nvmlGetFunctionPointer
    error = nvml.NVMLError

    def call(handle: Any) -> list[ProcessRow]:
        fn = lookup(symbol)
        count = ctypes.c_uint(0)
        ret = fn(handle, ctypes.byref(count), None)
        for _ in range(3):  # processes may start between the sizing call and the filling one
            if ret == _SUCCESS and not count.value:
                return []
            if ret != _INSUFFICIENT_SIZE and ret != _SUCCESS:
                raise error(ret)
            size = count.value * 2 + 5
            infos = (layout * size)()
            count.value = size
            ret = fn(handle, ctypes.byref(count), infos)
            if ret == _SUCCESS:
                rows = infos[: min(count.value, size)]
                return [(int(r.pid), _memory(int(r.usedGpuMemory))) for r in rows]
        raise error(ret)

    return call


def _py_lister(nvml: Any, name: str) -> Lister:
    fn = getattr(nvml, name, None)
    if fn is None:
        cls = getattr(nvml, "NVMLError_FunctionNotFound", None)

        def missing(handle: Any) -> list[ProcessRow]:
            raise cls() if cls is not None else AttributeError(name)

        return missing

    def call(handle: Any) -> list[ProcessRow]:
        return [(int(p.pid), _memory(p.usedGpuMemory)) for p in fn(handle)]

    return call


def _memory(value: int | None) -> int | None:
    if value is None or value >= NOT_AVAILABLE_ULL:
        return None
    return int(value)


class ProcessQuery:
    """One kind of process list (``Compute`` or ``Graphics``), on the newest call the driver has.

    ``__call__`` raises the binding's NVML errors as they come (NotSupported, NoPermission,
    GpuIsLost...); ``FunctionNotFound`` only once no version at all exists.
    """

    def __init__(self, nvml: Any, kind: str) -> None:
        self.kind = kind
        base = f"nvmlDeviceGet{kind}RunningProcesses"
        self._not_found: tuple[type[BaseException], ...] = tuple(
            c for c in (getattr(nvml, "NVMLError_FunctionNotFound", None),) if c is not None
        )
        direct = callable(getattr(nvml, "_nvmlGetFunctionPointer", None))
        self._candidates: list[tuple[str, Lister]] = [
            (
                base + suffix,
                _c_lister(nvml, base + suffix, _LAYOUT[suffix])
                if direct
                else _py_lister(nvml, base + suffix),
            )
            for suffix in _SUFFIXES
        ]
        #: The C symbol in use once one answered; None before the first call.
        self.symbol: str | None = None

    def __call__(self, handle: Any) -> list[ProcessRow]:
        while True:
            symbol, call = self._candidates[0]
            try:
                rows = call(handle)
            except self._not_found:
                if len(self._candidates) == 1:
                    raise
                del self._candidates[0]
                continue
            self.symbol = symbol
            return rows


def merge(lists: Sequence[list[ProcessRow]]) -> list[ProcessRow]:
    """One row per PID: a process with both compute and graphics contexts is listed by both
    calls with the same memory; keep the larger figure if they differ."""
    seen: dict[int, int | None] = {}
    for rows in lists:
        for pid, mem in rows:
            if pid in seen:
                old = seen[pid]
                if mem is not None and (old is None or mem > old):
                    seen[pid] = mem
            else:
                seen[pid] = mem
    return list(seen.items())
