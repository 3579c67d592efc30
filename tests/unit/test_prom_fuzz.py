"""Hostile /metrics pages: a clean PromParseError or a reading, never a crash, a hang or
unbounded memory. 10,000 generated pages per test: pages built from the series Costmeter
reads, real exporter pages (tests/data/exporters) with mutations, and arbitrary text/bytes."""

from __future__ import annotations

import random
import signal
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.service.remote import dcgm, node_exporter
from costmeter.service.remote.prom import MAX_BYTES, PromParseError, parse_metrics

#: 10,000 examples each; both take about 15 s together on a 2-core machine.
FUZZ = settings(
    max_examples=10_000,
    deadline=1000,  # one page, parsed and mapped twice, in under a second
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: No page may take longer than this (a hang is an infinite loop, not a slow deadline).
HANG_S = 10

DATA = Path(__file__).parent.parent / "data" / "exporters"
REAL_LINES = [
    line
    for name in ("aiperf-dcgm-single-gpu.txt", "dcgm-exporter-readme-kubernetes.txt")
    for line in (DATA / name).read_text(encoding="utf-8").splitlines()
] + [
    line
    for line in (DATA / "node_exporter-e2e-output.txt").read_text(encoding="utf-8").splitlines()
    if node_exporter.wanted(line.split("{")[0].split(" ")[-1]) or line.startswith("# TYPE node_")
][:400]

NAMES = [
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_TOTAL",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemFree_bytes",
    "node_disk_read_bytes_total",
    "node_network_receive_bytes_total",
    "node_rapl_package_joules_total",
    "node_uname_info",
    "go_info",
]
LABELS = ["gpu", "UUID", "uuid", "modelName", "Hostname", "hostname", "GPU_I_ID",
          "GPU_I_PROFILE", "pod", "namespace", "cpu", "mode", "device", "nodename", "index",
          "le", "quantile"]  # fmt: skip
SENTINELS = (
    [str(dcgm.INT32_BLANK + k) for k in range(4)]
    + [str(dcgm.INT64_BLANK + k) for k in range(4)]
    + [repr(dcgm.FP64_BLANK + k) for k in range(4)]
)
TYPES = ["counter", "gauge", "untyped"] * 5 + ["histogram", "summary", "x"]
SPECIAL_VALUES = ["NaN", "+Inf", "-Inf", "1e999", "0x10", "", "1_000", "--1", "1 2", "1e308"]
JUNK = ["", "{", "}", '"', ",", "=", " ", "#", "\\", "\r", "\t", "\x00", "\u2028", "\ufeff"]


def value(rng: random.Random) -> str:
    kind = rng.randrange(30)
    if kind == 4:
        return rng.choice(SPECIAL_VALUES)
    if kind == 0:
        return repr(rng.choice([rng.uniform(-1e20, 1e20), rng.random(), -0.0, 1e308, 5e-324]))
    if kind == 1:
        return str(rng.randint(-(2**80), 2**80))
    if kind == 2:
        return rng.choice(SENTINELS)
    return str(rng.randint(0, 1000))


def _pool() -> list[str]:
    """Characters to draw from, weighted towards those that matter to the format."""
    rng = random.Random(0)
    out = [*JUNK, "\n", "\\n", '\\"', "a", "0", "_"] * 40
    out += [chr(c) for c in range(32, 127)] * 4
    out += [chr(rng.randrange(0x80, 0x3000)) for _ in range(300)]
    out += [chr(c) for c in rng.sample(range(0xE000, 0x110000), 300)]
    return out


POOL = _pool()


def text(rng: random.Random, size: int) -> str:
    return "".join(rng.choices(POOL, k=rng.randrange(size + 1)))


def label_value(rng: random.Random) -> str:
    return (
        text(rng, 30)
        .replace("\n", "")
        .replace("\x00", "")
        .replace("\\", "\\\\")
        .replace('"', '\\"')
    )


def sample_line(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    labels = [(k, label_value(rng)) for k in rng.sample(LABELS, rng.randrange(7))]
    body = ",".join(f'{k}="{v}"' for k, v in labels)
    junk = rng.choice(JUNK) if rng.random() < 0.03 else ""
    return f"{name}{{{body}{junk}}} {value(rng)}"


def built_page(rng: random.Random) -> str:
    """Pages of the series Costmeter reads, with their comment lines, values and junk."""
    lines = []
    for _ in range(rng.randrange(41)):
        kind = rng.randrange(40)
        if kind >= 5:
            lines.append(sample_line(rng))
        elif kind == 2:
            lines.append(f"# TYPE {rng.choice(NAMES)} {rng.choice(TYPES)}")
        elif kind == 3:
            lines.append(f"# HELP {rng.choice(NAMES)} {text(rng, 20)}")
        elif kind == 4:
            lines.append(rng.choice(REAL_LINES))
        elif kind == 1:
            lines.append(text(rng, 40))
        else:
            lines.append("")
    return "\n".join(lines) + rng.choice(["", "\n", "\r\n", "\n# EOF\n"])


def mutated_real_page(rng: random.Random) -> str:
    """Lines of real exporter pages, each kept, cut, doubled, with a byte or value changed."""
    out = []
    for _ in range(rng.randrange(1, 31)):
        line = rng.choice(REAL_LINES)
        how = rng.randrange(40)
        if how == 1 and line:  # cut anywhere
            line = line[: rng.randrange(len(line))]
        elif how == 2 and line:  # one character replaced
            i = rng.randrange(len(line))
            line = line[:i] + text(rng, 1) + line[i + 1 :]
        elif how == 3 and " " in line:  # the value replaced
            line = line.rsplit(" ", 1)[0] + " " + value(rng)
        elif how == 4:  # a label spliced in
            line = line.replace("{", f'{{{rng.choice(LABELS)}="{label_value(rng)}",', 1)
        elif how == 5:
            out.append(line)  # doubled
        out.append(line)
    return "\n".join(out) + "\n"


#: Hypothesis draws a seed; the page is built from it (drawing every character through
#: Hypothesis costs ~10 ms a page, 40x the parsing being tested).
SEEDS = st.integers(min_value=0, max_value=2**64 - 1)


@contextmanager
def no_hang(seconds: int = HANG_S) -> Iterator[None]:
    def fail(signum: int, frame: object) -> None:
        raise AssertionError(f"a page took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _map_everything(text: str | bytes) -> None:
    """Parse; what parses must also map (both mappers, two scrapes for the node rates)."""
    with no_hang():
        try:
            samples = parse_metrics(text)
        except PromParseError as err:
            assert str(err)  # a sentence, not an empty message
            return
        assert sum(len(v) for v in samples.values()) <= len(text)  # bounded by the input
        gpus = dcgm.DcgmMapper()
        node = node_exporter.NodeExporterMapper()
        for ts in (1.0, 2.0):
            reading = gpus.map(samples, host="h", ts=ts)
            assert len(reading.devices) <= dcgm.MAX_DEVICES
            for s in reading.samples:
                assert s.gpu_util is None or 0.0 <= s.gpu_util <= 100.0
                assert s.energy_mj is None or s.energy_mj >= 0
                assert s.power_w is None or 0.0 <= s.power_w <= dcgm.MAX_GPU_POWER_W
            host = node.map(samples, host="h", ts=ts)
            if host.sample is not None:
                assert 0.0 <= host.sample.cpu_percent <= 100.0
                assert 0 <= host.sample.mem_used <= max(host.sample.mem_total, 0)


@FUZZ
@given(SEEDS)
def test_built_and_mutated_real_pages_never_crash(seed: int) -> None:
    rng = random.Random(seed)
    _map_everything(built_page(rng) if seed % 2 else mutated_real_page(rng))


@FUZZ
@given(SEEDS)
def test_any_text_or_bytes_never_crash(seed: int) -> None:
    rng = random.Random(seed)
    if seed % 2:
        _map_everything(rng.randbytes(rng.randrange(2001)))
    else:
        _map_everything(text(rng, 2000))


def test_a_page_over_the_limit_is_refused_at_once() -> None:
    big = b"DCGM_FI_DEV_GPU_UTIL 1\n" * (MAX_BYTES // 20)
    t0 = time.monotonic()
    try:
        parse_metrics(big)
    except PromParseError as err:
        assert "larger than" in str(err)
    else:
        raise AssertionError("a page over the limit was read")
    assert time.monotonic() - t0 < 2.0


def test_many_labels_on_one_line_stay_fast() -> None:
    labels = ",".join(f'l{i}="{"v" * 5}"' for i in range(4000))  # ~60 KB, under the line cap
    t0 = time.monotonic()
    samples = parse_metrics(f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} 5\n")
    assert len(samples["DCGM_FI_DEV_GPU_UTIL"][0].labels) == 4000
    assert time.monotonic() - t0 < 5.0


def test_memory_stays_bounded_on_the_largest_pages() -> None:
    """Worst cases near the limits: many short series, one long line per metric not read."""
    pages = [
        "".join(f'DCGM_FI_DEV_GPU_UTIL{{gpu="{i}",UUID="GPU-{i}"}} 1\n' for i in range(20_000)),
        'go_info{version="' + "x" * (8 * 1024 * 1024) + '"} 1\nDCGM_FI_DEV_GPU_UTIL 1\n',
    ]
    for text in pages:
        tracemalloc.start()
        try:
            with no_hang(30):
                samples = parse_metrics(text, keep=dcgm.wanted)
                dcgm.DcgmMapper().map(samples, host="h", ts=1.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # Parsed series cost a few hundred bytes each; never more than 200x the page.
        assert peak < 200 * len(text) + (64 << 20), (len(text), peak)


def test_unicode_digits_in_labels_are_not_numbers() -> None:
    """Found by this fuzz: str.isdigit() is true for "①" and "²"; int() then raised."""
    page = (
        'DCGM_FI_DEV_GPU_UTIL{gpu="①᱉",UUID="GPU-a"} 5\n'
        'node_cpu_seconds_total{cpu="²",mode="idle"} 1\n'
    )
    _map_everything(page)
    reading = dcgm.DcgmMapper().map(parse_metrics(page), host="h", ts=1.0)
    assert [(d.uuid, d.index) for d in reading.devices] == [("GPU-a", 0)]
