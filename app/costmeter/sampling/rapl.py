"""CPU package energy from Linux's RAPL powercap interface (Intel, and AMD since Linux 5.8).

Only top-level package domains (``intel-rapl:N`` named ``package-N``) are read: their
subdomains (core, uncore, dram) are parts of the package or separate, and adding them would
count energy twice. ``intel-rapl-mmio`` mirrors the package domain on some laptops and is skipped
for the same reason.
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_ROOT = Path("/sys/class/powercap")

_PACKAGE_DIR = re.compile(r"^(?:intel|amd)-rapl:(\d+)$")

NO_RAPL = "No RAPL interface at {root} (this CPU or kernel does not expose it)."
NO_PACKAGES = "No RAPL package domains under {root} (this CPU or kernel does not expose them)."
ROOT_ONLY = (
    "RAPL counters are readable only by root since Linux 5.10 (CVE-2020-8694); run "
    "`sudo chmod o+r {root}/intel-rapl:*/energy_uj` or run as root."
)


class RaplReader:
    """Reads the package energy counters; ``available`` and ``reason`` say whether it can."""

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = root
        self.available = False
        self.reason = ""
        self.domains: tuple[Path, ...] = ()
        self.ranges_uj: tuple[int, ...] = ()
        self._discover()

    def _discover(self) -> None:
        if not self.root.is_dir():
            self.reason = NO_RAPL.format(root=self.root)
            return
        found: list[tuple[int, Path]] = []
        try:
            entries = list(self.root.iterdir())
        except OSError as err:
            self.reason = f"The RAPL interface at {self.root} cannot be listed: {err}."
            return
        for entry in entries:
            match = _PACKAGE_DIR.match(entry.name)
            if match is None:
                continue
            try:
                name = (entry / "name").read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if name.startswith("package"):
                found.append((int(match.group(1)), entry))
        if not found:
            self.reason = NO_PACKAGES.format(root=self.root)
            return
        self.domains = tuple(path for _, path in sorted(found))
        try:
            self.ranges_uj = tuple(_read_int(d / "max_energy_range_uj") for d in self.domains)
            for domain in self.domains:
                _read_int(domain / "energy_uj")
        except PermissionError:
            self.reason = ROOT_ONLY.format(root=self.root)
            return
        except (OSError, ValueError) as err:
            self.reason = f"The RAPL counters cannot be read: {err}."
            return
        self.available = True

    def read(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """Each package's energy counter and its wrap range, in microjoules; None on failure.

        A failure sets ``reason``; losing permission also sets ``available`` to False, while
        other errors are taken as passing and the next read tries again.
        """
        if not self.available:
            return None
        try:
            energies = tuple(_read_int(d / "energy_uj") for d in self.domains)
        except PermissionError:
            self.reason = ROOT_ONLY.format(root=self.root)
            self.available = False
            return None
        except (OSError, ValueError) as err:
            self.reason = f"The RAPL counters cannot be read: {err}."
            return None
        return energies, self.ranges_uj


def _read_int(path: Path) -> int:
    text = path.read_text(encoding="ascii").strip()
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{path} holds {text[:40]!r}, not a whole number") from None
    if value < 0:
        raise ValueError(f"{path} holds a negative number ({value})")
    return value
