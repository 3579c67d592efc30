"""dcgm-exporter's pod labels become processes with owners: on pages from others (Datadog's and
wandb's test pages, dcgm-exporter's README; tests/data/exporters/PROVENANCE.md), served on
loopback, read by the collector and written to a real SQLite store."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from pathlib import Path

from test_exporter_pages import Exporter, collect, page, serve

from costmeter.config import RemoteHostConfig
from costmeter.core.clock import SystemClock
from costmeter.core.model import DeviceSample
from costmeter.core.owner import Owner
from costmeter.service.remote import RemoteCollector, dcgm, pods
from costmeter.service.remote.dcgm import PodRef
from costmeter.service.remote.prom import parse_metrics
from costmeter.store import Store, Writer

__all__ = ["serve"]  # the fixture, used by name below

A10G = "GPU-abc"  # Datadog shortened this GPU's UUID in its fixture
T4_460 = "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e"
T4_470 = "GPU-9ef1b6d0-3643-5dd7-b823-c0ec20dcf2d5"
GKE_FREE = "GPU-c601d117-58ff-cd30-ae20-529ab192ba51"
GKE_LOADTEST = "GPU-a7c8aa83-d112-b585-8456-5fc2f3e6d18e"
RAY = PodRef("ray-llm", "ray-1111111", "ray-worker")
LOADTEST = PodRef("default", "dcgm-loadtest", "dcgm-loadtest")


def gke_page(mem_copy: float = 12.5, temp: float = 41.0, power: float = 61.25) -> str:
    """wandb's GKE template with its six ``%f`` filled in (both GPUs get the same values)."""
    values = (mem_copy, mem_copy, temp, temp, power, power)
    return page("wandb-dcgm-gke-template.txt") % values


def mapped(text: str) -> dcgm.DcgmReading:
    return dcgm.DcgmMapper().map(parse_metrics(text, keep=dcgm.wanted), host="h", ts=1.0)


# -- the synthetic processes ----------------------------------------------------------------
def test_a_workload_pid_is_negative_stable_and_differs_by_container() -> None:
    pid = pods.workload_pid(RAY)
    assert pid < 0 and pid == pods.workload_pid(PodRef("ray-llm", "ray-1111111", "ray-worker"))
    # The documented formula: a release that changed it would split a workload's rows.
    assert pid == -1 - (zlib.crc32(b"ray-llm/ray-1111111/ray-worker") & 0x7FFFFFFF)
    assert pods.workload_pid(PodRef("ray-llm", "ray-1111111", "sidecar")) != pid
    assert pods.workload_pid(PodRef("ray-llm", "ray-1111112", "ray-worker")) != pid
    assert pods.is_workload_pid(pid) and not pods.is_workload_pid(1)


def test_a_workload_process_names_its_owner_and_nothing_it_does_not_know() -> None:
    proc = pods.workload_process(RAY)
    assert (proc.name, proc.cmdline, proc.user, proc.create_time) == (
        "ray-worker",
        "pod ray-llm/ray-1111111",
        "?",
        0.0,
    )
    assert proc.owner == Owner(pod="ray-1111111", namespace="ray-llm", container="ray-worker")
    bare = pods.workload_process(PodRef("", "job-7", ""))
    assert (bare.name, bare.cmdline) == ("job-7", "pod job-7")
    assert bare.owner == Owner(pod="job-7")


def test_a_label_no_kubernetes_name_can_be_is_left_out_not_cut() -> None:
    long_pod = "p" * (pods.MAX_POD_CHARS + 1)  # a cut name could be another workload's
    proc = pods.workload_process(PodRef("default", long_pod, "main"))
    assert proc.owner == Owner(namespace="default", container="main")
    nobody = pods.workload_process(PodRef("\n", long_pod, "c" * 64))
    assert nobody.owner is not None and not nobody.owner.known  # -> "unattributed"
    assert (nobody.name, nobody.cmdline) == ("?", "")
    # Kept whole up to the mapper's bound, so the length check above sees the real value.
    page_text = page("datadog-dcgm-fixture-label-remap.txt").replace(
        'pod="bar"', f'pod="{long_pod}"'
    )
    (ref,) = mapped(page_text).pods[T4_460]
    assert ref.pod == long_pod


def test_gpus_shared_by_workloads_are_split_by_count_and_one_workload_is_one_process() -> None:
    a, b = (DeviceSample(uuid=u, index=i, ts=1.0) for i, u in enumerate("ab"))
    lost = DeviceSample(uuid="c", index=2, ts=1.0, lost=True)
    other = PodRef("default", "notebook", "jupyter")
    samples, procs = pods.attach([a, b, lost], {"a": (RAY, other), "b": (RAY,), "c": (other,)})
    by_uuid = {s.uuid: s for s in samples}
    assert [p.pid for p in by_uuid["a"].processes] == [
        pods.workload_pid(RAY),
        pods.workload_pid(other),
    ]
    assert all(p.used_memory is None and p.sm_util is None for p in by_uuid["a"].processes)
    assert [p.pid for p in by_uuid["b"].processes] == [pods.workload_pid(RAY)]
    assert by_uuid["c"].processes == ()  # a lost GPU reports nothing
    assert sorted(p.pid for p in procs) == sorted(
        {pods.workload_pid(RAY), pods.workload_pid(other)}
    )
    assert pods.attach([a], {}) == ((a,), ())


