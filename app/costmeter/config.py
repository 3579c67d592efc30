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

from costmeter.config_locator import KeyLocator, KeyPath, key_name, syntax_error
from costmeter.core import bounds
from costmeter.core.errors import ConfigError
from costmeter.core.units import parse_duration
from costmeter.cost.owner_keys import DIMENSIONS, AttributionRule, check_dimension
from costmeter.cost.pricing import PriceRow, Pricing, load_default_pricing, make_row


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
    #: Keeping one GB of run output for a month (overrides ``[storage]`` of the price table).
    storage_gb_month: float | None = None
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
class AgentConfig:
    """``[agent]``: the limits of ``costmeter agent``'s server (docs/AGENT.md)."""

    max_connections: int = 512
    max_per_client: int = 32
    request_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    """``[attribution]``: who pays. ``rules`` map users, accounts or namespaces to a project
    (first match wins; a run's ``project`` tag wins over them)."""

    #: OpenCost's shareIdle: machine idle spread over the owners in proportion to their cost.
    share_idle: bool = False
    rules: tuple[AttributionRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Budget:
    """A ``[[budgets]]`` entry: money per day and/or month for one owner (``by`` = ``key``)."""

    by: str
    key: str
    daily: float | None = None
    monthly: float | None = None


@dataclass(frozen=True, slots=True)
class StorageConfig:
    #: The database file; None = the default in the user data directory.
    database: Path | None = None


#: What a remote host speaks: a Costmeter agent, or any Prometheus exporter's /metrics.
HOST_KINDS = ("agent", "prometheus")


@dataclass(frozen=True, slots=True)
class RemoteHostConfig:
    """A ``[hosts.NAME]`` table: a machine whose samples are pulled over HTTP(S).

    The token is read from ``token_file`` (which must not be readable by others), or from the
    OS keyring (service "costmeter", user NAME) when ``token_keyring`` is true; neither means
    no token (an agent on 127.0.0.1 without one).
    """

    name: str
    url: str
    kind: str = "agent"
    token_file: Path | None = None
    token_keyring: bool = False
    enabled: bool = True


#: What a ``[sources.NAME]`` speaks: the Prometheus HTTP query API (Prometheus, VictoriaMetrics,
#: Thanos, Mimir).
SOURCE_KINDS = ("prometheus",)


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """A ``[sources.NAME]`` table: a server whose stored history of dcgm-exporter and
    node_exporter series is read through its query API (costmeter.service.remote.prom_source).

    ``match`` is a label selector (``{cluster="a"}``) merged into every query; ``backfill_s`` is
    how far back history is filled when nothing is stored yet (0 = follow only); ``step_s`` is the
    query step (at most 60 s). The token is found as for hosts.
    """

    name: str
    url: str
    kind: str = "prometheus"
    token_file: Path | None = None
    token_keyring: bool = False
    match: str | None = None
    backfill_s: float = 7 * 86400
    step_s: float = 60.0
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    #: ``[backends.NAME]`` tables: each run backend's options as parsed TOML (the backend
    #: checks them; Costmeter passes them as ``BackendConfig.options``).
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    #: ``[hosts.NAME]`` tables: remote machines to pull samples from, in file order.
    hosts: tuple[RemoteHostConfig, ...] = ()
    #: ``[sources.NAME]`` tables: Prometheus-compatible servers to read history from, file order.
    sources: tuple[SourceConfig, ...] = ()
    #: ``[advice]``: rule thresholds over their defaults (``costmeter.advice.thresholds``),
    #: numbers by key; the advice package checks the keys.
    advice: Mapping[str, float] = field(default_factory=dict, hash=False)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    #: ``[[budgets]]``: budgets per owner, in file order.
    budgets: tuple[Budget, ...] = ()
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
        if c.storage_gb_month is not None:
            changes.update(
                storage_gb_month=c.storage_gb_month,
                storage_source=where,
                storage_date="",
                storage_url=None,
            )
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
        raise syntax_error(path, text, err) from err
    return _Builder(path, text).build(data)


#: key -> (what it is, its bound, its default, whether "forever" is allowed).
_Spec = dict[str, tuple[str, bounds.Bound, float | None, bool]]
_SECONDS, _DAYS = "a number of seconds", "a number of days"
_SAMPLING: _Spec = {
    "interval_s": (_SECONDS, bounds.INTERVAL_S, 1.0, False),
    "process_scan_interval_s": (_SECONDS, bounds.SCAN_INTERVAL_S, 10.0, False),
}
_RETENTION: _Spec = {
    "raw_days": (_DAYS, bounds.RETENTION_DAYS, 7.0, True),
    "minute_days": (_DAYS, bounds.RETENTION_DAYS, 90.0, True),
    "hour_days": (_DAYS, bounds.RETENTION_DAYS, None, True),
}
_COST: _Spec = {
    "tariff_per_kwh": ("a price per kWh", bounds.PRICE_PER_KWH, None, False),
    "carbon_g_per_kwh": (
        "a number of grams of CO2e per kWh",
        bounds.CARBON_G_PER_KWH,
        None,
        False,
    ),
    "cpu_core_hour": ("a price per core-hour", bounds.PRICE_PER_CORE_HOUR, None, False),
    "cpu_tdp_w": ("a power in watts", bounds.POWER_W, None, False),
    "storage_gb_month": ("a price per GB-month", bounds.PRICE_PER_GB_MONTH, None, False),
}
_ALERTS: _Spec = {
    "idle_allocated_minutes": ("a number of minutes", bounds.MINUTES, 30.0, False),
    "daily_budget": ("an amount of money per day", bounds.BUDGET, None, False),
}
_AGENT: _Spec = {
    "max_connections": ("a number of connections", bounds.CONNECTIONS, 512, False),
    "max_per_client": ("a number of connections", bounds.CONNECTIONS, 32, False),
    "request_timeout_s": (_SECONDS, bounds.REQUEST_TIMEOUT_S, 5.0, False),
}
_GPU_KEYS = ("name", "match", "hourly", "source", "date", "url", "includes_energy")


#: One label matcher of a PromQL selector: name, operator, double-quoted value.
_MATCHER = re.compile(r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*')


def check_selector(text: str) -> str:
    """``text`` as a PromQL label selector ``{a="x", b=~"y.*"}`` (braces added when missing);
    ValueError saying what is wrong otherwise. Only label matchers: a metric name or anything
    else could not be merged into each query."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    elif "{" in body or "}" in body:
        raise ValueError(f'match must be a label selector such as {{cluster="a"}}, got {text!r}.')
    parts = [p for p in _split_matchers(body) if p.strip()]
    if not parts:
        raise ValueError(f'match must hold at least one matcher such as cluster="a", got {text!r}.')
    for part in parts:
        if not _MATCHER.fullmatch(part):
            raise ValueError(
                f"match holds {part.strip()!r}, which is no label matcher; write "
                'label="value" (or !=, =~, !~) with double quotes, such as {cluster="a"}.'
            )
    return "{" + ", ".join(p.strip() for p in parts) + "}"


def _split_matchers(body: str) -> list[str]:
    """``body`` split at the commas outside double-quoted values."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in body:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _table_name(path: KeyPath) -> str:
    if not path:
        return "the top level"
    if isinstance(path[-1], int):
        return f"[[{key_name(path)}]] (entry {path[-1] + 1})"
    return f"[{key_name(path)}]"


def number_problem(key: str, value: float) -> str | None:
    """What the loader would say about ``value`` for the dotted ``key`` ("sampling.interval_s"),
    or None when it is accepted (or the key is no bounded number): for forms that check a field
    before building a configuration."""
    table, _, leaf = key.rpartition(".")
    spec = {"sampling": _SAMPLING, "retention": _RETENTION, "cost": _COST, "alerts": _ALERTS}
    if table not in spec or leaf not in spec[table]:
        return None
    _what, bound, _default, forever = spec[table][leaf]
    return _bound_problem(leaf, value, bound, forever)


def _bound_problem(key: str, value: float, bound: bounds.Bound, forever: bool) -> str | None:
    if bound.allows(value):
        return None
    also = ' (or "forever")' if forever else ""
    return (
        f"{key} {_out_of_bounds(value, bound)}, got {bounds.show(value)}; give "
        f"{bound.range_text()}{also}."
    )


def _out_of_bounds(value: float, bound: bounds.Bound) -> str:
    """Why a number is outside ``bound``, in the words a person expects first."""
    if not math.isfinite(value):
        return "must be a finite number"
    if bound.integer and not float(value).is_integer():
        return "must be a whole number"
    if value < 0 <= bound.low:
        return "cannot be negative"
    if value <= 0 and (bound.low > 0 or bound.low_open):
        return "must be greater than 0"
    return "is too small" if value < bound.low else "is too large"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class _Builder:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.locator = KeyLocator(text)

    def error(self, where: KeyPath, message: str) -> ConfigError:
        line = self.locator.line_of(where)
        return ConfigError(message, path=str(self.path), line=line, key=key_name(where))

    def build(self, data: Mapping[str, Any]) -> Config:
        self.keys(
            data,
            (),
            (
                "sampling",
                "retention",
                "cost",
                "alerts",
                "storage",
                "backends",
                "hosts",
                "sources",
                "advice",
                "agent",
                "attribution",
                "budgets",
            ),
        )
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
            hosts=self.hosts(self.table(data, "hosts")),
            sources=self.sources(self.table(data, "sources")),
            advice=self.advice(self.table(data, "advice")),
            agent=self.agent(self.table(data, "agent")),
            attribution=self.attribution(self.table(data, "attribution")),
            budgets=self.budgets(data.get("budgets", [])),
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

    def hosts(self, table: Mapping[str, Any]) -> tuple[RemoteHostConfig, ...]:
        found = []
        for name, raw in table.items():
            where: KeyPath = ("hosts", name)
            if not isinstance(raw, Mapping):
                raise self.error(
                    where,
                    f"hosts.{name} must be a table such as [hosts.{name}] with url = "
                    f'"http://HOST:9464", got {_show(raw)}.',
                )
            self.keys(raw, where, ("url", "kind", "token_file", "token", "enabled"))
            url = self.string(raw, (*where, "url"), "the host's URL (http://HOST:PORT)")
            if not url or not url.lower().startswith(("http://", "https://")):
                raise self.error(
                    (*where, "url"),
                    f'hosts.{name} needs url = "http://HOST:PORT" (or https://), got '
                    f"{_show(raw.get('url'))}.",
                )
            kind = self.string(raw, (*where, "kind"), "agent or prometheus") or "agent"
            if kind not in HOST_KINDS:
                raise self.error(
                    (*where, "kind"), f"kind must be agent or prometheus, got {_show(kind)}."
                )
            token_file, token = self.token(raw, where)
            enabled = self.flag(raw, (*where, "enabled")) if "enabled" in raw else True
            found.append(
                RemoteHostConfig(
                    name=str(name),
                    url=url.rstrip("/"),
                    kind=kind,
                    token_file=token_file,
                    token_keyring=token == "keyring",
                    enabled=enabled,
                )
            )
        return tuple(found)

    def token(self, raw: Mapping[str, Any], where: KeyPath) -> tuple[Path | None, str | None]:
        """``token_file`` (relative to this file's folder) and ``token`` ("keyring" or None)."""
        token_file = None
        text = self.string(raw, (*where, "token_file"), "the path of a token file")
        if text:
            token_file = Path(text).expanduser()
            if not token_file.is_absolute() and self.path is not None:
                token_file = self.path.parent / token_file
        token = self.string(raw, (*where, "token"), '"keyring"')
        if token not in (None, "keyring"):
            raise self.error(
                (*where, "token"),
                'token can only be "keyring" (the token itself is never kept in this file; '
                "use token_file for a file), got a different value.",
            )
        return token_file, token

    def sources(self, table: Mapping[str, Any]) -> tuple[SourceConfig, ...]:
        found = []
        for name, raw in table.items():
            where: KeyPath = ("sources", name)
            if not isinstance(raw, Mapping):
                raise self.error(
                    where,
                    f"sources.{name} must be a table such as [sources.{name}] with url = "
                    f'"http://HOST:9090", got {_show(raw)}.',
                )
            self.keys(
                raw,
                where,
                ("url", "kind", "token_file", "token", "match", "backfill", "step", "enabled"),
            )
            url = self.string(raw, (*where, "url"), "the server's URL (http://HOST:9090)")
            if not url or not url.lower().startswith(("http://", "https://")):
                raise self.error(
                    (*where, "url"),
                    f'sources.{name} needs url = "http://HOST:9090" (or https://), got '
                    f"{_show(raw.get('url'))}.",
                )
            kind = self.string(raw, (*where, "kind"), "prometheus") or "prometheus"
            if kind not in SOURCE_KINDS:
                raise self.error((*where, "kind"), f"kind must be prometheus, got {_show(kind)}.")
            token_file, token = self.token(raw, where)
            match = self.string(raw, (*where, "match"), 'a label selector such as {cluster="a"}')
            if match is not None:
                try:
                    match = check_selector(match)
                except ValueError as err:
                    raise self.error((*where, "match"), str(err)) from None
            backfill = self.duration(raw, (*where, "backfill"), bounds.BACKFILL_S, 7 * 86400.0)
            step = self.duration(raw, (*where, "step"), bounds.QUERY_STEP_S, 60.0)
            enabled = self.flag(raw, (*where, "enabled")) if "enabled" in raw else True
            found.append(
                SourceConfig(
                    name=str(name),
                    url=url.rstrip("/"),
                    kind=kind,
                    token_file=token_file,
                    token_keyring=token == "keyring",
                    match=match,
                    backfill_s=backfill,
                    step_s=step,
                    enabled=enabled,
                )
            )
        return tuple(found)

    def duration(
        self, table: Mapping[str, Any], where: KeyPath, bound: bounds.Bound, default: float
    ) -> float:
        """A number of seconds or a duration string ("7d", "12h", "90m", "30s")."""
        key = str(where[-1])
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, str):
            try:
                return parse_duration(value, bound, key)
            except ValueError as err:
                raise self.error(where, str(err)) from None
        number = self.number(value, where, f'{bound.what} (or a duration such as "7d")', bound)
        assert number is not None
        return number

    def attribution(self, table: Mapping[str, Any]) -> AttributionConfig:
        where: KeyPath = ("attribution",)
        self.keys(table, where, ("share_idle", "rules"))
        raw_rules = table.get("rules", [])
        if not isinstance(raw_rules, list) or not all(isinstance(r, Mapping) for r in raw_rules):
            raise self.error(
                (*where, "rules"),
                "rules must be [[attribution.rules]] tables, each with a project and users, "
                f"accounts or namespaces, got {_show(raw_rules)}.",
            )
        return AttributionConfig(
            share_idle=self.flag(table, (*where, "share_idle")),
            rules=tuple(self.rule(r, (*where, "rules", i)) for i, r in enumerate(raw_rules)),
        )

    def rule(self, raw: Mapping[str, Any], where: KeyPath) -> AttributionRule:
        lists = ("users", "accounts", "namespaces")
        self.keys(raw, where, ("project", *lists))
        if "project" not in raw:
            raise self.error(where, f"{_table_name(where)} needs a 'project' key.")
        project = self.string(raw, (*where, "project"), "the project's name")
        assert project is not None
        found = {name: self.patterns(raw, (*where, name)) for name in lists}
        if not any(found.values()):
            raise self.error(
                where,
                f"{_table_name(where)} (project {project!r}) matches nothing: give users, "
                'accounts or namespaces, such as users = ["alice", "bob"].',
            )
        return AttributionRule(project=project.strip(), **found)

    def patterns(self, table: Mapping[str, Any], where: KeyPath) -> tuple[str, ...]:
        key = str(where[-1])
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.error(
                where,
                f"{key} must be a list of names or glob patterns such as "
                f'["alice", "vision-*"], got {_show(table.get(key))}.',
            )
        return tuple(v.strip() for v in value)

    def budgets(self, raw: Any) -> tuple[Budget, ...]:
        if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
            raise self.error(
                ("budgets",),
                "budgets must be [[budgets]] tables, each with by, key and daily or monthly, "
                f"got {_show(raw)}.",
            )
        return tuple(self.budget(r, ("budgets", i)) for i, r in enumerate(raw))

    def budget(self, raw: Mapping[str, Any], where: KeyPath) -> Budget:
        self.keys(raw, where, ("by", "key", "daily", "monthly"))
        for required in ("by", "key"):
            if required not in raw:
                raise self.error(where, f"{_table_name(where)} needs a '{required}' key.")
        dims = f"{', '.join(DIMENSIONS)} or tag:KEY"
        by = self.string(raw, (*where, "by"), f"a dimension ({dims})")
        assert by is not None
        try:
            by = check_dimension(by)
        except ValueError:
            close = difflib.get_close_matches(by.strip().lower(), DIMENSIONS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise self.error(
                (*where, "by"), f"by must be a dimension, got {_show(by)}; {hint}give {dims}."
            ) from None
        key = self.string(raw, (*where, "key"), "the owner's name (such as a project or user)")
        assert key is not None
        amounts = {
            name: self.number(raw[name], (*where, name), f"an amount of money per {per}",
                              bounds.BUDGET)
            for name, per in (("daily", "day"), ("monthly", "month"))
            if name in raw
        }  # fmt: skip
        if not amounts:
            raise self.error(
                where, f"{_table_name(where)} ({by} = {key!r}) needs daily or monthly (or both)."
            )
        return Budget(by=by, key=key, **amounts)

    def agent(self, table: Mapping[str, Any]) -> AgentConfig:
        got = self.numbers(table, ("agent",), _AGENT)
        return AgentConfig(
            max_connections=int(got["max_connections"] or 0),
            max_per_client=int(got["max_per_client"] or 0),
            request_timeout_s=float(got["request_timeout_s"] or 0.0),
        )

    def advice(self, table: Mapping[str, Any]) -> dict[str, float]:
        from costmeter.advice.thresholds import Thresholds

        found: dict[str, float] = {}
        for key, value in table.items():
            bound = bounds.advice_bound(str(key))
            number = self.number(value, ("advice", key), bound.what, bound)
            assert number is not None
            try:  # the advice package knows its keys and their ranges
                Thresholds.from_mapping({str(key): number})
            except ConfigError as exc:
                raise self.error(("advice", str(key)), exc.message) from None
            found[str(key)] = number
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
        for key, (what, bound, default, forever) in spec.items():
            result[key] = default
            if key in table:
                result[key] = self.number(table[key], (*where, key), what, bound, forever)
        return result

    def number(
        self, value: Any, where: KeyPath, what: str, bound: bounds.Bound, forever: bool = False
    ) -> float | None:
        """``value`` as a float inside ``bound``; a ConfigError naming the key, the value and
        the bound otherwise (TOML has ``nan`` and ``inf`` literals: both are refused)."""
        key = where[-1]
        if forever and isinstance(value, str) and value.strip().lower() in ("forever", "none"):
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            also = ' or "forever"' if forever else ""
            raise self.error(
                where,
                f"{key} must be {what}{also}, got {_show(value)}; give {bound.range_text()}.",
            )
        problem = _bound_problem(str(key), value, bound, forever)
        if problem is None:
            return float(value)
        raise self.error(where, problem)

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
        hourly = self.number(
            raw["hourly"], (*where, "hourly"), "a price per hour", bounds.PRICE_PER_GPU_HOUR
        )
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
