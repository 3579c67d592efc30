"""``costmeter import FILE``: load an nvidia-smi CSV log (or a Costmeter export) into history.

Exit status: 0 every line was imported (or was already there), 1 some malformed lines were
skipped and the rest imported, 2 nothing was imported (usage, file or database error).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.core.errors import StoreError
from costmeter.core.model import DeviceInfo
from costmeter.importers.model import ImportFormatError
from costmeter.importers.nvidia_smi_csv import parse_columns_option
from costmeter.service.log_import import (
    ImportFileError,
    ImportOptions,
    ImportSummary,
    import_log,
    parse_tz,
)

OK, SKIPPED_ROWS, FAILED = 0, 1, 2


def run(args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    host = args.host if args.host is not None else path.stem
    if not host.strip() or len(host) > 255 or any(ord(c) < 32 for c in host):
        say(f"--host {host!r} is not a usable host name.")
        return FAILED
    try:
        tz = parse_tz(args.tz)
        columns = tuple(parse_columns_option(args.columns)) if args.columns else None
    except (ValueError, ImportFormatError) as exc:
        say(str(exc))
        return FAILED
    config = load_config_from(args)
    db = resolve_db(args, config)
    options = ImportOptions(
        host=host, gpu_model=args.gpu_model, tz=tz, columns=columns, metric=args.metric
    )
    try:
        summary = import_log(path, db, options)
    except (ImportFileError, StoreError) as exc:
        say(str(exc))
        return FAILED
    if summary.db_notice:
        say(summary.db_notice)
    print(describe(summary, host_given=args.host is not None, db=db))
    return SKIPPED_ROWS if summary.error_count else OK


def _when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "?" if ts is None else time.strftime(fmt, time.localtime(ts))


def describe(summary: ImportSummary, *, host_given: bool = True, db: Path | None = None) -> str:
    """The lines the command prints: what was imported, what was skipped and why."""
    gpus = len(summary.devices)
    start, end = summary.first_ts, summary.last_ts
    same_day = start is not None and end is not None and _when(start, "%F") == _when(end, "%F")
    span = f"{_when(start)} to {_when(end, '%H:%M' if same_day else '%Y-%m-%d %H:%M')}"
    what = f"{gpus} GPU{'s' if gpus != 1 else ''} (host {summary.host}, {span})"
    if summary.written == 0 and summary.unchanged:
        head = f"Nothing new: the {summary.unchanged:,} readings of {what} were already in history"
    else:
        plural = "" if summary.written == 1 else "s"
        head = f"Imported {summary.written:,} sample{plural} of {what}"
    if summary.error_count:
        named = ", ".join(str(e) for e in summary.errors)
        more = summary.error_count - len(summary.errors)
        head += (
            f"; skipped {summary.error_count:,} malformed row"
            f"{'s' if summary.error_count != 1 else ''}: {named}"
            + (f", and {more:,} more" if more > 0 else "")
        )
    lines = [head + "."]
    if summary.unchanged and summary.written:
        lines.append(
            f"{summary.unchanged:,} readings were already in history (imported before, or "
            "recorded) and were left as they were."
        )
    if summary.summarised:
        lines.append(
            f"{summary.summarised:,} readings fall in time that history keeps only as "
            "averages now (or no longer keeps), so they were left out."
        )
    bases: dict[str, list[DeviceInfo]] = {}
    for d in summary.devices:
        bases.setdefault(summary.energy.get(d.uuid, "unknown"), []).append(d)
    for basis, group in bases.items():
        names = {d.name for d in group}
        indexes = ", ".join(str(d.index) for d in group)
        which = f"GPU{'s' if len(group) > 1 else ''} {indexes}"
        if len(names) == 1 and group[0].name:
            which += f" ({group[0].name})"
        lines.append(f"Energy of {which}: {basis}.")
    lines.extend(f"Note: {n}." for n in summary.notes)
    if not host_given:
        lines.append(
            f"Note: stored as host {summary.host!r} (from the file name); --host names it."
        )
    if start is not None and db is not None:
        days = max(1, math.ceil((time.time() - start) / 86400) + 1)
        lines.append(f"See it with: costmeter report --db {db} --since {days}d")
    return "\n".join(lines)