# -- real pages ------------------------------------------------------------------------------
def test_datadogs_page_puts_the_ray_worker_on_the_a10g_only() -> None:
    reading = mapped(page("datadog-dcgm-fixture-metrics.txt"))
    # Its "dummy values" lines name no GPU: they make no device (before, a phantom GPU 0).
    assert {d.uuid for d in reading.devices} == {T4_460, T4_470, A10G}
    assert {d.uuid: d.name for d in reading.devices}[A10G] == "NVIDIA A10G"
    assert reading.pods == {A10G: (RAY,)}


def test_datadogs_label_remap_page_has_its_labels_after_the_exporters_own() -> None:
    reading = mapped(page("datadog-dcgm-fixture-label-remap.txt"))
    assert reading.pods == {T4_460: (PodRef("foo", "bar", "baz"),)}


def test_wandbs_gke_page_maps_the_loadtest_pod_and_leaves_the_other_gpu_free() -> None:
    reading = mapped(gke_page())
    assert reading.hostname == "gke-gke-dcgm-default-pool-eb7746d2-6vkd"
    assert reading.pods == {GKE_LOADTEST: (LOADTEST,)}  # GPU 0's empty labels: nobody


def test_the_readme_kubernetes_page_with_empty_labels_has_no_workload() -> None:
    assert mapped(page("dcgm-exporter-readme-kubernetes.txt")).pods == {}


def test_the_collector_gives_each_tick_the_workloads_and_their_gpus(
    serve: Callable[..., Exporter],
) -> None:
    exporter = serve(gke_page())
    run = collect([exporter.url], lambda s: len(s.ticks) >= 2)
    tick = run.sink.ticks[-1]
    (proc,) = tick.processes
    assert proc.pid == pods.workload_pid(LOADTEST)
    assert proc.owner == Owner(pod="dcgm-loadtest", namespace="default", container="dcgm-loadtest")
    held = {d.uuid: [p.pid for p in d.processes] for d in tick.devices}
    assert held == {GKE_FREE: [], GKE_LOADTEST: [proc.pid]}
    assert tick.host_sample is None  # dcgm-exporter alone: no CPU figures are invented


def test_workloads_are_stored_with_their_owners_and_charged_their_gpu(
    serve: Callable[..., Exporter], tmp_path: Path
) -> None:
    db = tmp_path / "pods.db"
    datadog = serve(page("datadog-dcgm-fixture-metrics.txt"))
    gke = serve(gke_page())
    writer = Writer(db, clock=SystemClock(), flush_interval=0.05)
    writer.start()
    start = time.time() - 1
    hosts = [RemoteHostConfig(name="", url=e.url, kind="prometheus") for e in (datadog, gke)]
    collector = RemoteCollector(writer, hosts, interval_s=0.1, cpu_tdp_w=100.0)
    collector.start()
    try:
        deadline = time.monotonic() + 15
        while min(datadog.hits, gke.hits) < 4:
            assert time.monotonic() < deadline, "the exporters were not scraped"
            time.sleep(0.05)
    finally:
        collector.stop()  # gives the store what the energy spreader held back
        writer.stop()
    with Store.open(db) as store:
        att = store.attribution(start, time.time() + 5)
    workloads = [r for r in att.processes.values() if pods.is_workload_pid(r.pid)]
    # One processes row per workload and host, however many scrapes: its pid is stable.
    assert sorted((r.host, r.name, r.cmdline) for r in workloads) == [
        ("424773df46e0", "ray-worker", "pod ray-llm/ray-1111111"),
        ("gke-gke-dcgm-default-pool-eb7746d2-6vkd", "dcgm-loadtest", "pod default/dcgm-loadtest"),
    ]
    assert {r.owner for r in workloads} == {
        Owner(pod="ray-1111111", namespace="ray-llm", container="ray-worker"),
        Owner(pod="dcgm-loadtest", namespace="default", container="dcgm-loadtest"),
    }
    charged = {(s.uuid, att.processes[s.proc_id].owner.namespace) for s in att.shares}
    assert charged == {(A10G, "ray-llm"), (GKE_LOADTEST, "default")}
    held = {s.uuid: s.busy_s + s.held_idle_s for s in att.shares}
    assert held[GKE_LOADTEST] > 0.2  # several 0.1 s scrapes, all the pod's: it is alone there
    assert GKE_FREE in {f.uuid for f in att.free}  # GPU 0 had nobody: machine idle


def test_a_pod_on_a_mig_instance_holds_that_instance_not_its_gpu() -> None:
    """As NVML lists a MIG GPU's processes on its MIG devices only (sampling/nvml.py): the pod
    labels of the power and energy series, whose values go to the parent GPU, name the
    instance too. (dcgm-exporter's MIG page layout, as test_prom_mapping builds it.)"""
    from test_prom_mapping import PARENT, dcgm_page

    text = dcgm_page()
    for profile, instance, pod in (("1g.5gb", "7", "small"), ("3g.20gb", "1", "large")):
        text = text.replace(
            f'GPU_I_PROFILE="{profile}",GPU_I_ID="{instance}"',
            f'GPU_I_PROFILE="{profile}",GPU_I_ID="{instance}",'
            f'namespace="mig",pod="{pod}",container="main"',
        )
    reading = mapped(text)
    assert reading.pods == {
        f"MIG-{PARENT}/7": (PodRef("mig", "small", "main"),),
        f"MIG-{PARENT}/1": (PodRef("mig", "large", "main"),),
    }
    samples, procs = pods.attach(reading.samples, reading.pods)
    held = {s.uuid: [p.pid for p in s.processes] for s in samples}
    assert held[PARENT] == [] and len(procs) == 2
