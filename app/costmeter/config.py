"""The user's configuration file (TOML), read into a frozen ``Config``.

Every mistake in the file becomes a ``ConfigError`` that names the file, the line and the key,
so a user can fix it without reading a traceback. A missing file means the defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from costmeter.core.errors import ConfigError
from costmeter.cost.pricing import PriceRow, Pricing, load_default_pricing, make_row

KeyPath = tuple[str | int, ...]


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("costmeter")) / "config.toml"


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    interval_s: float = 1.0
    process_scan_interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """Days to keep each resolution; None keeps it forever."""

    raw_days: float | None = 7.0
    minute_days: float | None = 90.0
    hour_days: float | None = None


@dataclass(frozen=True, slots=True)
class CostConfig:
    """The user's price settings; None means "use the default table's figure"."""

    currency: str | None = None
    tariff_per_kwh: float | None = None
    carbon_g_per_kwh: float | None = None
    cpu_core_hour: float | None = None
    cpu_tdp_w: float | None = None
    #: Rows that replace default rows of the same name or add new models. A row with an empty
    #: ``match`` keeps the patterns of the default row it replaces.
    gpu: tuple[PriceRow, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """When the desktop app notifies: a GPU idle but allocated this long; a daily budget."""

    idle_allocated_minutes: float = 30.0
    #: Money per day in the configured currency; None = no budget.
    daily_budget: float | None = None


@dataclass(frozen=True, slots=True)
class StorageConfig:
    #: The database file; None = the default in the user data directory.
    database: Path | None = None


@dataclass(frozen=True, slots=True)
class Config:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    #: ``[backends.NAME]`` tables: each run backend's options as parsed TOML (the backend
    #: checks them; Costmeter passes them as ``BackendConfig.options``).
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    #: The file this came from; None when built from defaults alone.
    path: Path | None = None
    _pricing: Pricing | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def interval_s(self) -> float:
        return self.sampling.interval_s

    @property
    def process_scan_interval_s(self) -> float:
        return self.sampling.process_scan_interval_s

    def backend_options(self, name: str) -> dict[str, Any]:
        """The options of backend ``name`` (its ``[backends.NAME]`` table; empty without)."""
        return dict(self.backends.get(name, {}))

    def pricing(self) -> Pricing:
        """The effective price table (computed once)."""
        if self._pricing is None:
            object.__setattr__(self, "_pricing", self.to_pricing())
        assert self._pricing is not None
        return self._pricing

    def to_pricing(self, base: Pricing | None = None) -> Pricing:
        """The defaults (or ``base``) with this configuration's figures and rows on top."""
        pricing = base if base is not None else load_default_pricing()
        where = f"your configuration ({self.path})" if self.path else "your configuration"
        c = self.cost
        changes: dict[str, Any] = {}
        if c.currency is not None:
            changes["currency"] = c.currency
        if c.tariff_per_kwh is not None:
            changes.update(tariff_per_kwh=c.tariff_per_kwh, tariff_source=where, tariff_date="")
        if c.carbon_g_per_kwh is not None:
            changes.update(carbon_g_per_kwh=c.carbon_g_per_kwh, carbon_source=where, carbon_date="")
        if c.cpu_core_hour is not None:
            changes.update(
                cpu_core_hour=c.cpu_core_hour, cpu_core_hour_source=where, cpu_core_hour_date=""
            )
        if c.cpu_tdp_w is not None:
            changes.update(cpu_tdp_w=c.cpu_tdp_w, cpu_tdp_source=where)
        rows = []
        for row in c.gpu:
            if not row.match:
                default = pricing.row_for_model(row.model)
                row = dataclasses.replace(row, match=default.match if default else ())
            rows.append(row)
        return pricing.replace(**changes).merged(rows)


def load_config(path: Path | None = None) -> Config:
    """Read the configuration; a file that does not exist gives the defaults."""
    path = path if path is not None else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"the file could not be read: {err}.", path=str(path)) from err
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    """The configuration in ``text``, as if read from ``path`` (named in errors; relative paths in
    the file are taken from its folder). The writer checks its text with this before saving."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _syntax_error(path, text, err) from err
    return _Builder(path, text).build(data)


# --- finding the line of a key -------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*(\]\]?)\s*(?:#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")
_KEY_PART = re.compile(_PART)
_TRIPLE_QUOTES = ('"""', "'''")


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in _KEY_PART.findall(text))


