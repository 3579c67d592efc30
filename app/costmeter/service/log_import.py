"""``costmeter import``: a GPU log written elsewhere becomes history, like a remote host's.

The file is parsed line by line (``costmeter.importers``), each GPU's energy is integrated as the
recorder integrates it, and the readings go into the database in one transaction
(``costmeter.store.imports``). Malformed lines are skipped and named; a file with no valid line,
or one whose header cannot be read, writes nothing.

Energy: from ``power.draw`` where the file has it (the trapezoid between consecutive readings,
as the recorder does for a GPU without an energy counter); else estimated from utilisation and
the board's power limit (``idle + (limit - idle) x utilisation``), like the simulator's power
curve. Both are labelled "estimated", as the store labels every joule that does not come from a
hardware energy counter. A gap longer than five typical intervals (at least ``MIN_GAP_S``) is
not integrated across: nothing is known about the time in between.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from costmeter.core.errors import CostmeterError
from costmeter.core.model import DeviceInfo, DeviceSample, Interval
from costmeter.cost.energy import trapezoid_j
from costmeter.importers.costmeter_csv import (
    CostmeterSeriesCsv,
    is_export_header,
    metric_from_file_name,
)
from costmeter.importers.lines import read_lines, why_unreadable
from costmeter.importers.model import DeviceMeta, GpuReading, ImportFormatError, RowError
from costmeter.importers.nvidia_smi_csv import NvidiaSmiCsv
from costmeter.sampling.simulated.models import MODELS, GpuModel
from costmeter.store.imports import ImportTransaction

#: A gap is never integrated across when it is longer than this many typical intervals...
GAP_INTERVALS = 5
#: ...and always integrated when it is at most this long.
MIN_GAP_S = 10.0
#: The first interval of a GPU, before its typical interval is known, is trusted up to this.
FIRST_GAP_S = 300.0
#: Idle power as a share of the power limit, for a board the simulator does not know.
IDLE_SHARE = 0.15
#: How many skipped lines the summary names (all are counted).
NAMED_ERRORS = 10


class ImportFileError(CostmeterError):
    """The file cannot be imported at all (missing, unreadable, no valid line); nothing was
    written."""


@dataclass(frozen=True, slots=True)
class ImportOptions:
    host: str
    gpu_model: str | None = None
    #: The zone nvidia-smi's local timestamps are read in; None for this machine's.
    tz: tzinfo | None = None
    columns: tuple[str, ...] | None = None
    #: For a Costmeter export: the metric, when its file name does not say.
    metric: str | None = None


@dataclass
class ImportSummary:
    path: Path
    host: str
    kind: str  # "nvidia-smi" or "costmeter export"
    readings: int = 0
    written: int = 0
    unchanged: int = 0
    summarised: int = 0
    devices: list[DeviceInfo] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    #: Per GPU (uuid): how its energy was found ("power.draw", "estimated ...", or "unknown ...").
    energy: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    db_notice: str | None = None


def parse_tz(text: str | None) -> tzinfo | None:
    """``local`` (or None) -> None; ``UTC``, ``+02:00``, ``-0530`` or an IANA name."""
    if text is None or text.strip().lower() in ("", "local"):
        return None
    value = text.strip()
    if value.upper() in ("UTC", "Z"):
        return UTC
    if value[0] in "+-":
        digits = value[1:].replace(":", "")
        if digits.isdigit() and len(digits) in (2, 4):
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            if hours <= 14 and minutes < 60:
                sign = -1 if value[0] == "-" else 1
                return timezone(sign * timedelta(hours=hours, minutes=minutes))
        raise ValueError(f"--tz {value!r} is not an offset like +02:00 or -0530.")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            f"--tz {value!r} is not a time zone: give UTC, an offset like +02:00, "
            "or a name like Europe/Berlin."
        ) from err


def known_model(name: str | None) -> GpuModel | None:
    """The simulator's specs for a model key (``a100``) or NVML name, if it knows the board."""
    if not name:
        return None
    folded = name.strip().casefold()
    for model in MODELS.values():
        if folded in (model.key, model.name.casefold()):
            return model
    return None


