"""Costmeter's own CSV export of one GPU series (History page: "Export the visible range").

The file is ``ts,min,avg,max,resolution``: ISO 8601 UTC times and one metric of one GPU. The
metric is not in the file; the export names it ``costmeter-<gpu>-<metric>.csv``, so it is read
from the file name unless given. Each point's average becomes the value at that time (a rollup
point stands for its whole bucket, which starts at ``ts``).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from costmeter.core.model import DeviceSample
from costmeter.importers.model import (
    DeviceMeta,
    GpuReading,
    ImportFormatError,
    RowError,
    show,
    synthetic_uuid,
)
from costmeter.importers.nvidia_smi_csv import split_row

HEADER = ("ts", "min", "avg", "max", "resolution")
RESOLUTIONS = frozenset({"raw", "1m", "1h"})

#: Exported metric name -> (DeviceSample field, lowest, highest plausible value).
METRICS: dict[str, tuple[str, float, float]] = {
    "gpu_util": ("gpu_util", 0.0, 100.0),
    "mem_util": ("mem_util", 0.0, 100.0),
    "mem_used": ("mem_used", 0.0, 2.0**44),
    "power_w": ("power_w", 0.0, 10_000.0),
    "temp_c": ("temp_c", -50.0, 200.0),
    "sm_clock_mhz": ("sm_clock_mhz", 0.0, 100_000.0),
    "mem_clock_mhz": ("mem_clock_mhz", 0.0, 100_000.0),
}
_FILE_NAME = re.compile(r"^costmeter-(?P<gpu>.+)-(?P<metric>[a-z_]+?)(?: \(\d+\))?\.csv$")


def is_export_header(text: str) -> bool:
    return tuple(c.lower() for c in split_row(text)) == HEADER


def metric_from_file_name(name: str) -> tuple[str, str] | None:
    """``costmeter-GPU-5d8e9c1a-12a-power_w.csv`` -> (``GPU-5d8e9c1a-12a``, ``power_w``)."""
    m = _FILE_NAME.match(name)
    if m is None or m["metric"] not in METRICS:
        return None
    return m["gpu"], m["metric"]


class CostmeterSeriesCsv:
    """Turns the lines of one exported series into readings of one GPU."""

    def __init__(self, *, host: str, metric: str, gpu: str, gpu_model: str | None = None) -> None:
        if metric not in METRICS:
            known = ", ".join(METRICS)
            raise ImportFormatError(
                f"{metric!r} is not a GPU series Costmeter exports; give --metric as one of "
                f"{known}."
            )
        self.metric = metric
        self.field, self.lo, self.hi = METRICS[metric]
        key = f"export {gpu}"
        self.device = DeviceMeta(
            key=key,
            index=0,
            uuid=synthetic_uuid(host, key, ""),
            name=gpu_model or "",
            synthetic_uuid=True,
        )
        self.devices = {key: self.device}
        self.notes: list[str] = []
        self._first = True
        self._last: float | None = None

    def feed(self, line: int, text: str) -> GpuReading | RowError | None:
        if not text.strip():
            return None
        if self._first:
            self._first = False
            if not is_export_header(text):
                raise ImportFormatError(
                    f"Line {line} is not the header of a Costmeter export ({show(text, 80)})."
                )
            return None
        cells = split_row(text)
        if len(cells) != len(HEADER):
            return RowError(line, f"{len(cells)} values where the columns are {len(HEADER)}")
        stamp, _lo, avg, _hi, resolution = cells
        if resolution not in RESOLUTIONS:
            return RowError(line, f"resolution {show(resolution)} is not raw, 1m or 1h")
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            return RowError(line, f"ts {show(stamp)} is not an ISO 8601 time")
        if moment.tzinfo is None:
            return RowError(line, f"ts {show(stamp)} has no time zone (exports are in UTC)")
        ts = moment.timestamp()
        if self._last is not None and ts == self._last:
            return RowError(line, f"a second point at {show(stamp)}")
        self._last = ts
        value: float | None = None
        if avg:
            try:
                value = float(avg)
            except ValueError:
                return RowError(line, f"avg {show(avg)} is not a number")
            if not self.lo <= value <= self.hi:  # also False for NaN
                return RowError(line, f"avg {show(avg)} is out of range")
        stored: float | int | None = value
        if value is not None and self.field == "mem_used":
            stored = round(value)  # bytes
        changes: dict[str, Any] = {self.field: stored}
        sample = dataclasses.replace(DeviceSample(uuid=self.device.uuid, index=0, ts=ts), **changes)
        return GpuReading(line, self.device, sample)
