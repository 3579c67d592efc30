"""Price tables: what a GPU costs per hour, electricity per kWh, its carbon, CPU core-hours and
storage per GB-month.

The default table ships as ``resources/pricing.toml``; every figure in it names its source and
date. A user's configuration adds rows or overrides figures (see ``costmeter.config``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from costmeter.core.errors import ConfigError

PRICING_RESOURCE = "pricing.toml"


@dataclass(frozen=True, slots=True)
class PriceRow:
    """The hourly price of one GPU model and the NVML names it applies to.

    ``match`` holds case-insensitive regular expressions searched for in the NVML device name.
    ``user`` marks rows from the user's configuration: they win over the defaults.
    ``includes_energy``: the hourly price already pays for the electricity (a cloud rental), so
    the energy is reported but not charged again; False for owned hardware, whose hourly price is
    what the card costs over its life and whose electricity is billed apart.
    """

    model: str
    match: tuple[str, ...]
    hourly: float
    source: str
    date: str = ""
    url: str | None = None
    user: bool = False
    includes_energy: bool = False
    _patterns: tuple[re.Pattern[str], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Raises re.error on a malformed pattern; callers turn that into a ConfigError.
        patterns = tuple(re.compile(m, re.IGNORECASE) for m in self.match)
        object.__setattr__(self, "_patterns", patterns)

    def specificity(self, device_name: str) -> int | None:
        """Length of the longest part of ``device_name`` a pattern matches; None if none does."""
        best: int | None = None
        for pattern in self._patterns:
            found = pattern.search(device_name)
            if found is not None:
                length = found.end() - found.start()
                best = length if best is None else max(best, length)
        return best


#: A MIG GPU instance's device name ("NVIDIA A100-SXM4-40GB MIG 1g.5gb").
MIG_INSTANCE = re.compile(r"\bMIG\b")
MIG_SOURCE = (
    "a MIG instance: the hourly price is charged once, on its physical GPU (add a [[cost.gpu]] "
    "row matching MIG to price instances instead)"
)


@dataclass(frozen=True, slots=True)
class PriceMatch:
    """The price that applies to one device; ``row`` is None when the model is unknown."""

    hourly: float
    row: PriceRow | None
    source: str
    #: Known without a row of its own: a MIG instance, whose GPU is priced once, on the parent.
    priced_elsewhere: bool = False

    @property
    def known(self) -> bool:
        return self.row is not None or self.priced_elsewhere


@dataclass(frozen=True, slots=True)
class Pricing:
    currency: str
    gpu_rows: tuple[PriceRow, ...]
    unknown_gpu_hourly: float
    unknown_gpu_source: str
    tariff_per_kwh: float
    tariff_source: str
    tariff_date: str
    carbon_g_per_kwh: float
    carbon_source: str
    carbon_date: str
    cpu_core_hour: float
    cpu_core_hour_source: str
    cpu_core_hour_date: str
    cpu_tdp_w: float
    cpu_tdp_source: str
    #: Keeping one GB (10^9 bytes) for one month: runs' outputs (``[storage]``, issue 16).
    storage_gb_month: float = 0.0
    storage_source: str = "no storage price: add [cost] storage_gb_month to your configuration"
    storage_date: str = ""
    storage_url: str | None = None

    def gpu_price(self, nvml_name: str) -> PriceMatch:
        """The price for a device name: user rows first, then the most specific match."""
        best: tuple[bool, int] | None = None
        chosen: PriceRow | None = None
        for row in self.gpu_rows:
            length = row.specificity(nvml_name)
            if length is None:
                continue
            rank = (row.user, length)
            if best is None or rank > best:
                best, chosen = rank, row
        if MIG_INSTANCE.search(nvml_name) and (chosen is None or not chosen.user):
            # The physical GPU is a device of its own and pays the hourly price; charging each
            # instance the model's price too would count the GPU once per instance.
            return PriceMatch(0.0, None, MIG_SOURCE, priced_elsewhere=True)
        if chosen is None:
            return PriceMatch(self.unknown_gpu_hourly, None, self.unknown_gpu_source)
        return PriceMatch(chosen.hourly, chosen, chosen.source)

    def merged(self, overrides: Iterable[PriceRow]) -> Pricing:
        """A copy where each override replaces the row of the same model or is added.

        Model names compare case-insensitively. Override rows are marked as the user's.
        """
        rows = list(self.gpu_rows)
        for override in overrides:
            row = override if override.user else dataclasses.replace(override, user=True)
            for i, existing in enumerate(rows):
                if existing.model.casefold() == row.model.casefold():
                    rows[i] = row
                    break
            else:
                rows.append(row)
        return dataclasses.replace(self, gpu_rows=tuple(rows))

    def row_for_model(self, model: str) -> PriceRow | None:
        for row in self.gpu_rows:
            if row.model.casefold() == model.casefold():
                return row
        return None

    def replace(self, **changes: Any) -> Pricing:
        return dataclasses.replace(self, **changes)


@functools.cache
def load_default_pricing() -> Pricing:
    """The price table shipped with Costmeter (read once; ``Pricing`` is immutable)."""
    try:
        resource = resources.files("costmeter.resources").joinpath(PRICING_RESOURCE)
        text = resource.read_text(encoding="utf-8")
        where = str(resource)
    except ModuleNotFoundError:
        # A source checkout whose install does not map costmeter.resources: read it directly.
        path = Path(__file__).resolve().parents[3] / "resources" / PRICING_RESOURCE
        text = path.read_text(encoding="utf-8")
        where = str(path)
    return parse_pricing(text, path=where)


def parse_pricing(text: str, *, path: str) -> Pricing:
    """Parse a price table in the format of ``resources/pricing.toml``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"The price table is not valid TOML: {err}.", path=path) from err
    return pricing_from_dict(data, path=path)