class _Integrator:
    """Energy of one GPU between consecutive readings, with a gap rule that adapts to the log's
    interval (nvidia-smi -l 1 and -l 60 logs both occur)."""

    def __init__(self, limit_w: float | None, idle_w: float | None) -> None:
        self.limit_w = limit_w
        self.idle_w = idle_w
        self._prev: tuple[float, float | None] | None = None
        self._deltas: deque[float] = deque(maxlen=15)

    def power(self, sample: DeviceSample) -> tuple[float | None, bool]:
        """(watts, measured): the reading's power.draw, else the estimate from utilisation."""
        if sample.power_w is not None:
            return sample.power_w, True
        if self.limit_w is None or sample.gpu_util is None:
            return None, False
        idle = self.idle_w if self.idle_w is not None else IDLE_SHARE * self.limit_w
        return idle + (self.limit_w - idle) * sample.gpu_util / 100.0, False

    def interval(self, sample: DeviceSample) -> Interval:
        watts, _ = self.power(sample)
        prev, self._prev = self._prev, (sample.ts, watts)
        if prev is None:
            return Interval(0.0, None if watts is None else 0.0, False)
        dt = sample.ts - prev[0]
        limit = (
            max(MIN_GAP_S, GAP_INTERVALS * statistics.median(self._deltas))
            if self._deltas
            else FIRST_GAP_S
        )
        if dt <= 0 or dt > limit:
            return Interval(0.0, None if watts is None else 0.0, False)
        self._deltas.append(dt)
        p0, p1 = prev[1], watts
        if p0 is None and p1 is None:
            energy = None
        elif p0 is None or p1 is None:
            energy = (p1 if p1 is not None else p0 or 0.0) * dt
        else:
            energy = trapezoid_j(p0, p1, dt)
        return Interval(dt, energy, False)


def _open(path: Path) -> BinaryIO:
    if not path.exists():
        raise ImportFileError(f"There is no file {path}.")
    if path.is_dir():
        raise ImportFileError(f"{path} is a directory; give the log file itself.")
    try:
        return path.open("rb")
    except OSError as err:
        raise ImportFileError(f"{path} could not be opened ({err.strerror or err}).") from err


class _Errors:
    """Counts every skipped line but keeps only the first few (a garbage file has millions)."""

    def __init__(self) -> None:
        self.first: list[RowError] = []
        self.count = 0

    def append(self, error: RowError) -> None:
        self.count += 1
        if len(self.first) < NAMED_ERRORS:
            self.first.append(error)


def _lines(stream: BinaryIO, errors: _Errors) -> Iterator[tuple[int, str]]:
    for lineno, text in read_lines(stream):
        if text is None:
            errors.append(RowError(lineno, why_unreadable()))
        else:
            yield lineno, text


def _parser(
    path: Path, first: str, options: ImportOptions, gpu_name: str | None
) -> NvidiaSmiCsv | CostmeterSeriesCsv:
    if is_export_header(first):
        metric = options.metric
        gpu = path.stem
        named = metric_from_file_name(path.name)
        if named is not None:
            gpu, from_name = named
            metric = metric or from_name
        if metric is None:
            raise ImportFileError(
                f"{path.name} is a Costmeter export, but its name does not say which metric it "
                "holds: pass --metric (gpu_util, mem_util, mem_used, power_w, temp_c, "
                "sm_clock_mhz or mem_clock_mhz)."
            )
        return CostmeterSeriesCsv(host=options.host, metric=metric, gpu=gpu, gpu_model=gpu_name)
    return NvidiaSmiCsv(
        host=options.host,
        tz=options.tz,
        columns=options.columns,
        gpu_model=gpu_name,
        not_after=time.time() + 86_400,
    )


def _first_line(path: Path) -> str:
    with _open(path) as stream:
        for _, text in read_lines(stream):
            if text is not None and text.strip():
                return text
            if text is None:
                break
    raise ImportFileError(f"{path} holds no text lines to import.")