class KeyLocator:
    """Maps key paths such as ``("cost", "gpu", 1, "hourly")`` to 1-based line numbers.

    It scans the text line by line, following ``[table]`` and ``[[array]]`` headers (an array
    element is addressed by its 0-based index) and skipping the inside of multi-line strings and
    arrays. Keys inside inline tables are not found; ``line_of`` then falls back to the nearest
    enclosing key or header.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        self._counts: dict[KeyPath, int] = {}
        self._headers: list[tuple[int, KeyPath]] = []
        current: KeyPath = ()
        depth = 0  # brackets still open from a multi-line value
        quote: str | None = None  # an unterminated multi-line string
        for lineno, line in enumerate(text.splitlines(), start=1):
            if quote is not None:
                end = line.find(quote)
                if end >= 0:
                    depth, quote = _scan_value(line[end + 3 :], depth)
                continue
            if depth > 0:
                depth, quote = _scan_value(line, depth)
                continue
            header = _HEADER.match(line)
            if header and len(header.group(1)) == len(header.group(3)):
                names = _split_key(header.group(2))
                current = self._resolve(names, header.group(1) == "[[", lineno)
                self._lines.setdefault(current, lineno)
                self._headers.append((lineno, current))
                continue
            key = _KEY.match(line)
            if key:
                self._lines.setdefault(current + _split_key(key.group(1)), lineno)
                depth, quote = _scan_value(line[key.end() :], 0)

    def _resolve(self, names: tuple[str, ...], is_array: bool, lineno: int) -> KeyPath:
        """The location of a header, inserting the current index of enclosing arrays."""
        location: KeyPath = ()
        for i, name in enumerate(names):
            location = (*location, name)
            if is_array and i == len(names) - 1:
                count = self._counts.get(location, 0)
                self._counts[location] = count + 1
                self._lines.setdefault(location, lineno)
                return (*location, count)
            if location in self._counts:
                location = (*location, self._counts[location] - 1)
        return location

    def table_at(self, lineno: int) -> KeyPath:
        """The table that a line belongs to (the last header at or above it)."""
        table: KeyPath = ()
        for header_line, path in self._headers:
            if header_line > lineno:
                break
            table = path
        return table

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest ancestor that appears; None if none does."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def _scan_value(text: str, depth: int) -> tuple[int, str | None]:
    """Bracket depth after ``text``, skipping strings and comments, and any open triple quote."""
    i = 0
    while i < len(text):
        if text.startswith(_TRIPLE_QUOTES, i):
            quote = text[i : i + 3]
            end = text.find(quote, i + 3)
            if end < 0:
                return depth, quote
            i = end + 3
            continue
        char = text[i]
        if char in "\"'":
            i += 1
            while i < len(text) and text[i] != char:
                i += 2 if char == '"' and text[i] == "\\" else 1
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return depth, None


def _syntax_error(path: Path, text: str, err: tomllib.TOMLDecodeError) -> ConfigError:
    """tomllib's message with its "(at line L, column C)" turned into ConfigError's fields."""
    message = str(err)
    line: int | None = None
    key: str | None = None
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if found:
        line = int(found.group(1))
        message = f"{message[: found.start()]} at column {found.group(2)}"
        lines = text.splitlines()
        key_match = _KEY.match(lines[line - 1]) if 0 < line <= len(lines) else None
        if key_match:
            table = KeyLocator(text).table_at(line)
            key = _key_name(table + _split_key(key_match.group(1)))
    else:
        message = message.replace("(at end of document)", "at the end of the file")
    message = message[:1].lower() + message[1:]
    return ConfigError(f"this is not valid TOML: {message}.", path=str(path), line=line, key=key)


# --- checking values -----------------------------------------------------------------------

#: key -> (what it must be, default, must be > 0 (else >= 0), may be "forever")
_Spec = dict[str, tuple[str, float | None, bool, bool]]
_SECONDS, _DAYS = "a number of seconds", "a number of days"
_SAMPLING: _Spec = {
    "interval_s": (_SECONDS, 1.0, True, False),
    "process_scan_interval_s": (_SECONDS, 10.0, True, False),
}
_RETENTION: _Spec = {
    "raw_days": (_DAYS, 7.0, True, True),
    "minute_days": (_DAYS, 90.0, True, True),
    "hour_days": (_DAYS, None, True, True),
}
_COST: _Spec = {
    "tariff_per_kwh": ("a price per kWh", None, False, False),
    "carbon_g_per_kwh": ("a number of grams of CO2e per kWh", None, False, False),
    "cpu_core_hour": ("a price per core-hour", None, False, False),
    "cpu_tdp_w": ("a power in watts", None, True, False),
}
_ALERTS: _Spec = {
    "idle_allocated_minutes": ("a number of minutes", 30.0, True, False),
    "daily_budget": ("an amount of money per day", None, True, False),
}
_GPU_KEYS = ("name", "match", "hourly", "source", "date", "url", "includes_energy")


def _key_name(path: KeyPath) -> str:
    return ".".join(str(p) for p in path if not isinstance(p, int))


def _table_name(path: KeyPath) -> str:
    if not path:
        return "the top level"
    if isinstance(path[-1], int):
        return f"[[{_key_name(path)}]] (entry {path[-1] + 1})"
    return f"[{_key_name(path)}]"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class _Builder:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.locator = KeyLocator(text)

    def error(self, where: KeyPath, message: str) -> ConfigError:
        line = self.locator.line_of(where)
        return ConfigError(message, path=str(self.path), line=line, key=_key_name(where))

    def build(self, data: Mapping[str, Any]) -> Config:
        self.keys(data, (), ("sampling", "retention", "cost", "alerts", "storage", "backends"))
        sampling = self.numbers(self.table(data, "sampling"), ("sampling",), _SAMPLING)
        retention = self.numbers(self.table(data, "retention"), ("retention",), _RETENTION)
        self.retention_order(retention)
        cost_t = self.table(data, "cost")
        self.keys(cost_t, ("cost",), (*_COST, "currency", "gpu"))
        return Config(
            sampling=SamplingConfig(**sampling),  # type: ignore[arg-type]
            retention=RetentionConfig(**retention),
            cost=CostConfig(
                currency=self.currency(cost_t),
                gpu=self.gpu_rows(cost_t),
                **self.numbers(cost_t, ("cost",), _COST, check_keys=False),
            ),
            alerts=AlertsConfig(
                **self.numbers(self.table(data, "alerts"), ("alerts",), _ALERTS)  # type: ignore[arg-type]
            ),
            storage=self.storage(self.table(data, "storage")),
            backends=self.backends(self.table(data, "backends")),
            path=self.path,
        )

    def backends(self, table: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """``[backends.NAME]`` tables, one per backend; their keys are the backend's to check."""
        found: dict[str, dict[str, Any]] = {}
        for name, options in table.items():
            if not isinstance(options, Mapping):
                raise self.error(
                    ("backends", name),
                    f"backends.{name} must be a table of the backend's options such as "
                    f"[backends.{name}], got {_show(options)}.",
                )
            found[name] = dict(options)
        return found

    def storage(self, table: Mapping[str, Any]) -> StorageConfig:
        self.keys(table, ("storage",), ("database",))
        text = self.string(table, ("storage", "database"), "the path of a database file")
        if text is None:
            return StorageConfig()
        path = Path(text).expanduser()
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path  # relative to the config file, not the cwd
        return StorageConfig(database=path)

    def keys(self, table: Mapping[str, Any], where: KeyPath, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else f"the keys allowed there are {', '.join(allowed)}."
                )
                raise self.error(
                    (*where, key), f"unknown key '{key}' in {_table_name(where)}; {hint}"
                )

    def table(self, parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, Mapping):
            raise self.error((key,), f"{key} must be a table such as [{key}], got {_show(value)}.")
        return value

    def numbers(
        self, table: Mapping[str, Any], where: KeyPath, spec: _Spec, *, check_keys: bool = True
    ) -> dict[str, float | None]:
        if check_keys:
            self.keys(table, where, tuple(spec))
        result: dict[str, float | None] = {}
        for key, (what, default, positive, forever) in spec.items():
            result[key] = default
            if key in table:
                result[key] = self.number(table[key], (*where, key), what, positive, forever)
        return result

    def number(
        self, value: Any, where: KeyPath, what: str, positive: bool, forever: bool = False
    ) -> float | None:
        key = where[-1]
        if forever and isinstance(value, str) and value.strip().lower() in ("forever", "none"):
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            also = ' or "forever"' if forever else ""
            raise self.error(where, f"{key} must be {what}{also}, got {_show(value)}.")
        if not math.isfinite(value):
            raise self.error(where, f"{key} must be a finite number, got {value}.")
        if positive and value <= 0:
            raise self.error(where, f"{key} must be greater than 0, got {value}.")
        if value < 0:
            raise self.error(where, f"{key} cannot be negative, got {value}.")
        return float(value)

    def retention_order(self, days: dict[str, float | None]) -> None:
        """Each coarser resolution must be kept at least as long as the finer one before it."""
        names = list(_RETENTION)
        for finer, coarser in itertools.pairwise(names):
            a, b = days[finer], days[coarser]
            if b is not None and (a is None or b < a):
                raise self.error(
                    ("retention", coarser),
                    f"{coarser} ({b:g}) must be at least {finer} "
                    f"({'forever' if a is None else f'{a:g}'}): coarser data is kept longer.",
                )

    def flag(self, table: Mapping[str, Any], where: KeyPath) -> bool:
        key = str(where[-1])
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise self.error(where, f"{key} must be true or false, got {_show(value)}.")
        return value

    def string(self, table: Mapping[str, Any], where: KeyPath, what: str) -> str | None:
        key = str(where[-1])
        if key not in table:
            return None
        value = table[key]
        if key == "date" and not isinstance(value, str | int | float | list | dict):
            return str(value)  # a TOML date; bool is an int
        if not isinstance(value, str) or not value.strip():
            raise self.error(where, f"{key} must be {what}, got {_show(value)}.")
        return value

    def currency(self, cost_t: Mapping[str, Any]) -> str | None:
        what = 'a three-letter currency code such as "USD"'
        value = self.string(cost_t, ("cost", "currency"), what)
        if value is not None and not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
            raise self.error(("cost", "currency"), f"currency must be {what}, got {_show(value)}.")
        return value.strip().upper() if value else None

    def gpu_rows(self, cost_t: Mapping[str, Any]) -> tuple[PriceRow, ...]:
        raw_rows = cost_t.get("gpu", [])
        if not isinstance(raw_rows, list) or not all(isinstance(r, Mapping) for r in raw_rows):
            raise self.error(("cost", "gpu"), "gpu must be [[cost.gpu]] tables, one per model.")
        return tuple(self.gpu_row(raw, ("cost", "gpu", i)) for i, raw in enumerate(raw_rows))

    def gpu_row(self, raw: Mapping[str, Any], where: KeyPath) -> PriceRow:
        self.keys(raw, where, _GPU_KEYS)
        for required in ("name", "hourly"):
            if required not in raw:
                raise self.error(where, f"{_table_name(where)} needs a '{required}' key.")
        name = self.string(raw, (*where, "name"), "the GPU model's name")
        hourly = self.number(raw["hourly"], (*where, "hourly"), "a price per hour", False)
        assert name is not None and hourly is not None
        match = raw.get("match", [])
        if isinstance(match, str):
            match = [match]
        if not isinstance(match, list) or not all(isinstance(m, str) and m for m in match):
            raise self.error(
                (*where, "match"),
                'match must be a list of device-name patterns such as ["A100.*80GB"], '
                f"got {_show(raw['match'])}.",
            )
        if not match and load_default_pricing().row_for_model(name) is None:
            raise self.error(
                (*where, "match" if "match" in raw else "name"),
                f"'{name}' is not a model in the default price table, so this row needs a "
                "'match' list of device-name patterns.",
            )
        return make_row(
            model=name,
            match=match,
            hourly=hourly,
            source=self.string(raw, (*where, "source"), "a description of where the price is from")
            or f"your configuration ({self.path})",
            date=self.string(raw, (*where, "date"), 'a date such as "2025-01-31"') or "",
            url=self.string(raw, (*where, "url"), "a web address"),
            user=True,
            includes_energy=self.flag(raw, (*where, "includes_energy")),
            path=str(self.path),
            line=self.locator.line_of((*where, "match")),
            key="cost.gpu.match",
        )
