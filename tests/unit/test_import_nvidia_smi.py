"""The nvidia-smi CSV and Costmeter-export parsers, on hand-written and real logs."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from costmeter.importers.costmeter_csv import CostmeterSeriesCsv, metric_from_file_name
from costmeter.importers.lines import read_lines
from costmeter.importers.model import GpuReading, ImportFormatError, RowError, synthetic_uuid
from costmeter.importers.nvidia_smi_csv import (
    NvidiaSmiCsv,
    parse_columns_option,
    parse_lines,
    parse_text,
    parse_timestamp,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "nvidia_smi"
MIB = 1024 * 1024

# The layout nvidia-smi writes with --format=csv (units in the header and in every value).
WITH_UNITS = """\
timestamp, name, pci.bus_id, driver_version, pstate, index, uuid, utilization.gpu [%], \
utilization.memory [%], memory.total [MiB], memory.free [MiB], memory.used [MiB], power.draw [W], \
clocks.current.sm [MHz], temperature.gpu
2024/01/31 12:34:56.789, NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 535.104.05, P0, 0, \
GPU-aaaa, 87 %, 41 %, 40960 MiB, 960 MiB, 40000 MiB, 250.12 W, 1410 MHz, 61
2024/01/31 12:34:56.791, NVIDIA A100-SXM4-40GB, 00000000:0F:00.0, 535.104.05, P8, 1, \
GPU-bbbb, 0 %, 0 %, 40960 MiB, 40955 MiB, 5 MiB, [N/A], [Not Supported], 33
2024/01/31 12:34:57.790, NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 535.104.05, P0, 0, \
GPU-aaaa, 90 %, 45 %, 40960 MiB, 960 MiB, 40000 MiB, 260.00 W, 1410 MHz, 62
"""


def test_units_header_values_and_na_markers() -> None:
    readings, errors, parser = parse_text(WITH_UNITS, tz=UTC)
    assert errors == []
    assert [r.line for r in readings] == [2, 3, 4]
    first = readings[0].sample
    assert first.uuid == "GPU-aaaa" and first.index == 0
    assert first.ts == datetime(2024, 1, 31, 12, 34, 56, 789000, tzinfo=UTC).timestamp()
    assert (first.gpu_util, first.mem_util, first.power_w) == (87.0, 41.0, 250.12)
    assert first.mem_used == 40000 * MIB and first.sm_clock_mhz == 1410 and first.temp_c == 61
    idle = readings[1].sample
    assert idle.uuid == "GPU-bbbb" and idle.power_w is None and idle.sm_clock_mhz is None
    assert parser.devices["uuid GPU-aaaa"].memory_total == 40960 * MIB
    assert parser.devices["uuid GPU-aaaa"].name == "NVIDIA A100-SXM4-40GB"
    assert not parser.devices["uuid GPU-aaaa"].synthetic_uuid


def test_nounits_gives_the_same_readings() -> None:
    plain = WITH_UNITS.replace(" %", "").replace(" MiB", "").replace(" W", "").replace(" MHz", "")
    plain = plain.replace("[%]", "").replace("[MiB]", "").replace("[W]", "").replace("[MHz]", "")
    a, _, _ = parse_text(WITH_UNITS, tz=UTC)
    b, errors, _ = parse_text(plain, tz=UTC)
    assert errors == []
    assert [r.sample for r in a] == [r.sample for r in b]


def test_noheader_needs_columns_and_says_so() -> None:
    body = WITH_UNITS.split("\n", 1)[1]
    with pytest.raises(ImportFormatError, match="--columns"):
        parse_text(body)
    cols = parse_columns_option(
        "timestamp,name,pci.bus_id,driver_version,pstate,index,uuid,utilization.gpu,"
        "utilization.memory,memory.total,memory.free,memory.used,power.draw,clocks.sm,"
        "temperature.gpu"
    )
    readings, errors, _ = parse_text(body, tz=UTC, columns=cols)
    assert errors == [] and len(readings) == 3
    assert readings[0].sample.sm_clock_mhz == 1410  # clocks.sm is nvidia-smi's alias


def test_columns_must_name_the_required_fields() -> None:
    with pytest.raises(ImportFormatError, match=r"utilization\.gpu"):
        parse_columns_option("timestamp,power.draw")
    with pytest.raises(ImportFormatError, match="empty name"):
        parse_columns_option("timestamp,,utilization.gpu")


def test_header_without_utilization_is_refused_with_the_columns_it_has() -> None:
    text = "timestamp, power.draw [W]\n2024/10/30 18:42:33.189, 22.89 W\n"
    with pytest.raises(ImportFormatError, match=r"no utilization.gpu column \(it has: timestamp"):
        parse_text(text)


def test_bad_rows_are_named_by_line_and_the_rest_kept() -> None:
    text = WITH_UNITS + (
        "2024/01/31 12:34:58.790, NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 535.104.05, P0, 0, "
        "GPU-aaaa, 90 %, 45 %, 40960 MiB, 960 MiB, 40000 MiB, abc, 1410 MHz, 62\n"
        "2024/13/31 12:34:59.790, NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 535.104.05, P0, 0, "
        "GPU-aaaa, 90 %, 45 %, 40960 MiB, 960 MiB, 40000 MiB, 1 W, 1410 MHz, 62\n"
        "2024/01/31 12:35:00.790, only, three\n"
        "2024/01/31 12:35:01.790, NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 535.104.05, P0, 0, "
        "GPU-aaaa, 140 %, 45 %, 40960 MiB, 960 MiB, 40000 MiB, 1 W, 1410 MHz, 62\n"
        "2024/01/31 12:35:02.790, NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 535.104.05, P0, x, "
        "GPU-aaaa, 40 %, 45 %, 40960 MiB, 960 MiB, 40000 MiB, 1 W, 1410 MHz, 62\n"
    )
    readings, errors, _ = parse_text(text, tz=UTC)
    assert len(readings) == 3
    assert [str(e) for e in errors] == [
        "line 5 (power.draw 'abc' is not a number)",
        "line 6 (timestamp '2024/13/31 12:34:59.790' is not a date and time)",
        "line 7 (3 values where the columns are 15)",
        "line 8 (utilization.gpu '140 %' is out of range)",
        "line 9 (index 'x' is not a GPU index)",
    ]


def test_a_repeated_reading_of_one_gpu_is_a_row_error() -> None:
    lines = WITH_UNITS.splitlines()
    text = "\n".join([lines[0], lines[1], lines[1], *lines[2:]])
    readings, errors, _ = parse_text(text, tz=UTC)
    assert len(readings) == 3
    assert errors == [RowError(3, "a second reading of GPU 0 at '2024/01/31 12:34:56.789'")]


def test_repeated_header_lines_are_skipped() -> None:
    # The layout of a log appended to by one nvidia-smi call per second (header every time).
    header = "timestamp, index, name, utilization.gpu [%], memory.used [MiB], memory.total [MiB]"
    rows = [
        "2023/06/22 18:56:56.252, 0, NVIDIA GeForce RTX 2070, 22 %, 841 MiB, 8192 MiB",
        "2023/06/22 18:56:57.274, 0, NVIDIA GeForce RTX 2070, 24 %, 869 MiB, 8192 MiB",
    ]
    text = "\n".join([header, rows[0], header, rows[1]])
    readings, errors, parser = parse_text(text)
    assert errors == [] and len(readings) == 2 and parser.repeated_headers == 1


def test_timestamps_are_read_in_the_given_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    local = parse_timestamp("2024/07/01 12:00:00.000", berlin)
    assert local == datetime(2024, 7, 1, 10, 0, tzinfo=UTC).timestamp()
    offset = timezone(timedelta(hours=8))
    assert (
        parse_timestamp("2024/07/01 12:00:00", offset)
        == datetime(2024, 7, 1, 4, 0, tzinfo=UTC).timestamp()
    )
    # Zones written in the timestamp win over the option.
    assert (
        parse_timestamp("2025-09-08T17:26:50+08:00", berlin)
        == datetime(2025, 9, 8, 9, 26, 50, tzinfo=UTC).timestamp()
    )
    assert parse_timestamp("2025-09-24T03:48:33.493Z", berlin) == pytest.approx(
        datetime(2025, 9, 24, 3, 48, 33, 493000, tzinfo=UTC).timestamp()
    )
    assert parse_timestamp("1764189075", berlin) == 1764189075.0
    assert parse_timestamp("1764189075123", None) == pytest.approx(1764189075.123)
    for bad in ("", "yesterday", "2024/02/30 00:00:00", "0", "99999999999999999", "1800/01/01"):
        assert parse_timestamp(bad, None) is None


def test_gpus_without_uuid_get_a_stable_synthetic_one() -> None:
    text = "timestamp, index, utilization.gpu [%]\n1764189075, 0, 5 %\n1764189075, 1, 7 %\n"
    a, _, pa = parse_text(text, host="box")
    b, _, _ = parse_text(text, host="box")
    c, _, _ = parse_text(text, host="other")
    assert [r.sample.uuid for r in a] == [r.sample.uuid for r in b]
    assert a[0].sample.uuid != a[1].sample.uuid
    assert a[0].sample.uuid != c[0].sample.uuid
    assert a[0].sample.uuid == synthetic_uuid("box", "index 0", "")
    assert all(d.synthetic_uuid for d in pa.devices.values())


def test_gpu_model_names_every_gpu() -> None:
    text = "timestamp, utilization.gpu\n1764189075, 5\n"
    readings, _, parser = parse_text(text, gpu_model="NVIDIA H100 80GB HBM3")
    assert parser.devices["index 0"].name == "NVIDIA H100 80GB HBM3"
    assert readings[0].device.index == 0


def test_too_many_devices_are_refused() -> None:
    rows = "".join(f"1764189075, GPU-{i}, 5\n" for i in range(300))
    readings, errors, _ = parse_text("timestamp, uuid, utilization.gpu\n" + rows)
    assert len(readings) == 256 and len(errors) == 44
    assert "more than 256 GPUs" in errors[0].message


def test_lines_reader_bounds_long_and_binary_lines() -> None:
    data = b"\xef\xbb\xbfok\r\n" + b"x" * 100_000 + b"\nbad \xff\xfe\nlast"
    out = list(read_lines(io.BytesIO(data), max_chars=100))
    assert out == [(1, "ok"), (2, None), (3, None), (4, "last")]


# -- real logs -----------------------------------------------------------------------------------


def _parse_file(name: str, **kw: object) -> tuple[list[GpuReading], list[RowError], NvidiaSmiCsv]:
    parser = NvidiaSmiCsv(host="real", **kw)  # type: ignore[arg-type]
    with (DATA / name).open("rb") as f:
        lines = [(n, t) for n, t in read_lines(f) if t is not None]
    return parse_lines(lines, parser)


def test_real_nanogpt_log_with_its_own_header() -> None:
    name = "nanogpt_8gpu_train_nounits.csv"
    with pytest.raises(ImportFormatError, match=r"no utilization\.gpu column"):
        _parse_file(name)
    cols = ["timestamp", "index", "temperature.gpu", "utilization.gpu", "power.draw"]
    readings, errors, parser = _parse_file(name, columns=cols)
    assert errors == [] and len(readings) == 5112
    assert sorted(d.index for d in parser.devices.values()) == list(range(8))
    assert parser.notes and "own column names" in parser.notes[0]
    first = readings[0].sample
    assert (first.index, first.temp_c, first.gpu_util, first.power_w) == (0, 38, 100, 387.26)


@pytest.mark.parametrize("name", ["rpf_gpu_usage_epoch_a.csv", "rpf_gpu_usage_epoch_b.csv"])
def test_real_epoch_logs(name: str) -> None:
    readings, errors, parser = _parse_file(name)
    lines = (DATA / name).read_text().strip().splitlines()
    assert errors == [] and len(readings) == len(lines) - 1
    ts, used, total, util = (c.strip() for c in lines[1].split(","))
    assert readings[0].sample.ts == float(ts)
    assert readings[0].sample.mem_used == int(used) * MIB
    assert readings[0].sample.gpu_util == float(util)
    assert parser.devices["index 0"].memory_total == int(total) * MIB


# -- Costmeter's own export ------------------------------------------------------------------------


def test_export_file_names_carry_gpu_and_metric() -> None:
    assert metric_from_file_name("costmeter-GPU-5d8e9c1a-12a-power_w.csv") == (
        "GPU-5d8e9c1a-12a",
        "power_w",
    )
    assert metric_from_file_name("costmeter-abc-gpu_util (2).csv") == ("abc", "gpu_util")
    assert metric_from_file_name("costmeter-abc-bogus.csv") is None
    assert metric_from_file_name("gpu.csv") is None


def test_export_rows() -> None:
    parser = CostmeterSeriesCsv(host="h", metric="power_w", gpu="GPU-1")
    lines = [
        "ts,min,avg,max,resolution",
        "2024-05-01T12:00:00Z,100.0,150.5,200.0,1m",
        "2024-05-01T12:01:00Z,,,,1m",
        "2024-05-01T12:02:00.500Z,1,2,3,5m",
        "2024-05-01 12:03:00,1,2,3,raw",
        "2024-05-01T12:04:00Z,1,-2,3,raw",
    ]
    out = [parser.feed(n, t) for n, t in enumerate(lines, start=1)]
    assert out[0] is None
    assert isinstance(out[1], GpuReading) and out[1].sample.power_w == 150.5
    assert isinstance(out[2], GpuReading) and out[2].sample.power_w is None
    assert [o.message for o in out[3:] if isinstance(o, RowError)] == [
        "resolution '5m' is not raw, 1m or 1h",
        "ts '2024-05-01 12:03:00' has no time zone (exports are in UTC)",
        "avg '-2' is out of range",
    ]
    with pytest.raises(ImportFormatError, match="not a GPU series"):
        CostmeterSeriesCsv(host="h", metric="cpu_percent", gpu="x")