def import_log(
    path: str | os.PathLike[str], db: str | os.PathLike[str], options: ImportOptions
) -> ImportSummary:
    """Import one log file into the database ``db``; raises ImportFileError (nothing written)
    or StoreError (the write failed and was rolled back)."""
    source = Path(path)
    model = known_model(options.gpu_model)
    gpu_name = model.name if model is not None else options.gpu_model
    first = _first_line(source)
    try:
        parser = _parser(source, first, options, gpu_name)
    except ImportFormatError as err:
        raise ImportFileError(str(err)) from err
    summary = ImportSummary(
        path=source,
        host=options.host,
        kind="costmeter export" if isinstance(parser, CostmeterSeriesCsv) else "nvidia-smi",
    )
    errors = _Errors()
    tx = ImportTransaction(db)
    summary.db_notice = tx.notice
    integrators: dict[str, _Integrator] = {}
    measured: dict[str, bool] = {}
    try:
        tx.host(options.host)
        with _open(source) as stream:
            for lineno, text in _lines(stream, errors):
                out = parser.feed(lineno, text)
                if isinstance(out, RowError):
                    errors.append(out)
                    continue
                if out is None:
                    continue
                _add(tx, out, integrators, measured, model)
                summary.readings += 1
        infos = [_info(options.host, d) for d in parser.devices.values()]
        if summary.readings == 0:
            tx.rollback()
            named = "; ".join(str(e) for e in errors.first[:3])
            raise ImportFileError(
                f"{source} holds no valid reading, so nothing was imported"
                + (f": {named}" if named else ".")
            )
        counts = tx.commit(infos)
    except ImportFormatError as err:
        tx.rollback()
        raise ImportFileError(str(err)) from err
    except BaseException:
        tx.rollback()
        raise
    summary.written, summary.unchanged = counts.written, counts.unchanged
    summary.summarised = counts.summarised
    summary.first_ts, summary.last_ts = counts.first_ts, counts.last_ts
    summary.devices = infos
    summary.error_count = errors.count
    summary.errors = errors.first  # in line order: lines are read in order
    summary.notes = list(parser.notes)
    if isinstance(parser, NvidiaSmiCsv) and parser.repeated_headers:
        summary.notes.append(f"{parser.repeated_headers:,} repeated header lines were skipped")
    for meta in parser.devices.values():
        summary.energy[meta.uuid] = _energy_basis(meta, integrators.get(meta.uuid), measured)
    made_up = [m for m in parser.devices.values() if m.synthetic_uuid]
    if made_up:
        summary.notes.append(
            f"the file has no uuid column, so {len(made_up)} GPU"
            f"{'s are' if len(made_up) > 1 else ' is'} stored under a uuid made from host, "
            f"index and name (such as {made_up[0].uuid}); importing again finds the same GPU"
            f"{'s' if len(made_up) > 1 else ''}"
        )
    return summary


def _add(
    tx: ImportTransaction,
    reading: GpuReading,
    integrators: dict[str, _Integrator],
    measured: dict[str, bool],
    model: GpuModel | None,
) -> None:
    meta = reading.device
    integ = integrators.get(meta.uuid)
    if integ is None:
        board = model or known_model(meta.name)
        limit = meta.power_limit_w or (board.power_limit_w if board else None)
        integ = integrators[meta.uuid] = _Integrator(limit, board.idle_w if board else None)
        tx.device(_info("", meta), reading.sample.ts)
    elif integ.limit_w is None and meta.power_limit_w is not None:
        integ.limit_w = meta.power_limit_w
    _, from_power = integ.power(reading.sample)
    if from_power:
        measured[meta.uuid] = True
    tx.add(reading.sample, integ.interval(reading.sample))


def _info(host: str, meta: DeviceMeta) -> DeviceInfo:
    return DeviceInfo(
        host=host,
        index=meta.index,
        uuid=meta.uuid,
        name=meta.name,
        memory_total=meta.memory_total or 0,
        power_limit_w=meta.power_limit_w,
    )


def _energy_basis(meta: DeviceMeta, integ: _Integrator | None, measured: dict[str, bool]) -> str:
    if measured.get(meta.uuid):
        return "from power.draw"
    if integ is not None and integ.limit_w is not None:
        return f"estimated from utilisation and a {integ.limit_w:.0f} W power limit"
    return (
        "unknown: the file has no power.draw and the board is unknown (pass --gpu-model, "
        "e.g. a100, h100, rtx4090, t4, l4, a10g or p4)"
    )
