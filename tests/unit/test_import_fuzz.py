"""Hostile nvidia-smi logs: a clean ImportFormatError or readings and named row errors, never a
crash, a hang or unbounded memory. 10,000 generated files, near-valid and garbage mixed."""

from __future__ import annotations

import io
import math
import os
import random
import time
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.importers.lines import read_lines
from costmeter.importers.model import GpuReading, ImportFormatError, RowError
from costmeter.importers.nvidia_smi_csv import BOUNDS, NvidiaSmiCsv

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10000")),
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HEADERS = [
    "timestamp",
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "utilization.gpu [%]",
    "utilization.memory [%]",
    "memory.used [MiB]",
    "memory.total [MiB]",
    "memory.free [MiB]",
    "power.draw [W]",
    "power.limit [W]",
    "clocks.current.sm [MHz]",
    "temperature.gpu",
    "pstate",
    "utilization.gpu",
    "bogus.column",
]
CELLS = [
    "2024/01/31 12:34:56.789",
    "2024/02/30 25:61:61.000",
    "1764189075",
    "1764189075123",
    "2025-09-24T03:48:33.493Z",
    "9999-12-31T23:59:59+14:00",
    "87 %",
    "250.12 W",
    "40960 MiB",
    "1410 MHz",
    "[N/A]",
    "N/A",
    "[Not Supported]",
    "nan",
    "inf",
    "-1",
    "1e308",
    "1_000",
    "0",
    "3",
    "4097",
    "GPU-aaaa",
    "NVIDIA A100",
    "P0",
    '"quoted, comma"',
    '"',
    "",
]
JUNK = ' ,.%/:[]-0123456789eWMiBNAZT"x\x00\xff\u2028\r\t'


def _cell(rnd: random.Random) -> str:
    pick = rnd.random()
    if pick < 0.6:
        return rnd.choice(CELLS)
    if pick < 0.8:
        return str(rnd.randint(-(2**70), 2**70))
    if pick < 0.9:
        return repr(rnd.uniform(-1e6, 1e6))
    return "".join(rnd.choice(JUNK) for _ in range(rnd.randint(0, 12)))


def _good(column: str, rnd: random.Random, tick: int) -> str:
    """A value nvidia-smi could have written in that column."""
    name = column.split(" [")[0]
    unit = " " + column.split("[")[1].rstrip("]") if "[" in column and rnd.random() < 0.7 else ""
    if name == "timestamp":
        return f"2024/01/31 12:{tick // 60 % 60:02d}:{tick % 60:02d}.{rnd.randint(0, 999):03d}"
    if name == "index":
        return str(rnd.randint(0, 3))
    if name == "uuid":
        return f"GPU-{rnd.randint(0, 3)}"
    if name.startswith("utilization"):
        return f"{rnd.randint(0, 100)}{unit}"
    if name.startswith("memory"):
        return f"{rnd.randint(0, 81920)}{unit}"
    if name.startswith("power"):
        return f"{rnd.uniform(0, 700):.2f}{unit}"
    if name.startswith("clocks"):
        return f"{rnd.randint(0, 2000)}{unit}"
    if name == "temperature.gpu":
        return str(rnd.randint(20, 90))
    return rnd.choice(["P0", "NVIDIA A100-SXM4-80GB", "00000000:07:00.0", "[N/A]"])


def make_log(rnd: random.Random, garbage: bool) -> str:
    """A near-valid log (header, rows with some cells mutated, repeated headers) or garbage."""
    if garbage:
        return "".join(rnd.choice(JUNK + "\n") for _ in range(rnd.randint(0, 200)))
    columns = [rnd.choice(HEADERS) for _ in range(rnd.randint(0, 6))]
    if rnd.random() < 0.9:
        columns += ["timestamp", "utilization.gpu [%]"]
        rnd.shuffle(columns)
    header = ", ".join(columns) if rnd.random() < 0.9 else _cell(rnd)
    lines = [header]
    mutate = rnd.choice([0.0, 0.05, 0.3])
    for tick in range(rnd.randint(0, 12)):
        if rnd.random() < 0.05:
            lines.append(header)
            continue
        if rnd.random() < 0.05:
            lines.append(", ".join(_cell(rnd) for _ in range(rnd.randint(0, 10))))
            continue
        cells = [_cell(rnd) if rnd.random() < mutate else _good(c, rnd, tick) for c in columns]
        lines.append(", ".join(cells))
    return "\n".join(lines)


def _check(text: str) -> None:
    parser = NvidiaSmiCsv(host="fuzz")
    data_lines = 0
    readings = errors = 0
    try:
        for lineno, line in read_lines(io.BytesIO(text.encode("utf-8", "surrogatepass"))):
            if line is None:
                continue
            out = parser.feed(lineno, line)
            if line.strip():
                data_lines += 1
            if isinstance(out, GpuReading):
                readings += 1
                s = out.sample
                assert math.isfinite(s.ts)
                for name, value in (("gpu_util", s.gpu_util), ("power", s.power_w)):
                    if value is not None:
                        lo, hi = BOUNDS[name]
                        assert lo <= value <= hi
            elif isinstance(out, RowError):
                errors += 1
                assert out.line == lineno and out.message
    except ImportFormatError as err:
        assert str(err)  # a sentence for the user, raised on the first line only
        assert readings == 0 and errors == 0
        return
    # Every non-blank line is a reading, an error, the header or a repeated header.
    assert readings + errors + parser.repeated_headers + 1 >= data_lines >= readings + errors


@FUZZ
@given(st.integers(min_value=0, max_value=2**64), st.booleans())
def test_fuzzed_logs_never_crash(seed: int, garbage: bool) -> None:
    # Hypothesis draws the seed; Python's generator then builds the file (drawing every cell
    # through Hypothesis cost ~3 ms an example, too slow for 10,000 on this machine).
    _check(make_log(random.Random(seed), garbage))


def test_a_huge_line_without_newlines_stays_in_bounded_memory() -> None:
    blob = io.BytesIO(b"timestamp, utilization.gpu\n" + b"1" * 50_000_000 + b"\n1764189075, 5\n")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = list(read_lines(blob))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == [(1, "timestamp, utilization.gpu"), (2, None), (3, "1764189075, 5")]
    assert peak < 2_000_000, peak
    assert time.perf_counter() - t0 < 5
