"""dcgm-exporter's ``DCGM_FI_*`` series -> Costmeter devices and device samples.

A series is one GPU (labels ``gpu``, ``UUID``, ``modelName``, ``Hostname``) or, with MIG, one
GPU instance (``GPU_I_ID``, ``GPU_I_PROFILE``). A MIG instance becomes a device of its own: its
uuid is ``MIG-<parent UUID>/<GPU_I_ID>`` (the legacy MIG naming), its name
``<model> MIG <profile>``, its index the parent's. Power, energy and temperatures belong to the
physical GPU: on a MIG series they are given to the parent device, so energy is never counted
once per instance.

Label spellings changed over dcgm-exporter's releases: ``Hostname`` became ``hostname`` (4.x,
NVIDIA/dcgm-exporter commit d5e5f51), the GPU id label can be ``UUID``, ``uuid`` or ``gpu_uuid``,
the model ``modelName`` or ``model_name``. Each is read in every spelling. A series with
neither a GPU id nor a ``gpu`` label names no device and is skipped (Datadog's test page has
such lines). The ``pod``/``namespace``/``container`` labels of the pod mapping are kept per
device in ``DcgmReading.pods``; ``costmeter.service.remote.pods`` makes them processes.

Values DCGM could not read arrive as its "blank" markers (``dcgm_structs.h``: INT32 0x7ffffff0,
INT64 0x7ffffffffffffff0, FP64 2**47, each followed by NOT_FOUND, NOT_SUPPORTED and
NOT_PERMISSIONED at +1, +2, +3); those, and values no GPU can have, are dropped and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from costmeter.core.model import DeviceInfo, DeviceSample
from costmeter.service.remote.prom import Samples

PREFIX = "DCGM_FI_"
MIB = 1024 * 1024
MAX_ENERGY_MJ = 2**63 - 1

#: DCGM's markers for "no value" (NVIDIA/DCGM dcgmlib/dcgm_structs.h, DCGM_*_BLANK): the
#: base value, then NOT_FOUND, NOT_SUPPORTED and NOT_PERMISSIONED just above it.
INT32_BLANK = 0x7FFFFFF0
INT64_BLANK = 0x7FFFFFFFFFFFFFF0
FP64_BLANK = 140737488355328.0  # 2**47, about 1.4e14
#: Beyond any GPU made or announced (the largest single-GPU boards draw ~1.4 kW).
MAX_GPU_POWER_W = 5_000.0
MAX_CLOCK_MHZ = 20_000.0
MAX_MEMORY_MIB = float(1 << 24)  # 16 TiB
TEMP_RANGE_C = (-60.0, 250.0)
#: dcgm-exporter watches at most 32 GPUs per host engine (DCGM_MAX_NUM_DEVICES), each with at
#: most 7 MIG instances: 256 devices. A page naming more is cut there, with a message.
MAX_DEVICES = 256

UUID_LABELS = ("UUID", "uuid", "gpu_uuid")
MODEL_LABELS = ("modelName", "model_name")
HOST_LABELS = ("Hostname", "hostname")
#: Labels that name the Kubernetes node (present after relabelling or on a federation page).
NODE_LABELS = ("node", "node_name", "kubernetes_node", "nodename")
#: The workload a GPU serves, when dcgm-exporter maps pods to GPUs (``--kubernetes``).
POD_LABELS = ("namespace", "pod", "container")
#: Longer pod label values are cut here (memory bound); ``pods`` refuses any longer than a
#: Kubernetes name can be, so a cut value never names a workload.
MAX_POD_LABEL = 1024

#: DCGM field -> (DeviceSample field, factor to Costmeter's unit).
FIELDS: dict[str, tuple[str, float]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("gpu_util", 1.0),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("mem_util", 1.0),
    "DCGM_FI_DEV_FB_USED": ("mem_used", MIB),
    "DCGM_FI_DEV_POWER_USAGE": ("power_w", 1.0),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_mj", 1.0),
    "DCGM_FI_DEV_GPU_TEMP": ("temp_c", 1.0),
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", 1.0),
    "DCGM_FI_DEV_MEM_CLOCK": ("mem_clock_mhz", 1.0),
}
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
#: Read for the device record, not the sample.
FB_FREE = "DCGM_FI_DEV_FB_FREE"
FB_RESERVED = "DCGM_FI_DEV_FB_RESERVED"
FB_TOTAL = "DCGM_FI_DEV_FB_TOTAL"
POWER_LIMIT = "DCGM_FI_DEV_POWER_MGMT_LIMIT"
XID = "DCGM_FI_DEV_XID_ERRORS"
#: Graphics engine activity (0..1): a MIG instance's utilisation, which GPU_UTIL does not give.
GR_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
#: Physical-GPU quantities: taken from a MIG series for the parent only.
PARENT_ONLY = frozenset(
    {
        "DCGM_FI_DEV_POWER_USAGE",
        ENERGY,
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_MEM_CLOCK",
        POWER_LIMIT,
        XID,
    }
)
#: The range a value of each field read can physically take (inclusive).
BOUNDS: dict[str, tuple[float, float]] = {
    "DCGM_FI_DEV_GPU_UTIL": (0.0, 100.0),
    "DCGM_FI_DEV_MEM_COPY_UTIL": (0.0, 100.0),
    "DCGM_FI_DEV_FB_USED": (0.0, MAX_MEMORY_MIB),
    FB_FREE: (0.0, MAX_MEMORY_MIB),
    FB_RESERVED: (0.0, MAX_MEMORY_MIB),
    FB_TOTAL: (0.0, MAX_MEMORY_MIB),
    "DCGM_FI_DEV_POWER_USAGE": (0.0, MAX_GPU_POWER_W),
    POWER_LIMIT: (1.0, MAX_GPU_POWER_W),
    ENERGY: (0.0, float(MAX_ENERGY_MJ)),
    "DCGM_FI_DEV_GPU_TEMP": TEMP_RANGE_C,
    "DCGM_FI_DEV_SM_CLOCK": (0.0, MAX_CLOCK_MHZ),
    "DCGM_FI_DEV_MEM_CLOCK": (0.0, MAX_CLOCK_MHZ),
    GR_ACTIVE: (0.0, 1.0),
    XID: (0.0, float(2**31 - 1)),
}
BLANK = "DCGM's blank value: no reading"
IMPOSSIBLE = "a value no GPU can have"


def wanted(name: str) -> bool:
    return name.startswith(PREFIX)


def is_blank(metric: str, value: float) -> bool:
    """True for DCGM's "no value" markers; the energy counter is INT64 and only has those."""
    if value >= INT64_BLANK:  # exact: an int from the page or its float rounding (2**63)
        return True
    if metric == ENERGY:
        return False
    return value >= FP64_BLANK or INT32_BLANK <= value <= INT32_BLANK + 3


