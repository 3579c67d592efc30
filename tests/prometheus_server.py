"""A real Prometheus (Debian's ``prometheus`` 2.42, ``promtool``) on loopback, for tests, benches.

``PrometheusServer(tmp_path, scrape_urls, scrape_interval_s, tsdb)`` starts ``prometheus`` with
``--web.listen-address=127.0.0.1:0`` (Prometheus binds port 0 itself, so there is no race for a
port) and reads the port it got from its log line ``msg="Listening on" address=127.0.0.1:PORT``;
it waits for ``/-/ready`` (the TSDB, blocks included, is loaded by then). ``.url`` is
``http://127.0.0.1:PORT``. Leaving the ``with`` block sends SIGTERM, waits, and SIGKILLs after 10 s.
The console template flags are not needed: Debian's defaults (/etc/prometheus/consoles) exist and
an absent directory only breaks /consoles, which nobody here reads.

History: ``write_history_blocks(tsdb, text)`` runs ``promtool tsdb create-blocks-from
openmetrics`` into the storage directory *before* the server starts (the server loads blocks
only at start). Retention is 10 years, because Prometheus deletes blocks older than the retention
(counted back from the newest block) at start-up. Blocks may overlap each other and the head:
Prometheus 2.39+ merges overlapping blocks without a flag. promtool re-reads its whole input once
per 2-hour block, so write long histories in pieces of a few hours (``history_windows``).

``dcgm_history(gpus, hosts, start, end, step_s)`` makes that OpenMetrics text: dcgm-exporter's
``DCGM_FI_DEV_*`` series with the label set, model, driver, power limit and memory size of a real
dcgm-exporter page (Datadog's fixture in tests/data/exporters/, see its PROVENANCE.md), and
node_exporter's ``node_cpu_seconds_total`` and ``node_memory_*`` for the same hosts. Every series
carries ``instance`` and ``job`` as Prometheus adds them when scraping (dcgm ``HOST:9400``/``dcgm``,
node ``HOST:9100``/``node``). Values depend only on the GPU and the absolute time (a 4-hour
busy/idle cycle), so pieces written separately join up. The energy counter of the first GPU of
the first host restarts from 0 at every ``ENERGY_RESET_EVERY_S`` boundary (a driver reload; see
``energy_resets``); the other GPUs and the hosts' CPU counters count from a boot in the 30 days
before 2020 (so no other counter resets in any history after that).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

EXPORTERS = Path(__file__).parent / "data" / "exporters"
#: The real page whose label set, HELP texts and GPU figures the history copies.
DCGM_PAGE = EXPORTERS / "datadog-dcgm-fixture-metrics.txt"
NODE_PAGE = EXPORTERS / "node_exporter-e2e-output.txt"
PROMETHEUS = "prometheus"
PROMTOOL = "promtool"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
RETENTION = "3650d"
LISTENING = re.compile(r'msg="Listening on" address=(?:127\.0\.0\.1|\[::1\]|localhost):(\d+)')

#: The 4-hour busy/idle cycle of every GPU (shifted per GPU), in seconds.
CYCLE_S = 4 * 3600
BUSY_S = 150 * 60
#: The first GPU of the first host: its energy counter restarts at these boundaries of UTC time.
ENERGY_RESET_EVERY_S = 6 * 3600
BOOT_CYCLE_S = 30 * 86400
#: Every other counter counts from a boot up to BOOT_CYCLE_S before this (2020-01-01 UTC).
BOOT_EPOCH_S = 1_577_836_800
DCGM_PORT = 9400
NODE_PORT = 9100
CPUS_PER_HOST = 4
CPU_MODES = (("idle", 0.70), ("iowait", 0.01), ("system", 0.04), ("user", 0.25))
MEM_TOTAL = 512 * 2**30

#: The DCGM fields written, in page order; energy is the counter.
GPU_FIELDS = (
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT",
    "DCGM_FI_DEV_FB_TOTAL",
)
NODE_MEMORY = (
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemFree_bytes",
    "node_memory_Buffers_bytes",
    "node_memory_Cached_bytes",
)


def available() -> str | None:
    """None when ``prometheus`` and ``promtool`` are installed, else why not (a skip reason)."""
    missing = [name for name in (PROMETHEUS, PROMTOOL) if shutil.which(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian: apt-get install prometheus)"
    return None


class PrometheusError(RuntimeError):
    """Prometheus or promtool failed; the message carries the end of its log."""


class PrometheusServer:
    """Debian's ``prometheus`` on a free loopback port, storage under ``tmp_path``."""

    def __init__(
        self,
        tmp_path: Path,
        scrape_urls: Sequence[str] = (),
        scrape_interval_s: float = 1.0,
        tsdb: Path | None = None,
        *,
        honor_labels: bool = False,
    ) -> None:
        self.honor_labels = honor_labels
        self.workdir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=tmp_path))
        self.tsdb = tsdb if tsdb is not None else self.workdir / "data"
        self.scrape_urls = tuple(scrape_urls)
        self.scrape_interval_s = scrape_interval_s
        self.log_path = self.workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    available = staticmethod(available)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        why = available()
        if why:
            raise PrometheusError(why)
        self.tsdb.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        text = scrape_config(self.scrape_urls, self.scrape_interval_s, self.honor_labels)
        config.write_text(text, "utf-8")
        command = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.tsdb}",
            f"--storage.tsdb.retention.time={RETENTION}",
            "--web.listen-address=127.0.0.1:0",
            "--log.level=info",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self.port = self._wait_for_port()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self, doing: str) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise PrometheusError(
                f"prometheus exited ({self.process.returncode}) {doing}:\n{self.log_tail()}"
            )

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive("before listening")
            found = LISTENING.search(self.log_path.read_text("utf-8", errors="replace"))
            if found:
                return int(found.group(1))
            time.sleep(0.05)
        raise PrometheusError(f"prometheus did not listen in {START_TIMEOUT_S:.0f} s")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive("before it was ready")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass  # 503 while the TSDB loads, or not accepting yet
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready in {START_TIMEOUT_S:.0f} s")


