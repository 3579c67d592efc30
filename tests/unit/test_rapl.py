"""The RAPL reader on a fake /sys/class/powercap tree (this machine has no RAPL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.core.model import HostSample
from costmeter.cost.energy import EnergyTracker
from costmeter.sampling.rapl import RaplReader

RANGE = 262_143_328_850


def domain(root: Path, dirname: str, name: str, energy: int | str, rng: int = RANGE) -> Path:
    path = root / dirname
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{rng}\n")
    return path


@pytest.fixture
def two_packages(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    domain(root, "intel-rapl:0", "package-0", 1_000)
    domain(root, "intel-rapl:1", "package-1", 2_000, rng=1_000_000)
    # Subdomains, a non-package domain and the mmio mirror must all be ignored.
    domain(root, "intel-rapl:0:0", "core", 500)
    domain(root, "intel-rapl:0:1", "dram", 300)
    domain(root, "intel-rapl:2", "psys", 9_999)
    domain(root, "intel-rapl-mmio:0", "package-0", 1_000)
    (root / "intel-rapl").mkdir()  # the control type directory
    return root


def set_energy(root: Path, dirname: str, value: int) -> None:
    (root / dirname / "energy_uj").write_text(f"{value}\n")


def test_reads_only_package_domains_in_order(two_packages: Path) -> None:
    reader = RaplReader(two_packages)
    assert reader.available, reader.reason
    assert [d.name for d in reader.domains] == ["intel-rapl:0", "intel-rapl:1"]
    assert reader.read() == ((1_000, 2_000), (RANGE, 1_000_000))


def test_amd_packages_are_accepted(tmp_path: Path) -> None:
    domain(tmp_path, "amd-rapl:0", "package-0", 42)
    assert RaplReader(tmp_path).read() == ((42,), (RANGE,))


def test_packages_sort_numerically(tmp_path: Path) -> None:
    for n in (10, 2):
        domain(tmp_path, f"intel-rapl:{n}", f"package-{n}", n)
    assert RaplReader(tmp_path).read() == ((2, 10), (RANGE, RANGE))


def test_a_wrap_across_reads_is_counted_by_the_tracker(two_packages: Path) -> None:
    reader = RaplReader(two_packages)
    tracker = EnergyTracker(max_gap_s=5)

    def sample(ts: float) -> HostSample:
        read = reader.read()
        assert read is not None
        return HostSample(ts, 50.0, (), 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, read[0], read[1])

    set_energy(two_packages, "intel-rapl:1", 999_000)
    tracker.host_interval(sample(0.0), cpu_count=2, tdp_w=100)
    set_energy(two_packages, "intel-rapl:0", 51_000)  # +50_000 uJ
    set_energy(two_packages, "intel-rapl:1", 4_000)  # wrapped: +5_000 uJ
    got = tracker.host_interval(sample(1.0), cpu_count=2, tdp_w=100)
    assert got.energy_measured
    assert got.energy_j == pytest.approx(0.055)


def test_no_powercap_directory(tmp_path: Path) -> None:
    reader = RaplReader(tmp_path / "absent")
    assert not reader.available
    assert reader.reason.startswith("No RAPL interface at ")
    assert "does not expose it" in reader.reason
    assert reader.read() is None


def test_powercap_without_packages(tmp_path: Path) -> None:
    domain(tmp_path, "intel-rapl:0:0", "core", 1)
    reader = RaplReader(tmp_path)
    assert not reader.available and "No RAPL package domains" in reader.reason


def test_permission_denied_explains_the_fix(
    two_packages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, so chmod 000 would not stop the read: simulate the kernel's refusal.
    real = Path.read_text

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", refuse)
    reader = RaplReader(two_packages)
    assert not reader.available
    assert "CVE-2020-8694" in reader.reason
    assert "sudo chmod o+r" in reader.reason and "run as root" in reader.reason
    assert reader.read() is None


def test_permission_lost_after_start(two_packages: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = RaplReader(two_packages)
    assert reader.available

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    assert reader.read() is None
    assert not reader.available and "CVE-2020-8694" in reader.reason


def test_energy_uj_that_is_a_directory(tmp_path: Path) -> None:
    pkg = tmp_path / "intel-rapl:0"
    pkg.mkdir()
    (pkg / "name").write_text("package-0\n")
    (pkg / "energy_uj").mkdir()
    (pkg / "max_energy_range_uj").write_text(f"{RANGE}\n")
    reader = RaplReader(tmp_path)
    assert not reader.available and "cannot be read" in reader.reason


def test_malformed_content(tmp_path: Path) -> None:
    domain(tmp_path, "intel-rapl:0", "package-0", "not-a-number")
    reader = RaplReader(tmp_path)
    assert not reader.available
    assert "not a whole number" in reader.reason and "energy_uj" in reader.reason


def test_content_going_bad_later_is_passing(two_packages: Path) -> None:
    reader = RaplReader(two_packages)
    set_energy(two_packages, "intel-rapl:0", -5)
    assert reader.read() is None
    assert reader.available and "negative" in reader.reason
    set_energy(two_packages, "intel-rapl:0", 5)
    assert reader.read() == ((5, 2_000), (RANGE, 1_000_000))
