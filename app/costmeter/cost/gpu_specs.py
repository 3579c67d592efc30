"""Published throughput and memory per GPU model (``resources/gpu_specs.toml``).

One row per price row (same model name). Every figure is a dense datasheet figure with its
source; a figure the source does not publish is absent, never guessed.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from costmeter.core.errors import ConfigError

SPECS_RESOURCE = "gpu_specs.toml"
#: The precisions a workload's compute can be scaled by (the table's TFLOPS columns).
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
_NUMBERS = ("memory_gib", "bandwidth_gbs", *(f"{p}_tflops" for p in PRECISIONS))


@dataclass(frozen=True, slots=True)
class GpuSpec:
    model: str
    source: str
    url: str = ""
    date: str = ""
    note: str = ""
    memory_gib: float | None = None
    bandwidth_gbs: float | None = None
    #: Dense TFLOPS by precision; a precision the source does not publish is absent.
    tflops: Mapping[str, float] = field(default_factory=dict)

    def compute(self, precision: str) -> tuple[float | None, str]:
        """TFLOPS for ``precision`` and the column used. TF32 is a tensor-core mode of Ampere
        and later: on a GPU without it, frameworks run the same math in FP32, so FP32 counts."""
        if precision in self.tflops:
            return self.tflops[precision], precision
        if precision == "tf32" and "fp32" in self.tflops:
            return self.tflops["fp32"], "fp32"
        return None, precision


@dataclass(frozen=True, slots=True)
class GpuSpecs:
    rows: tuple[GpuSpec, ...]
    path: str = ""

    def for_model(self, model: str) -> GpuSpec | None:
        for row in self.rows:
            if row.model.casefold() == model.casefold():
                return row
        return None


@functools.cache
def load_gpu_specs() -> GpuSpecs:
    """The table shipped with Costmeter (read once)."""
    try:
        resource = resources.files("costmeter.resources").joinpath(SPECS_RESOURCE)
        text = resource.read_text(encoding="utf-8")
        where = str(resource)
    except ModuleNotFoundError:
        path = Path(__file__).resolve().parents[3] / "resources" / SPECS_RESOURCE
        text = path.read_text(encoding="utf-8")
        where = str(path)
    return parse_gpu_specs(text, path=where)


def parse_gpu_specs(text: str, *, path: str) -> GpuSpecs:
    """Parse a table in the format of ``resources/gpu_specs.toml``; every error names its row."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"The GPU table is not valid TOML: {err}.", path=path) from err
    raw_rows = data.get("gpu", [])
    if not isinstance(raw_rows, list):
        raise ConfigError("gpu must be an array of tables ([[gpu]]).", path=path, key="gpu")
    rows = [_row(raw, i, path) for i, raw in enumerate(raw_rows)]
    seen: set[str] = set()
    for row in rows:
        if row.model.casefold() in seen:
            raise ConfigError(f"'{row.model}' has two rows.", path=path, key="gpu")
        seen.add(row.model.casefold())
    return GpuSpecs(tuple(rows), path)


def _row(raw: Any, i: int, path: str) -> GpuSpec:
    prefix = f"gpu[{i}]."
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a table.", path=path, key=prefix.rstrip("."))
    texts: dict[str, str] = {}
    for key in ("name", "source", "url", "date", "note"):
        value = raw.get(key, "")
        if not isinstance(value, str) or (key in ("name", "source") and not value.strip()):
            raise ConfigError(f"{key} must be a non-empty string.", path=path, key=prefix + key)
        texts[key] = value
    numbers: dict[str, float] = {}
    for key in _NUMBERS:
        if key not in raw:
            continue
        value = raw[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value <= 0:
            raise ConfigError(
                f"{key} must be a positive number, got {value!r}.", path=path, key=prefix + key
            )
        numbers[key] = float(value)
    unknown = set(raw) - set(_NUMBERS) - set(texts)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(sorted(unknown))}.", path=path, key=prefix.rstrip(".")
        )
    return GpuSpec(
        model=texts["name"],
        source=texts["source"],
        url=texts["url"],
        date=texts["date"],
        note=texts["note"],
        memory_gib=numbers.get("memory_gib"),
        bandwidth_gbs=numbers.get("bandwidth_gbs"),
        tflops={p: numbers[f"{p}_tflops"] for p in PRECISIONS if f"{p}_tflops" in numbers},
    )
