"""Writing a ``Config`` back to its TOML file (the Settings page saves through here).

``dump_config`` produces text that ``load_config`` reads back to an equal ``Config``. Given the
file's current text it edits that document in place with tomlkit, so the user's comments, key
order and spelling of unchanged values survive a save; only what changed is rewritten.
``save_config`` checks the text with the very parser that reads the file *before* anything
touches the disk, then replaces the file atomically and keeps the previous one as ``.bak``: a
refused or failed save leaves the user's file exactly as it was, and a crash mid-write never
leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.container import Container
from tomlkit.items import AoT, Table

from costmeter.config import (
    AgentConfig,
    Config,
    RemoteHostConfig,
    SourceConfig,
    load_config,
    parse_config,
)
from costmeter.core import bounds
from costmeter.core.errors import ConfigError
from costmeter.core.units import parse_duration
from costmeter.cost.pricing import PriceRow

#: What the loader calls a user row that gives no source; such a source is not written back, so
#: that a moved file names its new place.
_IMPLICIT_SOURCE = re.compile(r"your configuration \(.*\)", re.DOTALL)

#: A lone surrogate, which no UTF-8 file can hold (tomlkit writes it as it is).
_SURROGATE = re.compile("[\ud800-\udfff]")

#: A new file gets these permissions; an existing file keeps its own.
_NEW_FILE_MODE = 0o644

#: The top-level tables the loader reads; the writer owns them (anything else is dropped, as the
#: loader would refuse it).
_TOP_LEVEL = (
    "sampling",
    "retention",
    "cost",
    "alerts",
    "storage",
    "agent",
    "backends",
    "advice",
    "hosts",
    "sources",
)

_Values = dict[str, object]


def _escape_surrogates(text: str) -> str:
    """Lone surrogates as ``\\uXXXX``: TOML refuses that escape, so the check before saving
    reports the key and line instead of the encoder failing halfway."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04X}", text)


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (control characters and lone surrogates escaped)."""
    return _escape_surrogates(tomlkit.string(text).as_string())


def _days(value: float | None) -> object:
    return "forever" if value is None else value


def _gpu_row(row: PriceRow) -> _Values:
    source: str | None = row.source
    if not row.source.strip() or _IMPLICIT_SOURCE.fullmatch(row.source):
        source = None
    return {
        "name": row.model,
        "match": list(row.match) or None,  # none: the default row's patterns are kept
        "hourly": row.hourly,
        "includes_energy": row.includes_energy,
        "source": source,
        "date": row.date if row.date.strip() else None,
        "url": row.url if row.url and row.url.strip() else None,
    }


def _host_values(host: RemoteHostConfig) -> _Values:
    return {
        "url": host.url,
        "kind": host.kind,
        "token_file": host.token_file,
        "token": "keyring" if host.token_keyring and host.token_file is None else None,
        "enabled": host.enabled,
    }


def duration_value(seconds: float) -> object:
    """A duration as the file spells it: "7d", "12h", "90m", or a number of seconds."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds > 0 and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return int(seconds) if float(seconds).is_integer() else seconds


def _source_values(source: SourceConfig) -> _Values:
    return {
        "url": source.url,
        "kind": source.kind,
        "token_file": source.token_file,
        "token": "keyring" if source.token_keyring and source.token_file is None else None,
        "match": source.match,
        "backfill": duration_value(source.backfill_s),
        "step": int(source.step_s) if float(source.step_s).is_integer() else source.step_s,
        "enabled": source.enabled,
    }


def _seconds(value: object) -> float | None:
    value = value.unwrap() if hasattr(value, "unwrap") else value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_duration(value, bounds.BACKFILL_S)
    return None


def _keep_durations(doc: Container, sources: Mapping[str, _Values]) -> None:
    """A source's ``backfill``/``step`` keep the file's spelling (604800 or "1w" for "7d")
    when they mean the same number of seconds."""
    tables = doc.get("sources")
    if not isinstance(tables, Table):
        return
    for name, values in sources.items():
        table = tables.get(name)
        if not isinstance(table, Table):
            continue
        for key in ("backfill", "step"):
            old = table.get(key)
            new = _seconds(values.get(key))
            if old is not None and new is not None and _seconds(old) == new:
                values[key] = old.unwrap() if hasattr(old, "unwrap") else old