def pricing_from_dict(data: Mapping[str, Any], *, path: str) -> Pricing:
    get = _Getter(data, path)
    rows = []
    rentals = data.get("gpu_prices_include_energy", False) is True
    for i, raw in enumerate(get.table_list("gpu")):
        row_get = _Getter(raw, path, prefix=f"gpu[{i}].")
        rows.append(
            make_row(
                model=row_get.string("name"),
                match=row_get.string_list("match"),
                hourly=row_get.number("hourly"),
                source=row_get.string("source"),
                date=row_get.string("date", default=""),
                url=row_get.optional_string("url"),
                includes_energy=raw.get("includes_energy", rentals) is True,
                path=path,
                key=f"gpu[{i}].match",
            )
        )
    elec = _Getter(get.table("electricity"), path, prefix="electricity.")
    carbon = _Getter(get.table("carbon"), path, prefix="carbon.")
    cpu = _Getter(get.table("cpu"), path, prefix="cpu.")
    unknown = _Getter(get.table("unknown_gpu"), path, prefix="unknown_gpu.")
    storage: dict[str, Any] = {}
    if "storage" in data:  # optional: a table without it prices storage at 0, and says so
        disk = _Getter(get.table("storage"), path, prefix="storage.")
        storage = {
            "storage_gb_month": disk.number("gb_month"),
            "storage_source": disk.string("source"),
            "storage_date": disk.string("date", default=""),
            "storage_url": disk.optional_string("url"),
        }
    return Pricing(
        currency=get.string("currency"),
        gpu_rows=tuple(rows),
        unknown_gpu_hourly=unknown.number("hourly"),
        unknown_gpu_source=unknown.string("source"),
        tariff_per_kwh=elec.number("tariff_per_kwh"),
        tariff_source=elec.string("source"),
        tariff_date=elec.string("date", default=""),
        carbon_g_per_kwh=carbon.number("g_per_kwh"),
        carbon_source=carbon.string("source"),
        carbon_date=carbon.string("date", default=""),
        cpu_core_hour=cpu.number("core_hour"),
        cpu_core_hour_source=cpu.string("source"),
        cpu_core_hour_date=cpu.string("date", default=""),
        cpu_tdp_w=cpu.number("tdp_w"),
        cpu_tdp_source=cpu.string("tdp_source"),
        **storage,
    )


def make_row(
    *,
    model: str,
    match: Iterable[str],
    hourly: float,
    source: str,
    date: str = "",
    url: str | None = None,
    user: bool = False,
    includes_energy: bool = False,
    path: str | None = None,
    line: int | None = None,
    key: str | None = None,
) -> PriceRow:
    """Build a row, reporting a malformed pattern as a ConfigError."""
    try:
        return PriceRow(
            model, tuple(match), float(hourly), source, date, url, user, includes_energy
        )
    except re.error as err:
        raise ConfigError(
            f"{err.pattern!r} is not a valid regular expression: {err}.",
            path=path,
            line=line,
            key=key,
        ) from err


class _Getter:
    """Typed access to one table of the shipped price file."""

    def __init__(self, data: Any, path: str, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{prefix.rstrip('.') or 'the file'} must be a table.", path=path)
        self.data = data
        self.path = path
        self.prefix = prefix

    def _fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{key} must be {what}.", path=self.path, key=self.prefix + key)

    def _get(self, key: str, default: Any = None) -> Any:
        if key not in self.data:
            if default is not None:
                return default
            raise ConfigError(f"{key} is missing.", path=self.path, key=self.prefix + key)
        return self.data[key]

    def string(self, key: str, default: str | None = None) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            value = str(value) if key == "date" else value  # TOML dates are allowed here
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.data else None

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self._fail(key, "a number of at least 0")
        return float(value)

    def string_list(self, key: str) -> list[str]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings")
        return value

    def table(self, key: str) -> Mapping[str, Any]:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise self._fail(key, "a table")
        return value

    def table_list(self, key: str) -> list[Mapping[str, Any]]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise self._fail(key, "an array of tables")
        return value
