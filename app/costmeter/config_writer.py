"""Writing a ``Config`` back to its TOML file (the Settings page saves through here).

``dump_config`` produces text that ``load_config`` reads back to an equal ``Config``.
``save_config`` checks that text with the very parser that reads the file *before* anything
touches the disk, then replaces the file atomically and keeps the previous one as ``.bak``: a
refused or failed save leaves the user's file exactly as it was, and a crash mid-write never
leaves half a file behind.

The shape is fixed and small, so a few lines of our own replace a TOML-writing dependency; strings
are escaped as TOML basic strings (quotes, backslashes, control characters).
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

from costmeter.config import AgentConfig, Config, RemoteHostConfig, load_config, parse_config
from costmeter.core.errors import ConfigError
from costmeter.cost.pricing import PriceRow

#: What the loader calls a user row that gives no source; such a source is not written back, so
#: that a moved file names its new place.
_IMPLICIT_SOURCE = re.compile(r"your configuration \(.*\)", re.DOTALL)

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}

#: A new file gets these permissions; an existing file keeps its own.
_NEW_FILE_MODE = 0o644


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string.

    Control characters become ``\\uXXXX``. A lone surrogate (which no UTF-8 file can hold) is
    escaped too; TOML refuses that escape, so the check before saving reports it instead of the
    encoder failing halfway.
    """
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    """A number, flag, string, path or list of strings as TOML.

    Floats use ``repr``, the shortest text that reads back to the same float (``1e-05``, ``inf``
    and ``nan`` are TOML too; the loader then refuses the last two in words).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to the configuration file")


def toml_key(key: object) -> str:
    """A key as TOML: bare when it can be, else a quoted string."""
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else toml_string(text)


def _days(value: float | None) -> object:
    return "forever" if value is None else value


def _table(name: str, values: Mapping[str, object], *, array: bool = False) -> list[str]:
    """A ``[name]`` (or ``[[name]]``) header and its keys; values that are None are left out."""
    header = f"[[{name}]]" if array else f"[{name}]"
    return [
        "",
        header,
        *(f"{toml_key(k)} = {toml_value(v)}" for k, v in values.items() if v is not None),
    ]


def _gpu_row(row: PriceRow) -> dict[str, object]:
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


def dump_config(config: Config, *, path: Path | None = None) -> str:
    """The TOML text of ``config``.

    Sampling, retention and alerts are written in full, so that the file shows what is in force;
    ``[cost]`` holds only the figures the user set (None means "the default table's") and only the
    user's GPU rows; ``[storage]`` only a database the user chose. ``path`` (default
    ``config.path``) only names the backup in the opening comment.
    """
    target = path if path is not None else config.path
    backup = f"{target.name}.bak" if target is not None else "a .bak file beside it"
    lines = [
        "# Costmeter configuration, written by the Settings page. You may edit it by hand:",
        "# saving from Settings rewrites it without comments, keeping the previous file as",
        f"# {backup}.",
    ]
    s, r, c, a = config.sampling, config.retention, config.cost, config.alerts
    lines += _table(
        "sampling",
        {"interval_s": s.interval_s, "process_scan_interval_s": s.process_scan_interval_s},
    )
    lines += _table(
        "retention",
        {
            "raw_days": _days(r.raw_days),
            "minute_days": _days(r.minute_days),
            "hour_days": _days(r.hour_days),
        },
    )
    cost = {
        "currency": c.currency,
        "tariff_per_kwh": c.tariff_per_kwh,
        "carbon_g_per_kwh": c.carbon_g_per_kwh,
        "cpu_core_hour": c.cpu_core_hour,
        "cpu_tdp_w": c.cpu_tdp_w,
    }
    if any(v is not None for v in cost.values()):
        lines += _table("cost", cost)
    for row in c.gpu:
        lines += _table("cost.gpu", _gpu_row(row), array=True)
    lines += _table(
        "alerts",
        {"idle_allocated_minutes": a.idle_allocated_minutes, "daily_budget": a.daily_budget},
    )
    if config.storage.database is not None:
        lines += _table("storage", {"database": config.storage.database})
    if config.agent != AgentConfig():  # `costmeter agent`'s limits, kept when the app saves
        lines += _table("agent", dataclasses.asdict(config.agent))
    for name, options in config.backends.items():  # kept as they are: the backends' own
        lines += _table(f"backends.{toml_key(name)}", options)
    if config.advice:
        lines += _table("advice", dict(config.advice))
    for host in config.hosts:
        lines += _table(f"hosts.{toml_key(host.name)}", _host_values(host))
    return "\n".join(lines) + "\n"


def _host_values(host: RemoteHostConfig) -> dict[str, object]:
    return {
        "url": host.url,
        "kind": host.kind,
        "token_file": host.token_file,
        "token": "keyring" if host.token_keyring and host.token_file is None else None,
        "enabled": host.enabled,
    }


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


def check_config(config: Config, path: Path) -> Config:
    """What ``save_config`` would write, read back; raises the loader's ConfigError if refused."""
    return parse_config(dump_config(config, path=path), path)


def save_config(config: Config, path: Path) -> Config:
    """Write ``config`` to ``path`` and return it as read back from the text written.

    Raises ConfigError (naming the file, line and key) for a value the loader would refuse, or
    when the file cannot be written; in both cases the file on disk is unchanged.
    """
    text = dump_config(config, path=path)
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
