"""What the log parsers produce: readings, the devices they belong to, and per-line errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from costmeter.core.errors import CostmeterError
from costmeter.core.model import DeviceSample


class ImportFormatError(CostmeterError):
    """The file as a whole cannot be read (no header, a required column missing, not text)."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One line that was skipped, and why (``line`` counts from 1, as editors do)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line} ({self.message})"


@dataclass
class DeviceMeta:
    """What the file says about one GPU; filled in as its rows are read."""

    key: str
    index: int
    uuid: str
    name: str
    memory_total: int | None = None
    power_limit_w: float | None = None
    #: True when ``uuid`` was made up from host, index and name (the file had no uuid column).
    synthetic_uuid: bool = False


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one instant, from line ``line`` of the file."""

    line: int
    device: DeviceMeta
    sample: DeviceSample


def synthetic_uuid(host: str, key: str, name: str) -> str:
    """A stable stand-in for a GPU UUID: the same host, GPU and name always give the same one,
    so importing a file again finds the same device."""
    digest = hashlib.sha256(f"{host}\0{key}\0{name}".encode()).hexdigest()
    return f"GPU-imported-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:28]}"


def show(value: str, limit: int = 40) -> str:
    """A cell as an error message quotes it: trimmed, control characters escaped."""
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)
