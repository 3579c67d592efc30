"""Exporting a series, and the History page's Qt-free arithmetic (units, gaps, ranges, targets)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from costmeter.gui.history_data import (
    DEVICE_METRICS,
    HOST_METRICS,
    axis_scale,
    envelope,
    plot_arrays,
    preset_range,
    same_range,
    targets_from,
    y_range,
)
from costmeter.service.export import iso_utc, write_series
from costmeter.store.queries import DEVICE_SERIES, HOST_SERIES, Series
from costmeter.store.store import DeviceRecord, HostRecord

NAN = math.nan
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _rollup() -> Series:
    return Series(
        "power_w",
        "1m",
        [T0, T0 + 60, T0 + 120],
        [100.0, NAN, 90.5],
        [150.25, NAN, 95.0],
        [200.0, NAN, 99.0],
        bucket_s=60.0,
    )


def test_iso_utc_has_milliseconds_only_when_needed() -> None:
    assert iso_utc(T0) == "2023-11-14T22:13:20Z"
    assert iso_utc(T0 + 0.25) == "2023-11-14T22:13:20.250Z"


def test_csv_has_one_row_per_point_and_empty_cells_for_missing_values(tmp_path) -> None:
    path = tmp_path / "power.csv"
    assert write_series(path, _rollup(), device="GPU 0", start=T0, end=T0 + 180) == 3
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["ts", "min", "avg", "max", "resolution"],
        ["2023-11-14T22:13:20Z", "100.0", "150.25", "200.0", "1m"],
        ["2023-11-14T22:14:20Z", "", "", "", "1m"],
        ["2023-11-14T22:15:20Z", "90.5", "95.0", "99.0", "1m"],
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["power.csv"]  # no temporary file left


def test_json_describes_the_series_and_writes_null_for_missing_values(tmp_path) -> None:
    path = tmp_path / "power.JSON"
    write_series(path, _rollup(), device="host GPU 0: A100", start=T0, end=T0 + 180, unit="W")
    doc = json.loads(path.read_text())
    assert {k: doc[k] for k in ("device", "metric", "unit", "resolution", "start", "end")} == {
        "device": "host GPU 0: A100",
        "metric": "power_w",
        "unit": "W",
        "resolution": "1m",
        "start": "2023-11-14T22:13:20Z",
        "end": "2023-11-14T22:16:20Z",
    }
    assert doc["points"][1] == {"ts": "2023-11-14T22:14:20Z", "min": None, "avg": None, "max": None}
    assert doc["points"][2]["avg"] == 95.0


def test_a_failed_export_leaves_no_file(tmp_path) -> None:
    bad = Series("gpu_util", "raw", [T0], [1.0], [1.0, 2.0], [1.0])  # lengths disagree
    with pytest.raises(ValueError):
        write_series(tmp_path / "x.csv", bad, device="d", start=T0, end=T0 + 1)
    assert list(tmp_path.iterdir()) == []


def test_bytes_are_scaled_to_binary_units_and_percent_is_labelled() -> None:
    assert axis_scale("bytes", 40 * 2**30) == (2**30, "GiB")
    assert axis_scale("bytes", 512) == (1, "B")
    assert axis_scale("bytes/s", 3 * 2**20) == (2**20, "MiB/s")
    assert axis_scale("bytes", NAN) == (1, "B")
    assert axis_scale("percent", 50) == (1, "%")
    assert axis_scale("W", 300) == (1, "W")


def test_y_axis_starts_at_zero_for_amounts_only() -> None:
    by_name = {m.name: m for m in DEVICE_METRICS}
    assert y_range(by_name["gpu_util"], 40) == (0, 100)
    assert y_range(by_name["power_w"], 300) == pytest.approx((0, 315))
    assert y_range(by_name["temp_c"], 70) is None


def test_every_metric_the_store_knows_is_offered() -> None:
    assert [m.name for m in DEVICE_METRICS] == list(DEVICE_SERIES)
    assert [m.name for m in HOST_METRICS] == list(HOST_SERIES)


def test_missing_samples_break_the_line() -> None:
    raw = Series("gpu_util", "raw", [0.0, 1.0, 2.0, 3.0, 60.0, 61.0], *[[1.0] * 6] * 3)
    arrays = plot_arrays(raw)
    assert np.isnan(arrays.avg).sum() == 1
    assert arrays.x[4] == pytest.approx(31.5)  # the break sits between 3 s and 60 s
    rollup = Series("power_w", "1m", [0.0, 60.0, 300.0], *[[2048.0] * 3] * 3, bucket_s=60.0)
    arrays = plot_arrays(rollup, factor=1024)
    assert list(arrays.x[:2]) == [30.0, 90.0]  # bucket middles
    assert np.isnan(arrays.avg[2]) and arrays.avg[0] == 2.0


def test_presets_and_range_comparison() -> None:
    assert preset_range("1h", 10_000.0, None) == (6400.0, 10_000.0)
    assert preset_range("custom", 10_000.0, (0.0, 1.0)) is None
    assert preset_range("all", 10_000.0, None) is None
    start, end = preset_range("all", 10_000.0, (0.0, 86400.0))
    assert start < 0 < 86400 < end
    assert same_range((0.0, 1000.0), (1.0, 1001.0))
    assert not same_range((0.0, 1000.0), (50.0, 1050.0))


def test_targets_list_each_hosts_gpus_then_the_host() -> None:
    host = HostRecord(1, "box", 16, "cpu", 2**30, 8, None, None)
    gpu = DeviceRecord(
        7, 1, "box", 0, "GPU-1", "NVIDIA A100", None, None, None, None, frozenset(), None, None, 5.0
    )
    targets = targets_from([gpu], [host])
    assert [(t.kind, t.id, t.key, t.label) for t in targets] == [
        ("device", 7, "device:GPU-1", "box GPU 0: NVIDIA A100 (lost)"),
        ("host", 1, "host:box", "box (16 CPUs)"),
    ]


def test_the_band_is_coarsened_to_cells_and_keeps_its_gaps() -> None:
    x = np.arange(12.0)
    lo = np.array([5, 1, 5, 5, 5, 5, NAN, NAN, 5, 5, 5, 3], dtype=float)
    hi = lo + 10
    cx, clo, chi = envelope(x, lo, hi, step=2.0)
    assert list(cx) == [0, 2, 4, 6, 8, 10]  # one point per 2-unit cell
    # Each cell takes its neighbours' extremes too (a smooth edge), but a gap stays a gap.
    assert list(clo[:3]) == [1, 1, 5] and np.isnan(clo[3]) and np.isnan(chi[3])
    assert list(clo[4:]) == [3, 3] and list(chi[:3]) == [15, 15, 15]
    same = envelope(x, lo, hi, step=0.5)
    assert len(same[0]) == len(x)
