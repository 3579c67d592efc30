"""The CSV that ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits] -l N`` writes.

Any subset of columns that holds ``timestamp`` and ``utilization.gpu``, in any order, with or
without units ("250.12 W", "1234 MiB", "87 %"). Values nvidia-smi cannot read ("[N/A]", "N/A",
"[Not Supported]", "[Unknown Error]") become None. A header line repeated in the body (a log
appended to by several nvidia-smi runs) is skipped. Without a header the caller names the
columns (``columns``), in the order of the ``--query-gpu`` list that wrote the file.

Timestamps: nvidia-smi's "2024/01/31 12:34:56.789" is the local time of the machine that wrote
it, so it is read in ``tz`` (None: this machine's zone). ISO 8601 with an offset ("...Z",
"+08:00") and Unix epoch seconds (from ``date +%s``) carry their own zone.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from costmeter.core.model import DeviceSample
from costmeter.importers.model import (
    DeviceMeta,
    GpuReading,
    ImportFormatError,
    RowError,
    show,
    synthetic_uuid,
)

MIB = 1024 * 1024

#: nvidia-smi query names (and the aliases it accepts) -> the field they fill. Where several
#: names fill one field the earlier one in this table wins.
FIELDS: dict[str, str] = {
    "timestamp": "ts",
    "index": "index",
    "uuid": "uuid",
    "gpu_uuid": "uuid",
    "name": "name",
    "gpu_name": "name",
    "pci.bus_id": "bus",
    "gpu_bus_id": "bus",
    "utilization.gpu": "gpu_util",
    "utilization.memory": "mem_util",
    "memory.used": "mem_used",
    "memory.total": "mem_total",
    "memory.free": "mem_free",
    "power.draw": "power",
    "power.draw.average": "power",
    "power.draw.instant": "power",
    "enforced.power.limit": "power_limit",
    "power.limit": "power_limit",
    "power.default_limit": "power_limit",
    "temperature.gpu": "temp",
    "clocks.current.sm": "sm_clock",
    "clocks.sm": "sm_clock",
    "clocks.current.memory": "mem_clock",
    "clocks.mem": "mem_clock",
}
REQUIRED = ("timestamp", "utilization.gpu")

#: What nvidia-smi prints for a value it cannot read.
NOT_AVAILABLE = frozenset(
    {"", "[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]", "[gpu is lost]"}
)
#: Unit suffixes a value may carry (nvidia-smi's units; "MB" is what old drivers wrote for MiB).
UNITS = ("%", "MiB", "MB", "W", "MHz", "C")
_UNIT_SET = frozenset(UNITS)

#: (lowest, highest) plausible value per numeric field; outside it a row is malformed.
BOUNDS: dict[str, tuple[float, float]] = {
    "gpu_util": (0.0, 100.0),
    "mem_util": (0.0, 100.0),
    "mem_used": (0.0, 16 * 1024 * 1024),  # MiB: 16 TiB
    "mem_total": (0.0, 16 * 1024 * 1024),
    "mem_free": (0.0, 16 * 1024 * 1024),
    "power": (0.0, 10_000.0),
    "power_limit": (0.0, 10_000.0),
    "temp": (-50.0, 200.0),
    "sm_clock": (0.0, 100_000.0),
    "mem_clock": (0.0, 100_000.0),
}
#: Timestamps outside these years are taken as garbage, not as history.
YEARS = (1990, 2200)
#: More GPUs than this in one file is taken as a malformed file (and bounds memory).
MAX_DEVICES = 256

_HEADER_CELL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*(?: \[[^\]]{0,16}\])?$")
_SMI_TIME = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")
_EPOCH = re.compile(r"^\d{9,10}(?:\.\d{1,9})?$|^\d{13}$")


def split_row(text: str) -> list[str]:
    """Cells of one CSV line, stripped (nvidia-smi pads every value with a space)."""
    if '"' not in text:
        return [c.strip() for c in text.split(",")]
    try:
        return [c.strip() for c in next(csv.reader([text]))]
    except (csv.Error, StopIteration):
        return [c.strip() for c in text.split(",")]


def column_name(cell: str) -> str:
    """``utilization.gpu [%]`` -> ``utilization.gpu``."""
    return cell.split(" [", 1)[0].strip().lower()


def looks_like_header(cells: Sequence[str]) -> bool:
    """Every cell is a name (no digits first, no values) and one is a known nvidia-smi field."""
    if not cells or not all(_HEADER_CELL.match(c) for c in cells):
        return False
    return any(column_name(c) in FIELDS for c in cells)


def looks_like_names(cells: Sequence[str]) -> bool:
    """A header of some other tool's naming (``gpu_index,power_W``): names, no values."""
    return bool(cells) and all(_HEADER_CELL.match(c) for c in cells)