def _wanted(config: Config) -> dict[str, Any]:
    """What each top-level table must hold: key -> value, None for a table that must not exist.

    Sampling, retention and alerts are written in full, so that the file shows what is in force;
    ``[cost]`` holds only the figures the user set (None means "the default table's") and only the
    user's GPU rows; ``[storage]`` only a database the user chose.
    """
    s, r, c, a = config.sampling, config.retention, config.cost, config.alerts
    cost: _Values = {
        "currency": c.currency,
        "tariff_per_kwh": c.tariff_per_kwh,
        "carbon_g_per_kwh": c.carbon_g_per_kwh,
        "cpu_core_hour": c.cpu_core_hour,
        "cpu_tdp_w": c.cpu_tdp_w,
        "storage_gb_month": c.storage_gb_month,
    }
    return {
        "sampling": {
            "interval_s": s.interval_s,
            "process_scan_interval_s": s.process_scan_interval_s,
        },
        "retention": {
            "raw_days": _days(r.raw_days),
            "minute_days": _days(r.minute_days),
            "hour_days": _days(r.hour_days),
        },
        "cost": (cost, [_gpu_row(row) for row in c.gpu]),
        "alerts": {
            "idle_allocated_minutes": a.idle_allocated_minutes,
            "daily_budget": a.daily_budget,
        },
        "storage": {"database": config.storage.database} if config.storage.database else None,
        # `costmeter agent`'s limits, kept when the app saves
        "agent": dataclasses.asdict(config.agent) if config.agent != AgentConfig() else None,
        "backends": {name: dict(options) for name, options in config.backends.items()},
        "advice": dict(config.advice) or None,
        "hosts": {host.name: _host_values(host) for host in config.hosts},
        "sources": {source.name: _source_values(source) for source in config.sources},
    }


# -- editing the document -----------------------------------------------------------------------