def check(metric: str, value: float) -> str | None:
    """Why ``value`` of ``metric`` must be dropped (BLANK or IMPOSSIBLE), or None to keep it."""
    if is_blank(metric, value):
        return BLANK
    bounds = BOUNDS.get(metric)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        return IMPOSSIBLE
    return None


def label(labels: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first non-empty label of ``names`` (the spellings of one label)."""
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return None


@dataclass
class _Dev:
    uuid: str
    index: int
    name: str
    values: dict[str, float] = field(default_factory=dict)

    def put(self, key: str, value: float) -> None:
        self.values.setdefault(key, value)  # the first series of a device wins


@dataclass(frozen=True, slots=True)
class PodRef:
    """A Kubernetes workload dcgm-exporter saw on a GPU (its ``--kubernetes`` pod mapping)."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True, slots=True)
class DcgmReading:
    devices: tuple[DeviceInfo, ...]
    samples: tuple[DeviceSample, ...]
    #: (device uuid, XID code) for each XID error first seen in this reading.
    xids: tuple[tuple[str, int], ...]
    #: The ``Hostname``/``hostname`` label of the first series, if any.
    hostname: str | None
    #: A Kubernetes node name label (``node``, ``node_name``...), if the page carries one.
    node: str | None = None
    #: (metric, reason) -> how many values were dropped (DCGM blanks, impossible values).
    dropped: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: Devices beyond MAX_DEVICES that were not read.
    devices_skipped: int = 0
    #: Device uuid -> the workloads on it (empty without dcgm-exporter's pod mapping); a
    #: workload on a MIG instance is on that MIG device, not on its GPU.
    pods: Mapping[str, tuple[PodRef, ...]] = field(default_factory=dict)


def _holder(uuid: str, instance: str | None) -> str:
    """The device a pod label names: on a MIG series its MIG device, even where the series'
    value went to the parent GPU (power, energy), as NVML lists a MIG GPU's processes on its
    MIG devices only (``sampling/nvml.py``)."""
    if not instance or uuid.startswith("MIG-"):
        return uuid
    return f"MIG-{uuid}/{instance[:16]}"


def _index(text: str | None, fallback: int) -> int:
    # isascii: str.isdigit() is also true for "①" or "²", which int() refuses.
    if text is not None and text.isascii() and text.isdigit() and len(text) <= 3:
        return int(text) if int(text) < 256 else fallback
    return fallback


class DcgmMapper:
    """Maps one target's pages; remembers each device's last XID so an error counts once."""

    def __init__(self, max_devices: int = MAX_DEVICES) -> None:
        self.max_devices = max_devices
        self._last_xid: dict[str, int] = {}

    def map(self, samples: Samples, *, host: str, ts: float) -> DcgmReading:
        devs: dict[str, _Dev] = {}
        parents: dict[str, str] = {}  # parent UUID label -> device uuid
        hostname: str | None = None
        node: str | None = None
        dropped: Counter[tuple[str, str]] = Counter()
        skipped: set[str] = set()
        pods: dict[str, dict[PodRef, None]] = {}
        for raw_name, series in samples.items():
            if not wanted(raw_name):
                continue
            # prometheus_client names a counter's samples NAME_total even where the page
            # says NAME (dcgm-exporter's energy counter); DCGM field names never end so.
            metric = raw_name.removesuffix("_total")
            for s in series:
                labels = s.labels
                if hostname is None:
                    found = label(labels, HOST_LABELS)
                    hostname = found[:255] if found else None
                if node is None:
                    found = label(labels, NODE_LABELS)
                    node = found[:255] if found else None
                dev = self._device(devs, parents, labels, host, metric, skipped)
                if dev is None:
                    continue
                pod = labels.get("pod")
                if pod:
                    holder = _holder(dev.uuid, labels.get("GPU_I_ID"))
                    if len(pods.get(holder, ())) < 16:
                        ns, container = labels.get("namespace", ""), labels.get("container", "")
                        cut = MAX_POD_LABEL  # kept whole below this: a cut name is another's
                        ref = PodRef(ns[:cut], pod[:cut], container[:cut])
                        pods.setdefault(holder, {})[ref] = None
                if metric not in BOUNDS:
                    continue  # not read: neither kept nor counted
                reason = check(metric, s.value)
                if reason is not None:
                    dropped[(metric, reason)] += 1
                    continue
                dev.put(metric, s.value)
        devices = []
        out = []
        xids = []
        for dev in sorted(devs.values(), key=lambda d: (d.index, d.uuid)):
            info, sample = _build(dev, host, ts, dropped)
            devices.append(info)
            out.append(sample)
            code = dev.values.get(XID)
            if code is not None and 0 < code < 2**31 and code == int(code):
                if self._last_xid.get(dev.uuid) != int(code):
                    xids.append((dev.uuid, int(code)))
                self._last_xid[dev.uuid] = int(code)
        return DcgmReading(
            tuple(devices),
            tuple(out),
            tuple(xids),
            hostname,
            node=node,
            dropped=dict(dropped),
            devices_skipped=len(skipped),
            pods={uuid: tuple(refs) for uuid, refs in pods.items()},
        )

    def _device(
        self,
        devs: dict[str, _Dev],
        parents: dict[str, str],
        labels: Mapping[str, str],
        host: str,
        metric: str,
        skipped: set[str],
    ) -> _Dev | None:
        gpu = labels.get("gpu")
        found = label(labels, UUID_LABELS)
        if found is None and not gpu:
            return None  # a series naming no GPU (Datadog's fixture has such lines): not a device
        parent_uuid = (found or f"dcgm-{host}-gpu{gpu}")[:200]
        instance = labels.get("GPU_I_ID")
        mig = bool(instance) and metric not in PARENT_ONLY
        uuid = f"MIG-{parent_uuid}/{(instance or '')[:16]}" if mig else parent_uuid
        dev = devs.get(uuid)
        if dev is not None:
            return dev
        if len(devs) >= self.max_devices:
            if len(skipped) < 1_000_000:
                skipped.add(uuid)
            return None
        index = _index(gpu, len(parents))
        model = (label(labels, MODEL_LABELS) or "NVIDIA GPU")[:200]
        if mig:
            profile = (labels.get("GPU_I_PROFILE") or f"instance {instance}")[:64]
            name = f"{model} MIG {profile}"
        else:
            name = model
        parents.setdefault(parent_uuid, parent_uuid)
        dev = devs[uuid] = _Dev(uuid=uuid, index=index, name=name)
        return dev


def _build(
    dev: _Dev, host: str, ts: float, dropped: Counter[tuple[str, str]]
) -> tuple[DeviceInfo, DeviceSample]:
    v = dev.values
    fields: dict[str, float | None] = {}
    for metric, (attr, factor) in FIELDS.items():
        value = v.get(metric)
        fields[attr] = None if value is None else value * factor
    if fields["gpu_util"] is None and GR_ACTIVE in v:
        fields["gpu_util"] = v[GR_ACTIVE] * 100.0
    used = v.get("DCGM_FI_DEV_FB_USED")
    free = v.get(FB_FREE)
    total_mib = v.get(FB_TOTAL)
    if total_mib is None and used is not None and free is not None:
        total_mib = used + free + v.get(FB_RESERVED, 0.0)
    if used is not None and total_mib is not None and used > total_mib:
        dropped[("DCGM_FI_DEV_FB_USED", IMPOSSIBLE)] += 1  # more used than the GPU has
        fields["mem_used"] = None
    limit = v.get(POWER_LIMIT)
    power = fields["power_w"]
    if power is not None and limit is not None and power > 2 * limit:
        # Boards briefly exceed their limit, never twice it: a reading of another unit.
        dropped[("DCGM_FI_DEV_POWER_USAGE", IMPOSSIBLE)] += 1
        fields["power_w"] = None
    info = DeviceInfo(
        host=host,
        index=dev.index,
        uuid=dev.uuid,
        name=dev.name,
        memory_total=int(total_mib * MIB) if total_mib else 0,
        power_limit_w=limit,
    )
    sample = DeviceSample(
        uuid=dev.uuid,
        index=dev.index,
        ts=ts,
        gpu_util=fields["gpu_util"],
        mem_util=fields["mem_util"],
        mem_used=_int(fields["mem_used"]),
        power_w=fields["power_w"],
        energy_mj=_int(fields["energy_mj"]),
        temp_c=fields["temp_c"],
        sm_clock_mhz=fields["sm_clock_mhz"],
        mem_clock_mhz=fields["mem_clock_mhz"],
    )
    return info, sample


def _int(v: float | None) -> int | None:
    return None if v is None else int(v)


def describe_dropped(dropped: Mapping[tuple[str, str], int]) -> list[str]:
    """One phrase per (metric, reason), for a message: "3 DCGM_FI_DEV_POWER_USAGE (...)"."""
    return [f"{n} {metric} ({reason})" for (metric, reason), n in sorted(dropped.items())]