@dataclass
class Columns:
    """Which cell holds which field, from a header line or ``--columns``."""

    names: list[str]
    positions: dict[str, int] = field(default_factory=dict)
    #: (field, position, column name, lowest, highest) of every numeric column.
    numeric: list[tuple[str, int, str, float, float]] = field(default_factory=list)

    @classmethod
    def parse(cls, cells: Sequence[str], origin: str) -> Columns:
        names = [column_name(c) for c in cells]
        cols = cls(names=names)
        for name, target in FIELDS.items():
            if name in names and target not in cols.positions:
                cols.positions[target] = names.index(name)
        cols.numeric = [
            (target, at, names[at], *BOUNDS[target])
            for target, at in cols.positions.items()
            if target in BOUNDS
        ]
        missing = [r for r in REQUIRED if FIELDS[r] not in cols.positions]
        if missing:
            found = ", ".join(n for n in names if n) or "none"
            raise ImportFormatError(
                f"{origin} has no {' or '.join(missing)} column (it has: {found[:300]}). An "
                "nvidia-smi log needs both; if the file names its columns its own way, pass "
                "--columns with the nvidia-smi names in the file's order, e.g. "
                "--columns timestamp,index,temperature.gpu,utilization.gpu,power.draw"
            )
        return cols


def parse_columns_option(text: str) -> list[str]:
    """``--columns a,b,c``: nvidia-smi query names; unknown names are kept and ignored."""
    cells = [c.strip() for c in text.split(",")]
    if not all(cells):
        raise ImportFormatError(f"--columns {text!r} has an empty name; list them like a,b,c.")
    Columns.parse(cells, "--columns")
    return cells


def parse_timestamp(text: str, tz: tzinfo | None) -> float | None:
    """Seconds since the epoch, or None when ``text`` is no timestamp this reader knows."""
    m = _SMI_TIME.match(text)
    try:
        if m is not None:
            y, mo, d, h, mi, s, frac = m.groups()
            micro = int((frac or "0").ljust(6, "0"))
            moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)
        elif _EPOCH.match(text):
            value = float(text)
            return value / 1000.0 if len(text) == 13 else value
        elif len(text) >= 10 and text[4] == "-":
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None and tz is not None:
                moment = moment.replace(tzinfo=tz)
        else:
            return None
        if not YEARS[0] <= moment.year <= YEARS[1]:
            return None
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def parse_number(text: str) -> float | None:
    """A value with or without its unit; None for nvidia-smi's "not available" markers.

    Raises ValueError for anything else (the caller names the column and line).
    """
    try:
        value = float(text)
    except ValueError:
        if text.lower() in NOT_AVAILABLE:
            return None
        body, _, unit = text.rpartition(" ")  # nvidia-smi writes "250.12 W", "87 %"
        if not body or unit not in _UNIT_SET:
            raise
        value = float(body)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