def duration(seconds: float) -> str:
    """Prometheus's duration text, in whole milliseconds (``1500ms``)."""
    return f"{max(1, round(seconds * 1000))}ms"


def scrape_config(urls: Sequence[str], interval_s: float, honor_labels: bool = False) -> str:
    """prometheus.yml: one job per scraped URL (``job`` = ``scrape0``...). ``honor_labels``
    keeps a page's own ``instance``/``job`` labels (a federation-like page of many hosts)."""
    lines = [
        "global:",
        f"  scrape_interval: {duration(interval_s)}",
        f"  scrape_timeout: {duration(interval_s)}",
        "scrape_configs:",
    ]
    for index, url in enumerate(urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL to scrape: {url!r}")
        lines += [
            f"  - job_name: scrape{index}",
            f"    scheme: {parts.scheme}",
            f"    honor_labels: {'true' if honor_labels else 'false'}",
            f'    metrics_path: "{parts.path or "/metrics"}"',
            "    static_configs:",
            f'      - targets: ["{parts.netloc}"]',
        ]
    return "\n".join(lines) + "\n"


def write_history_blocks(tsdb: Path, openmetrics_text: str) -> None:
    """``promtool tsdb create-blocks-from openmetrics`` of ``openmetrics_text`` into ``tsdb``."""
    why = available()
    if why:
        raise PrometheusError(why)
    tsdb.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(suffix=".om", dir=tsdb.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(openmetrics_text)
        done = subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--quiet", name, str(tsdb)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(name)
    if done.returncode != 0:
        raise PrometheusError(f"promtool failed ({done.returncode}): {done.stderr[-2000:]}")


def history_windows(
    start: float, end: float, window_s: float = 2 * 3600
) -> Iterator[tuple[float, float]]:
    """``[start, end]`` cut at multiples of ``window_s`` (pieces promtool reads once each)."""
    low = start
    while low <= end:
        high = min(end, (math.floor(low / window_s) + 1) * window_s - 1e-3)
        yield low, high
        low = (math.floor(low / window_s) + 1) * window_s


# --- the generated history -------------------------------------------------------------------


@dataclass(frozen=True)
class GpuTemplate:
    """What the history copies from the real dcgm-exporter page."""

    labels: tuple[tuple[str, str], ...]  # the page's label names (and values) in page order
    helps: dict[str, str]
    power_limit_w: float
    fb_total_mib: int


@cache
def gpu_template() -> GpuTemplate:
    families = list(text_string_to_metric_families(DCGM_PAGE.read_text("utf-8")))
    helps = {family.name: family.documentation for family in families}
    power = next(f for f in families if f.name == "DCGM_FI_DEV_POWER_USAGE").samples[0]
    model = power.labels["modelName"]

    def same_model(name: str) -> float:
        family = next(f for f in families if f.name == name)
        return next(s.value for s in family.samples if s.labels.get("modelName") == model)

    return GpuTemplate(
        labels=tuple(power.labels.items()),
        helps=helps,
        power_limit_w=same_model("DCGM_FI_DEV_POWER_MGMT_LIMIT"),
        fb_total_mib=int(same_model("DCGM_FI_DEV_FB_TOTAL")),
    )


@cache
def node_helps() -> dict[str, str]:
    helps: dict[str, str] = {}
    for line in NODE_PAGE.read_text("utf-8").splitlines():
        if line.startswith("# HELP "):
            name, _, text = line[len("# HELP ") :].partition(" ")
            helps[name] = text
    return helps


def host_name(host: int) -> str:
    return f"gpu-node-{host:03d}"


def gpu_uuid(host: int, gpu: int) -> str:
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{host_name(host)}/{gpu}"))


def gpus_of(gpus: int, hosts: int) -> list[tuple[int, int]]:
    """(host, local index) of each GPU: spread over the hosts in turn, first hosts fuller."""
    hosts = max(1, min(hosts, gpus)) if gpus else max(1, hosts)
    per_host = math.ceil(gpus / hosts) if gpus else 0
    return [(n // per_host, n % per_host) for n in range(gpus)]


def energy_resets(start: float, end: float, step_s: float = 60.0) -> list[float]:
    """When the first GPU's energy counter restarts from 0 within ``[start, end]``."""
    every = max(2, round(ENERGY_RESET_EVERY_S / step_s))
    first = math.ceil(math.ceil(start / step_s) / every) * every
    last = math.floor(end / step_s)
    return [k * step_s for k in range(first, last + 1, every)]


class GpuSeries:
    """One GPU's values at step ``k`` (absolute: the time is ``k * step_s``)."""

    def __init__(self, serial: int, step_s: float, template: GpuTemplate) -> None:
        self.serial = serial
        self.step_s = step_s
        self.cycle = max(2, round(CYCLE_S / step_s))
        self.busy = max(1, round(BUSY_S / step_s))
        self.offset = (serial * 37) % self.cycle
        self.limit_mw = round(template.power_limit_w * 1000)
        self.fb_total = template.fb_total_mib
        self.reset_every = (
            max(2, round(ENERGY_RESET_EVERY_S / step_s))
            if serial == 0
            else max(2, round(BOOT_CYCLE_S / step_s))
        )
        self.boot_offset = 0 if serial == 0 else (serial * 7919) % self.reset_every
        self.epoch = None if serial == 0 else math.ceil(BOOT_EPOCH_S / step_s)
        powers = [self.power_mw(k) for k in range(self.cycle)]
        self.prefix = [0]
        for value in powers:
            self.prefix.append(self.prefix[-1] + value)

    # util and power depend on k only through the phase, so the power repeats every cycle
    # (what makes the energy counter's closed form exact)
    def util(self, k: int) -> int:
        phase = (k + self.offset) % self.cycle
        return 55 + (phase * 7 + self.serial) % 45 if phase < self.busy else 0

    def power_mw(self, k: int) -> int:
        util = self.util(k)
        if util == 0:
            phase = (k + self.offset) % self.cycle
            return self.limit_mw * 13 // 100 + ((phase + self.serial) % 8) * 25
        return self.limit_mw * (30 + util * 6 // 10) // 100

    def _power_sum(self, k: int) -> int:
        """Sum of power_mw over steps [0, k) (for k >= 0; the power repeats every cycle)."""
        whole, part = divmod(k, self.cycle)
        return whole * self.prefix[-1] + self.prefix[part]

    def energy_mj(self, k: int) -> int:
        """mJ since the last boot (or reset) before step k: sum of power x step."""
        boot = last_boot(k, self.reset_every, self.boot_offset, self.epoch)
        # sum over [boot, k) of power, both shifted by a whole number of cycles to stay >= 0
        lift = (-min(boot, 0) // self.cycle + 1) * self.cycle
        milliwatt_steps = self._power_sum(k + lift) - self._power_sum(boot + lift)
        return round(milliwatt_steps * self.step_s)

    def values(self, k: int) -> dict[str, float | int]:
        util = self.util(k)
        busy = util > 0
        used = self.fb_total * (45 + util // 2) // 100 if busy else 0
        return {
            "DCGM_FI_DEV_SM_CLOCK": 1590 if busy else 300,
            "DCGM_FI_DEV_MEM_CLOCK": 5000 if busy else 405,
            "DCGM_FI_DEV_GPU_TEMP": 52 + util // 4 if busy else 31 + (k + self.serial) % 3,
            "DCGM_FI_DEV_POWER_USAGE": self.power_mw(k) / 1000,
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": self.energy_mj(k),
            "DCGM_FI_DEV_GPU_UTIL": util,
            "DCGM_FI_DEV_MEM_COPY_UTIL": util // 3,
            "DCGM_FI_DEV_FB_FREE": self.fb_total - used,
            "DCGM_FI_DEV_FB_USED": used,
            "DCGM_FI_DEV_POWER_MGMT_LIMIT": self.limit_mw / 1000,
            "DCGM_FI_DEV_FB_TOTAL": self.fb_total,
        }


def last_boot(k: int, every: int, offset: int, epoch: int | None) -> int:
    """The step of the last boot at or before step ``k``: the one before ``epoch`` (in steps),
    or, with no epoch (or before it), the last of a boot every ``every`` steps."""
    if epoch is not None and k >= epoch - offset:
        return epoch - offset
    shifted = k + offset
    return shifted - shifted % every - offset


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{value}"' for name, value in pairs)
    return "{" + inner + "}"


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _steps(start: float, end: float, step_s: float) -> range:
    return range(math.ceil(start / step_s - 1e-9), math.floor(end / step_s + 1e-9) + 1)


def _stamp(k: int, step_s: float) -> str:
    moment = k * step_s
    return str(int(moment)) if float(moment).is_integer() else repr(moment)


def dcgm_history(gpus: int, hosts: int, start: float, end: float, step_s: float = 60) -> str:
    """OpenMetrics text of ``gpus`` GPUs on ``hosts`` hosts, one sample per step in [start, end].

    Samples fall on whole multiples of ``step_s`` (absolute time), so the text of two adjacent
    windows is the text of their union. Ends with ``# EOF``.
    """
    return "".join(history_lines(gpus, hosts, start, end, step_s))


def history_lines(
    gpus: int, hosts: int, start: float, end: float, step_s: float = 60
) -> Iterator[str]:
    if step_s <= 0 or end < start:
        raise ValueError("need step_s > 0 and end >= start")
    template = gpu_template()
    steps = _steps(start, end, step_s)
    stamps = [_stamp(k, step_s) for k in steps]
    placed = gpus_of(gpus, hosts)
    series = [GpuSeries(serial, step_s, template) for serial in range(gpus)]
    label_sets = []
    for host, local in placed:
        own = {
            "gpu": str(local),
            "UUID": gpu_uuid(host, local),
            "device": f"nvidia{local}",
            "Hostname": host_name(host),
        }
        pairs = [(name, own.get(name, value)) for name, value in template.labels]
        pairs += [("instance", f"{host_name(host)}:{DCGM_PORT}"), ("job", "dcgm")]
        label_sets.append(_labels(pairs))
    rows = {k: [gpu.values(k) for gpu in series] for k in steps} if gpus else {}
    for field in GPU_FIELDS:
        kind = "counter" if field == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" else "gauge"
        help_text = template.helps.get(field, "")
        if help_text:  # promtool refuses an empty HELP; the real page has some
            yield f"# HELP {field} {help_text}\n"
        yield f"# TYPE {field} {kind}\n"
        for serial, labels in enumerate(label_sets):
            for k, stamp in zip(steps, stamps, strict=True):
                yield f"{field}{labels} {_number(rows[k][serial][field])} {stamp}\n"
    host_count = len({host for host, _ in placed}) if placed else max(1, hosts)
    yield from _node_lines(host_count, steps, stamps, step_s)
    yield "# EOF\n"


def _node_lines(hosts: int, steps: range, stamps: list[str], step_s: float) -> Iterator[str]:
    helps = node_helps()
    boot_every = max(2, round(BOOT_CYCLE_S / step_s))
    epoch = math.ceil(BOOT_EPOCH_S / step_s)
    name = "node_cpu_seconds_total"
    yield f"# HELP {name[: -len('_total')]} {helps[name]}\n"
    yield f"# TYPE {name[: -len('_total')]} counter\n"
    for host in range(hosts):
        instance = f'instance="{host_name(host)}:{NODE_PORT}",job="node"'
        boot_offset = (host * 4513) % boot_every
        for cpu in range(CPUS_PER_HOST):
            for mode, share in CPU_MODES:
                labels = f'{{cpu="{cpu}",{instance},mode="{mode}"}}'
                for k, stamp in zip(steps, stamps, strict=True):
                    up_steps = k - last_boot(k, boot_every, boot_offset, epoch)
                    seconds = round(up_steps * step_s * share, 2)
                    yield f"{name}{labels} {_number(seconds)} {stamp}\n"
    for name in NODE_MEMORY:
        yield f"# HELP {name} {helps.get(name, 'Memory information field ' + name[12:] + '.')}\n"
        yield f"# TYPE {name} gauge\n"
        for host in range(hosts):
            labels = f'{{instance="{host_name(host)}:{NODE_PORT}",job="node"}}'
            for k, stamp in zip(steps, stamps, strict=True):
                yield f"{name}{labels} {_memory(name, host, k)} {stamp}\n"


def _memory(name: str, host: int, k: int) -> int:
    used = MEM_TOTAL // 100 * (20 + (k + host * 11) % 50)
    cached = MEM_TOTAL // 10
    return {
        "node_memory_MemTotal_bytes": MEM_TOTAL,
        "node_memory_MemAvailable_bytes": MEM_TOTAL - used,
        "node_memory_MemFree_bytes": MEM_TOTAL - used - cached,
        "node_memory_Buffers_bytes": MEM_TOTAL // 100,
        "node_memory_Cached_bytes": cached,
    }[name]


class ExporterPage:
    """A live text-format page of ``gpus`` GPUs on ``hosts`` hosts (dcgm-exporter and
    node_exporter series of every host on one page, each with its own ``instance``/``job``, as a
    federation endpoint serves them: scrape it with ``honor_labels``). The values are those of
    ``dcgm_history`` at the current ``step_s`` step, with no timestamps."""

    def __init__(self, gpus: int, hosts: int, step_s: float = 60.0) -> None:
        self.gpus, self.hosts, self.step_s = gpus, hosts, step_s
        self._step: int | None = None
        self._body = b""

    def body(self, now: float | None = None) -> bytes:
        k = math.floor((time.time() if now is None else now) / self.step_s)
        if k != self._step:
            at = k * self.step_s
            lines = history_lines(self.gpus, self.hosts, at, at, self.step_s)
            self._body = _text_format(lines).encode("utf-8")
            self._step = k
        return self._body


def _text_format(lines: Iterator[str]) -> str:
    """OpenMetrics history lines as Prometheus text format: timestamps and ``# EOF`` dropped,
    a counter's TYPE named as its samples are."""
    out = []
    for line in lines:
        if line.startswith("# EOF"):
            continue
        if line.startswith("# "):
            if line.startswith(("# HELP node_cpu_seconds ", "# TYPE node_cpu_seconds ")):
                line = line.replace("node_cpu_seconds ", "node_cpu_seconds_total ", 1)
            out.append(line)
        else:
            out.append(line.rsplit(" ", 1)[0] + "\n")
    return "".join(out)
