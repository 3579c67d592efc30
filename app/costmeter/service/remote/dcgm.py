"""dcgm-exporter's ``DCGM_FI_*`` series -> Costmeter devices and device samples.

A series is one GPU (labels ``gpu``, ``UUID``, ``modelName``, ``Hostname``) or, with MIG, one
GPU instance (``GPU_I_ID``, ``GPU_I_PROFILE``). A MIG instance becomes a device of its own: its
uuid is ``MIG-<parent UUID>/<GPU_I_ID>`` (the legacy MIG naming), its name
``<model> MIG <profile>``, its index the parent's. Power, energy and temperatures belong to the
physical GPU: on a MIG series they are given to the parent device, so energy is never counted
once per instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from costmeter.core.model import DeviceInfo, DeviceSample
from costmeter.service.remote.prom import Samples

PREFIX = "DCGM_FI_"
MIB = 1024 * 1024
MAX_ENERGY_MJ = 2**63 - 1

#: DCGM field -> (DeviceSample field, factor to Costmeter's unit). Percent fields are checked to
#: lie in 0..100; the rest must not be negative.
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
#: Read for the device record, not the sample.
FB_FREE = "DCGM_FI_DEV_FB_FREE"
FB_RESERVED = "DCGM_FI_DEV_FB_RESERVED"
POWER_LIMIT = "DCGM_FI_DEV_POWER_MGMT_LIMIT"
XID = "DCGM_FI_DEV_XID_ERRORS"
#: Graphics engine activity (0..1): a MIG instance's utilisation, which GPU_UTIL does not give.
GR_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
PERCENT = frozenset({"gpu_util", "mem_util"})
#: Physical-GPU quantities: taken from a MIG series for the parent only.
PARENT_ONLY = frozenset(
    {
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_MEM_CLOCK",
        POWER_LIMIT,
        XID,
    }
)


def wanted(name: str) -> bool:
    return name.startswith(PREFIX)


@dataclass
class _Dev:
    uuid: str
    index: int
    name: str
    values: dict[str, float] = field(default_factory=dict)

    def put(self, key: str, value: float) -> None:
        self.values.setdefault(key, value)  # the first series of a device wins


@dataclass(frozen=True, slots=True)
class DcgmReading:
    devices: tuple[DeviceInfo, ...]
    samples: tuple[DeviceSample, ...]
    #: (device uuid, XID code) for each XID error first seen in this reading.
    xids: tuple[tuple[str, int], ...]
    #: The ``Hostname`` label of the first series, if any.
    hostname: str | None


def _index(text: str | None, fallback: int) -> int:
    if text is not None and text.isdigit() and len(text) <= 3 and int(text) < 256:
        return int(text)
    return fallback


class DcgmMapper:
    """Maps one target's pages; remembers each device's last XID so an error counts once."""

    def __init__(self) -> None:
        self._last_xid: dict[str, int] = {}

    def map(self, samples: Samples, *, host: str, ts: float) -> DcgmReading:
        devs: dict[str, _Dev] = {}
        parents: dict[str, str] = {}  # parent UUID label -> device uuid
        hostname: str | None = None
        for raw_name, series in samples.items():
            if not wanted(raw_name):
                continue
            # prometheus_client names a counter's samples NAME_total even where the page
            # says NAME (dcgm-exporter's energy counter); DCGM field names never end so.
            metric = raw_name.removesuffix("_total")
            for s in series:
                labels = s.labels
                if hostname is None and labels.get("Hostname"):
                    hostname = labels["Hostname"][:255]
                dev = self._device(devs, parents, labels, host, metric)
                dev.put(metric, s.value)
        devices = []
        out = []
        xids = []
        for dev in sorted(devs.values(), key=lambda d: (d.index, d.uuid)):
            info, sample = _build(dev, host, ts)
            devices.append(info)
            out.append(sample)
            code = dev.values.get(XID)
            if code is not None and 0 < code < 2**31 and code == int(code):
                if self._last_xid.get(dev.uuid) != int(code):
                    xids.append((dev.uuid, int(code)))
                self._last_xid[dev.uuid] = int(code)
        return DcgmReading(tuple(devices), tuple(out), tuple(xids), hostname)

    @staticmethod
    def _device(
        devs: dict[str, _Dev],
        parents: dict[str, str],
        labels: Mapping[str, str],
        host: str,
        metric: str,
    ) -> _Dev:
        gpu = labels.get("gpu")
        parent_uuid = labels.get("UUID") or f"dcgm-{host}-gpu{gpu or '0'}"
        parent_uuid = parent_uuid[:200]
        index = _index(gpu, len(parents))
        model = (labels.get("modelName") or "NVIDIA GPU")[:200]
        instance = labels.get("GPU_I_ID")
        if instance and metric not in PARENT_ONLY:
            uuid = f"MIG-{parent_uuid}/{instance[:16]}"
            profile = (labels.get("GPU_I_PROFILE") or f"instance {instance}")[:64]
            name = f"{model} MIG {profile}"
        else:
            uuid = parent_uuid
            name = model
        parents.setdefault(parent_uuid, parent_uuid)
        dev = devs.get(uuid)
        if dev is None:
            dev = devs[uuid] = _Dev(uuid=uuid, index=index, name=name)
        return dev


def _build(dev: _Dev, host: str, ts: float) -> tuple[DeviceInfo, DeviceSample]:
    v = dev.values
    fields: dict[str, float | int | None] = {}
    for metric, (attr, factor) in FIELDS.items():
        fields[attr] = _checked(attr, v.get(metric), factor)
    if fields["gpu_util"] is None and GR_ACTIVE in v and 0.0 <= v[GR_ACTIVE] <= 1.0:
        fields["gpu_util"] = v[GR_ACTIVE] * 100.0
    used = v.get("DCGM_FI_DEV_FB_USED")
    free = v.get(FB_FREE)
    total = 0
    if used is not None and free is not None and used >= 0 and free >= 0:
        total = int((used + free + max(0.0, v.get(FB_RESERVED, 0.0))) * MIB)
    limit = v.get(POWER_LIMIT)
    info = DeviceInfo(
        host=host,
        index=dev.index,
        uuid=dev.uuid,
        name=dev.name,
        memory_total=total,
        power_limit_w=limit if limit is not None and 0 < limit < 1e6 else None,
    )
    sample = DeviceSample(
        uuid=dev.uuid,
        index=dev.index,
        ts=ts,
        gpu_util=_float(fields["gpu_util"]),
        mem_util=_float(fields["mem_util"]),
        mem_used=_int(fields["mem_used"]),
        power_w=_float(fields["power_w"]),
        energy_mj=_int(fields["energy_mj"]),
        temp_c=_float(fields["temp_c"]),
        sm_clock_mhz=_float(fields["sm_clock_mhz"]),
        mem_clock_mhz=_float(fields["mem_clock_mhz"]),
    )
    return info, sample


def _checked(attr: str, value: float | None, factor: float) -> float | None:
    if value is None:
        return None
    if attr == "temp_c":
        return value if -273.15 <= value <= 1000 else None
    if value < 0 or (attr in PERCENT and value > 100):
        return None
    out = value * factor
    if attr in ("mem_used", "energy_mj") and out > MAX_ENERGY_MJ:
        return None
    return out if out < 1e18 else None


def _float(v: float | int | None) -> float | None:
    return None if v is None else float(v)


def _int(v: float | int | None) -> int | None:
    return None if v is None else int(v)