class NvidiaSmiCsv:
    """Turns the lines of one nvidia-smi CSV log into readings and per-line errors.

    ``host`` and ``gpu_model`` name what the file does not say (a GPU without a uuid column
    gets a stable synthetic uuid from host, index and name; ``gpu_model`` names every GPU).
    ``columns`` gives the column order of a file without a header; a first line that only
    holds names is then taken as the file's own header and skipped.
    """

    def __init__(
        self,
        *,
        host: str,
        tz: tzinfo | None = None,
        columns: Sequence[str] | None = None,
        gpu_model: str | None = None,
        not_after: float | None = None,
    ) -> None:
        self.host = host
        self.tz = tz
        self.gpu_model = gpu_model
        self.not_after = not_after
        self.devices: dict[str, DeviceMeta] = {}
        #: Remarks for the user about how the file was read (not errors).
        self.notes: list[str] = []
        self.repeated_headers = 0
        self._given = list(columns) if columns is not None else None
        self._cols: Columns | None = (
            Columns.parse(self._given, "--columns") if self._given is not None else None
        )
        self._header_text: str | None = None
        self._first = True
        self._last_ts: dict[str, float] = {}

    def feed(self, line: int, text: str) -> GpuReading | RowError | None:
        """One line of the file; None for lines that carry no reading (blank, header)."""
        if not text.strip():
            return None
        cells = split_row(text)
        if self._first:
            self._first = False
            if self._cols is not None:
                if looks_like_names(cells) and parse_timestamp(cells[0], self.tz) is None:
                    self._header_text = text.strip()
                    self.notes.append(
                        f"line {line} holds the file's own column names; --columns was used instead"
                    )
                    return None
            elif looks_like_header(cells):
                self._cols = Columns.parse(cells, f"The header on line {line}")
                self._header_text = text.strip()
                return None
            else:
                raise ImportFormatError(
                    f"Line {line} is not an nvidia-smi header ({show(text, 80)}). A log "
                    "written with --format=csv,noheader has no column names: pass --columns "
                    "with the --query-gpu list that wrote it, e.g. "
                    "--columns timestamp,index,name,utilization.gpu,memory.used,power.draw"
                )
        if self._header_text is not None and text.strip() == self._header_text:
            self.repeated_headers += 1
            return None
        assert self._cols is not None
        return self._row(line, cells, self._cols)

    def _row(self, line: int, cells: list[str], cols: Columns) -> GpuReading | RowError:
        if len(cells) != len(cols.names):
            return RowError(line, f"{len(cells)} values where the columns are {len(cols.names)}")
        pos = cols.positions
        stamp = cells[pos["ts"]]
        ts = parse_timestamp(stamp, self.tz)
        if ts is None:
            return RowError(line, f"timestamp {show(stamp)} is not a date and time")
        if self.not_after is not None and ts > self.not_after:
            return RowError(line, f"timestamp {show(stamp)} is in the future")
        values: dict[str, float | None] = {}
        for target, at, name, lo, hi in cols.numeric:
            cell = cells[at]
            try:
                value = parse_number(cell)
            except ValueError:
                return RowError(line, f"{name} {show(cell)} is not a number")
            if value is not None and not lo <= value <= hi:
                return RowError(line, f"{name} {show(cell)} is out of range")
            values[target] = value
        device = self._device(line, cells, pos, values)
        if isinstance(device, RowError):
            return device
        last = self._last_ts.get(device.key)
        if last is not None and ts == last:
            return RowError(line, f"a second reading of GPU {device.index} at {show(stamp)}")
        self._last_ts[device.key] = ts
        mem_used = values.get("mem_used")
        sample = DeviceSample(
            uuid=device.uuid,
            index=device.index,
            ts=ts,
            gpu_util=values.get("gpu_util"),
            mem_util=values.get("mem_util"),
            mem_used=None if mem_used is None else round(mem_used * MIB),
            power_w=values.get("power"),
            temp_c=values.get("temp"),
            sm_clock_mhz=values.get("sm_clock"),
            mem_clock_mhz=values.get("mem_clock"),
        )
        return GpuReading(line, device, sample)

    def _device(
        self, line: int, cells: list[str], pos: dict[str, int], values: dict[str, float | None]
    ) -> DeviceMeta | RowError:
        index: int | None = None
        if "index" in pos:
            raw = cells[pos["index"]]
            if not raw.isdigit() or int(raw) > 4096:
                return RowError(line, f"index {show(raw)} is not a GPU index")
            index = int(raw)
        uuid = cells[pos["uuid"]] if "uuid" in pos else ""
        if uuid.lower() in NOT_AVAILABLE:
            uuid = ""
        bus = cells[pos["bus"]] if "bus" in pos else ""
        if uuid:
            key = f"uuid {uuid}"
        elif index is not None:
            key = f"index {index}"
        elif bus and bus.lower() not in NOT_AVAILABLE:
            key = f"bus {bus}"
        else:
            key = "index 0"
        device = self.devices.get(key)
        if device is None:
            if len(self.devices) >= MAX_DEVICES:
                return RowError(line, f"more than {MAX_DEVICES} GPUs in one file")
            in_file = cells[pos["name"]] if "name" in pos else ""
            if in_file.lower() in NOT_AVAILABLE:
                in_file = ""
            if index is None:
                index = len(self.devices)
            made_up = not uuid
            device = DeviceMeta(
                key=key,
                index=index,
                # The file's own name, not --gpu-model: importing again with --gpu-model finds
                # the same GPU and fills in what the first import could not (its energy).
                uuid=uuid or synthetic_uuid(self.host, key, in_file),
                name=self.gpu_model or in_file,
                synthetic_uuid=made_up,
            )
            self.devices[key] = device
        total = values.get("mem_total")
        if total is None and values.get("mem_used") is not None and values.get("mem_free"):
            total = (values["mem_used"] or 0.0) + (values["mem_free"] or 0.0)
        if total is not None:
            device.memory_total = max(device.memory_total or 0, round(total * MIB))
        limit = values.get("power_limit")
        if limit is not None:
            device.power_limit_w = limit
        return device


def parse_text(
    text: str,
    *,
    host: str = "imported",
    tz: tzinfo | None = None,
    columns: Sequence[str] | None = None,
    gpu_model: str | None = None,
) -> tuple[list[GpuReading], list[RowError], NvidiaSmiCsv]:
    """Parse a whole log held in memory (tests, small files)."""
    return parse_lines(
        enumerate(text.splitlines(), start=1),
        NvidiaSmiCsv(host=host, tz=tz, columns=columns, gpu_model=gpu_model),
    )


def parse_lines(
    lines: Iterable[tuple[int, str]], parser: NvidiaSmiCsv
) -> tuple[list[GpuReading], list[RowError], NvidiaSmiCsv]:
    readings: list[GpuReading] = []
    errors: list[RowError] = []
    for lineno, text in lines:
        out = parser.feed(lineno, text)
        if isinstance(out, GpuReading):
            readings.append(out)
        elif isinstance(out, RowError):
            errors.append(out)
    return readings, errors, parser