def _plain(value: object) -> object:
    """A value as tomlkit takes it: paths as text, tuples as lists, mappings as inline tables."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        inline = tomlkit.inline_table()
        inline.update({str(k): _plain(v) for k, v in value.items()})
        return inline
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to the configuration file")


def _same(old: object, new: object) -> bool:
    """Whether the file's value already reads as ``new`` (so its spelling is kept: ``3`` for
    3.0, a literal string, a comment after it)."""
    old = old.unwrap() if hasattr(old, "unwrap") else old
    new = new.unwrap() if hasattr(new, "unwrap") else new
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, int | float) and isinstance(new, int | float):
        return old == new and (isinstance(new, float) or isinstance(old, int))
    return type(old) is type(new) and old == new


def _fill(table: Table | Container, values: Mapping[str, object], *, leave: str = "") -> None:
    """Make ``table`` hold exactly ``values`` (None values left out), keeping what is unchanged;
    key ``leave`` (a sub-table edited on its own) is left alone."""
    wanted = {k: _plain(v) for k, v in values.items() if v is not None}
    for key in [k for k in table if k not in wanted and k != leave]:
        del table[key]
    for key, value in wanted.items():
        if key not in table or not _same(table[key], value):
            table[key] = value


def _new_table(values: Mapping[str, object]) -> Table:
    table = tomlkit.table()
    _fill(table, values)
    return table


def _set_table(doc: Container, name: str, values: Mapping[str, object] | None) -> None:
    if values is None:
        doc.pop(name, None)
    elif isinstance(doc.get(name), Table):
        _fill(doc[name], values)
    else:
        doc.pop(name, None)
        doc[name] = _new_table(values)


def _set_named_tables(
    doc: Container, name: str, tables: Mapping[str, Mapping[str, object]]
) -> None:
    """``[name.KEY]`` tables (hosts, backends), in the configuration's order; a table that stays
    is edited in place, so its comments stay with it."""
    parent = doc.get(name)
    if not tables:
        doc.pop(name, None)
        return
    if not isinstance(parent, Table):
        doc.pop(name, None)
        parent = tomlkit.table(is_super_table=True)
        doc[name] = parent
    kept: dict[str, Table] = {}
    for key, values in tables.items():
        table = parent.get(key)
        if isinstance(table, Table):
            _fill(table, values)
            kept[key] = table
        else:
            kept[key] = _new_table(values)
    if list(parent) == list(tables):
        return
    for key in list(parent):
        del parent[key]
    for key, table in kept.items():
        parent[key] = table


def _set_cost(doc: Container, figures: Mapping[str, object], rows: list[_Values]) -> None:
    """``[cost]`` figures and its ``[[cost.gpu]]`` rows, edited row by row."""
    has_figures = any(v is not None for v in figures.values())
    if not has_figures and not rows:
        doc.pop("cost", None)
        return
    cost = doc.get("cost")
    if not isinstance(cost, Table):
        doc.pop("cost", None)
        cost = tomlkit.table(is_super_table=not has_figures)
        doc["cost"] = cost
    _fill(cost, figures, leave="gpu")
    if not rows:
        cost.pop("gpu", None)
        return
    existing = cost.get("gpu")
    if isinstance(existing, AoT) and len(existing) >= 1:
        for table, values in zip(existing, rows, strict=False):
            _fill(table, values)
        while len(existing) > len(rows):
            del existing[-1]
        for values in rows[len(existing) :]:
            existing.append(_new_table(values))
    else:
        cost["gpu"] = tomlkit.aot()
        for values in rows:
            cost["gpu"].append(_new_table(values))


def _header(path: Path | None) -> list[str]:
    backup = f"{path.name}.bak" if path is not None else "a .bak file beside it"
    return [
        "Costmeter configuration, written by the Settings page. You may edit it by hand:",
        "your comments are kept when Settings saves it, and the previous file is kept as",
        f"{backup}.",
    ]


def _document(text: str | None, path: Path | None) -> tomlkit.TOMLDocument:
    """The file's text as an editable document; a new one (with a header) when there is none or
    it is not TOML (the loader names that problem; the old text goes to ``.bak``)."""
    if text is not None:
        with contextlib.suppress(tomlkit.exceptions.TOMLKitError, ValueError):
            return tomlkit.parse(text)
    doc = tomlkit.document()
    for line in _header(path):
        doc.add(tomlkit.comment(line))
    return doc


def dump_config(config: Config, *, path: Path | None = None, current: str | None = None) -> str:
    """The TOML text of ``config``: ``current`` (the file's text as it is now) edited so that it
    holds ``config``, or a new file. ``path`` (default ``config.path``) names the backup in a new
    file's opening comment."""
    target = path if path is not None else config.path
    doc = _document(current, target)
    for key in [k for k in doc if k not in _TOP_LEVEL]:
        del doc[key]
    wanted = _wanted(config)
    for name in _TOP_LEVEL:
        if name == "cost":
            _set_cost(doc, *wanted["cost"])
        elif name in ("backends", "hosts", "sources"):
            if name == "sources":
                _keep_durations(doc, wanted[name])
            _set_named_tables(doc, name, wanted[name])
        else:
            _set_table(doc, name, wanted[name])
    return _escape_surrogates(doc.as_string())


# -- [hosts.NAME] tables (the Hosts page) ---------------------------------------------------------

#: A host's name: what its samples carry, a settings key and a token file's name.
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def host_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a host (a sentence), or None when it can."""
    if not name:
        return "a host needs a name."
    if not HOST_NAME.fullmatch(name):
        return (
            f"the host name {name!r} may use only letters, digits, '.', '_' and '-' "
            "(at most 63, starting with a letter or digit)."
        )
    return None


def _check_host(host: RemoteHostConfig, others: tuple[RemoteHostConfig, ...], path: Path) -> None:
    problem = host_name_problem(host.name)
    if problem is None and any(h.name == host.name for h in others):
        problem = f"there is already a host named {host.name}; choose another name."
    if problem is not None:
        raise ConfigError(problem, path=str(path))


def add_host(path: Path, host: RemoteHostConfig) -> Config:
    """Add a ``[hosts.NAME]`` table to the file at ``path`` as it is now; returns the saved
    configuration. The rest of the file is read fresh, so edits made by hand since the app
    loaded it are kept. Raises ConfigError (file unchanged) for a taken or invalid name."""
    config = load_config(path)
    _check_host(host, config.hosts, path)
    return save_config(dataclasses.replace(config, hosts=(*config.hosts, host)), path)


def replace_host(path: Path, name: str, host: RemoteHostConfig) -> Config:
    """Replace the table of host ``name`` by ``host`` (which may rename it), in place."""
    config = load_config(path)
    if not any(h.name == name for h in config.hosts):
        raise ConfigError(f"there is no host named {name} any more.", path=str(path))
    _check_host(host, tuple(h for h in config.hosts if h.name != name), path)
    hosts = tuple(host if h.name == name else h for h in config.hosts)
    return save_config(dataclasses.replace(config, hosts=hosts), path)


def remove_host(path: Path, name: str) -> Config:
    """Remove the table of host ``name``; a host already gone is not an error."""
    config = load_config(path)
    hosts = tuple(h for h in config.hosts if h.name != name)
    if hosts == config.hosts:
        return config
    return save_config(dataclasses.replace(config, hosts=hosts), path)


# -- [sources.NAME] tables (the Hosts page) -------------------------------------------------------


def _check_source(source: SourceConfig, config: Config, path: Path, old: str | None) -> None:
    problem = host_name_problem(source.name)
    if problem is not None:
        problem = problem.replace("host name", "source name").replace("a host", "a source")
    elif any(s.name == source.name and s.name != old for s in config.sources):
        problem = f"there is already a source named {source.name}; choose another name."
    elif any(h.name == source.name for h in config.hosts):
        problem = f"there is a host named {source.name}; give the source another name."
    if problem is not None:
        raise ConfigError(problem, path=str(path))


def add_source(path: Path, source: SourceConfig) -> Config:
    """Add a ``[sources.NAME]`` table to the file as it is now (as ``add_host``)."""
    config = load_config(path)
    _check_source(source, config, path, None)
    return save_config(dataclasses.replace(config, sources=(*config.sources, source)), path)


def replace_source(path: Path, name: str, source: SourceConfig) -> Config:
    """Replace the table of source ``name`` by ``source`` (which may rename it), in place."""
    config = load_config(path)
    if not any(s.name == name for s in config.sources):
        raise ConfigError(f"there is no source named {name} any more.", path=str(path))
    _check_source(source, config, path, name)
    sources = tuple(source if s.name == name else s for s in config.sources)
    return save_config(dataclasses.replace(config, sources=sources), path)


def remove_source(path: Path, name: str) -> Config:
    """Remove the table of source ``name``; a source already gone is not an error."""
    config = load_config(path)
    sources = tuple(s for s in config.sources if s.name != name)
    if sources == config.sources:
        return config
    return save_config(dataclasses.replace(config, sources=sources), path)


def _current_text(path: Path) -> str | None:
    """The file's text now, or None when there is none (or it cannot be read as UTF-8; then a
    new file is written and the old one kept as ``.bak``)."""
    try:
        return Path(os.path.realpath(path)).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def check_config(config: Config, path: Path) -> Config:
    """What ``save_config`` would write, read back; raises the loader's ConfigError if refused."""
    return parse_config(dump_config(config, path=path, current=_current_text(path)), path)


