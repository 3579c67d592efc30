"""dcgm-exporter's Kubernetes workloads as processes that Costmeter can charge.

With its pod mapping on (``--kubernetes``; the GPU Operator and the Helm chart turn it on),
dcgm-exporter labels each GPU's series with the ``namespace``, ``pod`` and ``container`` that
hold the GPU, as the kubelet's pod-resources API says. The page names no PID, yet "who pays"
works on processes, so each (namespace, pod, container) seen on a host becomes a synthetic
process of that host:

- ``pid``: ``-1 - (crc32("NAMESPACE/POD/CONTAINER") & 0x7fffffff)``. Negative, so it can never
  be a real PID (nothing offers to signal it, ``costmeter.service.processes``), and stable, so
  every scrape of the workload lands on one ``processes`` row (create time 0). Two workloads
  of one host whose names hash alike (about 1 in 2**31 per pair) would share a row, and the
  first one's owner.
- ``name``: the container (the pod where the label is empty); ``cmdline``: ``pod NS/POD``;
  user unknown (``?``): the page does not say which Unix user runs it.
- owner: ``Owner(pod=..., namespace=..., container=...)``. A label value that cannot be a
  Kubernetes name (control characters, longer than a name can be) is left out rather than cut
  (a cut name would be someone else's); with none left the owner is unknown and the use goes
  to "unattributed".
- on each GPU it holds: a ``GpuProcess`` with no memory and no SM figure, so a GPU shared by
  several workloads is split between them by count (the page gives no per-pod use).

They travel in ``Tick.processes`` rather than ``HostSample.processes``: a dcgm-exporter scraped
alone has no host sample (and inventing one would price CPUs nobody measured), and nothing
about the workloads' CPU use is known, so no CPU-side rows are written for them.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence

from costmeter.core.model import DeviceSample, GpuProcess, ProcessSample
from costmeter.core.owner import Owner
from costmeter.sampling.owner import clean_text
from costmeter.service.remote.dcgm import PodRef

#: What ``cmdline`` starts with for a workload process.
CMDLINE_PREFIX = "pod "
#: Kubernetes names: a pod's is a DNS subdomain (253 characters at most), a namespace's and a
#: container's a DNS label (63).
MAX_POD_CHARS = 253
MAX_LABEL_CHARS = 63


def workload_pid(ref: PodRef) -> int:
    """The synthetic PID of a workload: negative and the same on every scrape."""
    key = f"{ref.namespace}/{ref.pod}/{ref.container}".encode()
    return -1 - (zlib.crc32(key) & 0x7FFFFFFF)


def is_workload_pid(pid: int) -> bool:
    """True for a PID made by :func:`workload_pid` (real PIDs are never negative)."""
    return pid < 0


def workload_process(ref: PodRef) -> ProcessSample:
    """The process standing for one workload, with its owner."""
    pod = clean_text(ref.pod, MAX_POD_CHARS)
    namespace = clean_text(ref.namespace, MAX_LABEL_CHARS)
    container = clean_text(ref.container, MAX_LABEL_CHARS)
    where = f"{namespace}/{pod}" if namespace else pod
    return ProcessSample(
        pid=workload_pid(ref),
        create_time=0.0,
        name=container or pod or "?",
        cmdline=f"{CMDLINE_PREFIX}{where}" if where else "",
        user="?",
        cpu_percent=0.0,
        rss=0,
        cpu_time_s=0.0,
        owner=Owner(pod=pod, namespace=namespace, container=container),
    )


def attach(
    samples: Sequence[DeviceSample], pods: Mapping[str, Sequence[PodRef]]
) -> tuple[tuple[DeviceSample, ...], tuple[ProcessSample, ...]]:
    """The samples with each GPU's workloads as its processes, and those workloads' processes.

    ``pods``: device uuid -> the workloads dcgm-exporter saw on it (``DcgmReading.pods``).
    A workload on several GPUs is one process on each of them.
    """
    if not pods:
        return tuple(samples), ()
    processes: dict[int, ProcessSample] = {}
    out = []
    for sample in samples:
        refs = pods.get(sample.uuid, ())
        if not refs or sample.lost:
            out.append(sample)
            continue
        held = []
        for ref in refs:
            pid = workload_pid(ref)
            if pid not in processes:
                processes[pid] = workload_process(ref)
            held.append(GpuProcess(pid=pid, used_memory=None, sm_util=None))
        out.append(dataclasses.replace(sample, processes=tuple(held)))
    return tuple(out), tuple(processes.values())
