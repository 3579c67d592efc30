"""Write a history series to CSV or JSON, for spreadsheets and scripts.

Times are ISO 8601 in UTC; a missing value is an empty CSV cell or JSON ``null``. The file is
written next to its destination and renamed into place, so a failed export leaves no half file.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from costmeter.cost.chargeback import Amounts, ChargebackReport
from costmeter.store.queries import Series

CSV_COLUMNS = ("ts", "min", "avg", "max", "resolution")


def iso_utc(ts: float) -> str:
    """``2024-05-01T12:00:00Z``; milliseconds only when the time has them."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _value(v: float) -> float | None:
    return None if math.isnan(v) else v


def points(series: Series) -> Iterator[dict[str, Any]]:
    for ts, lo, avg, hi in zip(series.ts, series.min, series.avg, series.max, strict=True):
        yield {"ts": iso_utc(ts), "min": _value(lo), "avg": _value(avg), "max": _value(hi)}


def _write_csv(out: TextIO, series: Series) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in points(series):
        cells = ["" if p[k] is None else repr(p[k]) for k in ("min", "avg", "max")]
        writer.writerow([p["ts"], *cells, series.resolution])


def _write_json(
    out: TextIO, series: Series, device: str, start: float, end: float, unit: str
) -> None:
    doc = {
        "device": device,
        "metric": series.metric,
        "unit": unit,
        "resolution": series.resolution,
        "bucket_s": series.bucket_s,
        "start": iso_utc(start),
        "end": iso_utc(end),
        "points": list(points(series)),
    }
    json.dump(doc, out, indent=1, allow_nan=False)
    out.write("\n")


def write_series(
    path: str | os.PathLike[str],
    series: Series,
    *,
    device: str,
    start: float,
    end: float,
    unit: str = "",
) -> int:
    """Write ``series`` as JSON when ``path`` ends in .json, else CSV; returns the point count."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            if target.suffix.lower() == ".json":
                _write_json(out, series, device, start, end, unit)
            else:
                _write_csv(out, series)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; an export is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(series)


# -- who pays (the GUI's "Export CSV…"; `costmeter report --by ... --format csv` is the CLI's) --
def chargeback_csv_rows(report: ChargebackReport) -> Iterator[list[str]]:
    """Header, one row per owner, then unattributed, idle and total (amounts unrounded)."""
    amounts = ("gpu_hours", "energy_kwh", "cost", "idle_cost", "carbon_kg")
    yield ["kind", *report.by, *amounts, "share", "currency", "start", "end", "share_idle"]
    total = report.total.cost
    period = [report.currency, iso_utc(report.start), iso_utc(report.end), str(report.share_idle)]

    def line(kind: str, keys: list[str], values: Amounts, share: float | None) -> list[str]:
        shared = "" if share is None else repr(share)
        return [kind, *keys, *(repr(getattr(values, a)) for a in amounts), shared, *period]

    for g in report.groups:
        yield line("group", [g.key.get(d) or "" for d in report.by], g.amounts, g.share)
    blank = [""] * len(report.by)
    for kind, values in (("unattributed", report.unattributed), ("idle", report.idle)):
        yield line(kind, blank, values, values.cost / total if total else 0.0)
    yield line("total", blank, report.total, None)


def write_chargeback_csv(path: str | os.PathLike[str], report: ChargebackReport) -> int:
    """Write ``report`` as CSV to ``path`` (whole or not at all); returns the owner rows written."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            csv.writer(out, lineterminator="\n").writerows(chargeback_csv_rows(report))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(report.groups)