def save_config(config: Config, path: Path) -> Config:
    """Write ``config`` to ``path`` and return it as read back from the text written.

    Raises ConfigError (naming the file, line and key) for a value the loader would refuse, or
    when the file cannot be written; in both cases the file on disk is unchanged.
    """
    text = dump_config(config, path=path, current=_current_text(path))
    saved = parse_config(text, path)  # refuses before anything is written
    try:
        _write_atomically(path, text.encode("utf-8"))
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(f"the file could not be written: {reason}.", path=str(path)) from err
    return saved


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` with ``os.replace`` from a temporary file beside it.

    A symbolic link (a dotfiles checkout) is followed, so the link survives. The previous file is
    copied to ``.bak`` first; saving the same text again writes nothing, so the backup still holds
    the version before.
    """
    target = Path(os.path.realpath(path))
    try:
        if target.read_bytes() == data:
            return
        mode: int | None = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = None
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is not None:
        _replace_with(backup_path(target), lambda tmp: shutil.copyfile(target, tmp), mode)
    _replace_with(target, lambda tmp: tmp.write_bytes(data), mode)
    _sync_folder(target.parent)


def _replace_with(target: Path, fill: Callable[[Path], object], mode: int | None) -> None:
    """Write ``target`` through a temporary file beside it (``fill`` writes that file)."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        fill(tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _NEW_FILE_MODE if mode is None else mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows (not on Windows)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
