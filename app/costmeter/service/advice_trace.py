"""Load the public GenAI serving trace (Alibaba clusterdata, ``cluster-trace-v2026-GenAI``) into
a store, so the advice rules can be measured on production serving replicas.

The trace gives, per Kubernetes pod (``container_ip``, hashed) and about once a minute, the
GPU's utilisation (``pod_gpu_duty_cycle_anon.csv``) and the GPU memory used
(``pod_gpu_memory_used_bytes_anon.csv``): what an exporter gives, with no process view and no
power. Each pod becomes a host with one GPU. The trace does not name the GPU model; the caller
says which (``model``, ``memory_total``). Its terms allow research and study use but grant no
redistribution, so the project ships none of it: read it from where the user put it.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import tarfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import DeviceInfo, DeviceSample, HostInfo, Interval, Tick
from costmeter.store import RetentionPolicy, Writer

GIB = 1024**3
UTIL_FILE = "pod_gpu_duty_cycle_anon"
MEM_FILE = "pod_gpu_memory_used_bytes_anon"
#: Keep every resolution forever: the trace's timestamps are years in the past.
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)


class TraceError(ValueError):
    """The trace files are missing or not what this loader reads; the message says which."""


@dataclass(frozen=True, slots=True)
class Pod:
    """One pod's GPU: utilisation (%) and memory used (bytes) by time, oldest first."""

    key: str
    util: tuple[tuple[float, float], ...]
    mem: tuple[tuple[float, int], ...]

    @property
    def start(self) -> float:
        return min(self.util[0][0], self.mem[0][0]) if self.mem else self.util[0][0]

    @property
    def end(self) -> float:
        return max(self.util[-1][0], self.mem[-1][0]) if self.mem else self.util[-1][0]


def _open_rows(directory: Path, stem: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of ``stem``.csv, or of the CSV inside ``stem``.tar.gz (as the repository ships it),
    with "file:line" for error messages."""
    plain = directory / f"{stem}.csv"
    packed = directory / f"{stem}.tar.gz"
    if not plain.is_file() and not packed.is_file():
        raise TraceError(
            f"Neither {plain.name} nor {packed.name} is in {directory}: download them from "
            "github.com/alibaba/clusterdata, folder cluster-trace-v2026-GenAI."
        )
    source = plain if plain.is_file() else packed
    try:
        if source is plain:
            with plain.open(newline="", encoding="utf-8") as fh:
                yield from _rows(plain.name, fh)
            return
        with tarfile.open(packed, "r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(".csv")), None)
            raw = tar.extractfile(member) if member is not None else None
            if raw is None:
                raise TraceError(f"{packed} holds no CSV file.")
            yield from _rows(packed.name, io.TextIOWrapper(raw, encoding="utf-8", newline=""))
    except (OSError, EOFError, tarfile.TarError, UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(f"{source} could not be read: {exc}") from exc


def _rows(name: str, text: Iterable[str]) -> Iterator[tuple[str, dict[str, str]]]:
    for n, row in enumerate(csv.DictReader(text), start=2):
        yield f"{name}:{n}", row


def _number(where: str, row: dict[str, str], field: str) -> float:
    raw = row.get(field)
    if raw is None:
        raise TraceError(f"{where}: no '{field}' column (columns: {', '.join(row)}).")
    try:
        value = float(raw)
    except ValueError:
        raise TraceError(f"{where}: '{field}' is {raw!r}, not a number.") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"{where}: '{field}' is {raw!r}; expected a number of at least 0.")
    return value


def _series(rows: Iterable[tuple[str, dict[str, str]]]) -> dict[str, dict[float, float]]:
    out: dict[str, dict[float, float]] = defaultdict(dict)
    for where, row in rows:
        key = (row.get("container_ip") or "").strip()
        if not key or key in ("None", "NULL"):
            continue  # the trace marks samples of no container so; they belong to no GPU
        out[key][_number(where, row, "timestamp_anon")] = _number(where, row, "value")
    return out


def read_trace(directory: str | Path, *, limit: int | None = None) -> list[Pod]:
    """Every pod with utilisation samples (at most ``limit``, in key order), from the trace's
    two files in ``directory``."""
    folder = Path(directory)
    if not folder.is_dir():
        raise TraceError(f"{folder} is not a folder.")
    util = _series(_open_rows(folder, UTIL_FILE))
    mem = _series(_open_rows(folder, MEM_FILE))
    for key, values in util.items():
        bad = [v for v in values.values() if v > 100.0]
        if bad:
            raise TraceError(f"{UTIL_FILE}: pod {key} has utilisation {bad[0]} % (over 100).")
    pods = []
    for key in sorted(util)[:limit]:
        u = tuple(sorted(util[key].items()))
        m = tuple((ts, int(v)) for ts, v in sorted(mem.get(key, {}).items()))
        pods.append(Pod(key, u, m))
    if not pods:
        raise TraceError(f"{folder}: the utilisation file has no pod with samples.")
    return pods


def write_store(
    pods: Iterable[Pod],
    db: str | Path,
    *,
    model: str = "NVIDIA L40S",
    memory_total: int = 48 * GIB,
) -> tuple[float, float]:
    """Record ``pods`` into the database ``db`` (created) as hosts "pod-<key>" with one GPU
    each, through the store's writer; returns the (start, end) of what was written."""
    pods = list(pods)
    end = max(p.end for p in pods)
    writer = Writer(
        db, clock=SimulatedClock(end), retention=KEEP_ALL, batch_ticks=5000, flush_interval=0.05
    )
    writer.start()
    try:
        for pod in pods:
            host = f"pod-{pod.key[:12]}"
            uuid = f"GPU-trace-{pod.key}"
            info = DeviceInfo(host, 0, uuid, model, memory_total)
            writer.register(HostInfo(host, 1, "unknown (trace)", 0), [info])
            for tick in _ticks(pod, host, uuid):
                writer.submit(tick, wait=True)
    finally:
        writer.stop()
    return min(p.start for p in pods), end


def _ticks(pod: Pod, host: str, uuid: str) -> Iterator[Tick]:
    mem = dict(pod.mem)
    util = dict(pod.util)
    times = sorted(set(util) | set(mem))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    step = sorted(gaps)[len(gaps) // 2] if gaps else 60.0
    prev: float | None = None
    for ts in times:
        # The first sample after a gap stands for no time (nothing is known about the gap).
        dt = 0.0 if prev is None or ts - prev > 3 * step else ts - prev
        prev = ts
        sample = DeviceSample(
            uuid=uuid, index=0, ts=ts, gpu_util=util.get(ts), mem_used=mem.get(ts)
        )
        yield Tick(
            ts=ts,
            host=host,
            host_sample=None,
            devices=(sample,),
            device_intervals={uuid: Interval(dt_s=dt, energy_j=None, energy_measured=False)},
        )
