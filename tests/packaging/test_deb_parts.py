"""The .deb builder's parts that need no build: ldd/readelf parsing, the control file, the
maintainer scripts, the staged tree (on a fake bundle)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    # packaging/ is not a package (that name would shadow the PyPI library): load by path.
    spec = importlib.util.spec_from_file_location(f"_costmeter_{name}", ROOT / "packaging" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


deb = _load("deb.py")
deb_depends = _load("deb_depends.py")

LDD = """\
\tlinux-vdso.so.1 (0x00007ffd6b3e2000)
\tlibQt6XcbQpa.so.6 => /b/_internal/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x1)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f98bef56000)
\tlibxcb-icccm.so.4 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007febdd0bf000)
"""
READELF = """\
 0x0000000000000001 (NEEDED)             Shared library: [libQt6XcbQpa.so.6]
 0x0000000000000001 (NEEDED)             Shared library: [libxcb-cursor.so.0]
 0x000000000000000e (SONAME)             Library soname: [libqxcb.so]
"""


def test_ldd_output_maps_sonames_to_paths_or_not_found() -> None:
    found = deb_depends.parse_ldd(LDD)
    assert found["libxcb-cursor.so.0"] == "/lib/x86_64-linux-gnu/libxcb-cursor.so.0"
    assert found["libxcb-icccm.so.4"] is None
    assert found["ld-linux-x86-64.so.2"] == "/lib64/ld-linux-x86-64.so.2"
    assert "linux-vdso.so.1" not in found


def test_readelf_gives_only_the_direct_needs() -> None:
    assert deb_depends.parse_needed(READELF) == ["libQt6XcbQpa.so.6", "libxcb-cursor.so.0"]


def test_merged_usr_paths_are_tried_for_dpkg() -> None:
    candidates = deb_depends._dpkg_candidates("/lib/x86_64-linux-gnu/libxcb-cursor.so.0")
    assert candidates[0] == "/lib/x86_64-linux-gnu/libxcb-cursor.so.0"
    assert "/usr/lib/x86_64-linux-gnu/libxcb-cursor.so.0" in candidates


def _spec(bundle: Path) -> object:
    return deb.DebSpec(
        bundle=bundle,
        resources=ROOT / "resources",
        version="1.2.3",
        arch="amd64",
        depends=("libc6 (>= 2.36)", "libxcb-cursor0"),
        recommends=("libwayland-client0",),
    )


def test_control_file_has_the_fields_dpkg_needs(tmp_path: Path) -> None:
    text = deb.control_text(_spec(tmp_path), installed_kib=1234)
    fields = dict(
        line.split(": ", 1) for line in text.splitlines() if line and not line.startswith(" ")
    )
    assert fields["Package"] == "costmeter"
    assert fields["Version"] == "1.2.3"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "1234"
    assert fields["Depends"] == "libc6 (>= 2.36), libxcb-cursor0"
    assert fields["Recommends"] == "libwayland-client0"
    assert text.endswith("\n")
    # Continuation lines of the description start with a space; an empty one is " .".
    desc = text.split("Description: ", 1)[1].splitlines()[1:]
    assert desc and all(line.startswith(" ") and line.strip() for line in desc)


def test_removal_script_touches_only_opt_costmeter() -> None:
    rm_lines = [line.strip() for line in deb.POSTRM.splitlines() if "rm " in line]
    assert rm_lines == ["rm -rf /opt/costmeter"]
    assert "$HOME" not in deb.POSTRM and "/home" not in deb.POSTRM


def test_staged_tree_has_the_bundle_link_desktop_entry_and_icons(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "_internal").mkdir(parents=True)
    (bundle / "costmeter").write_text("#!/bin/sh\n")
    (bundle / "costmeter").chmod(0o700)
    (bundle / "_internal" / "data.txt").write_text("x")
    root = tmp_path / "root"
    deb.stage_tree(_spec(bundle), root)
    deb.normalise_modes(root)
    assert (root / "opt/costmeter/costmeter").stat().st_mode & 0o777 == 0o755
    assert (root / "opt/costmeter/_internal/data.txt").stat().st_mode & 0o777 == 0o644
    link = root / "usr/bin/costmeter"
    assert link.is_symlink() and str(link.readlink()) == "/opt/costmeter/costmeter"
    desktop = (root / "usr/share/applications/costmeter.desktop").read_text()
    assert "Exec=costmeter gui" in desktop and "Icon=costmeter" in desktop
    icons = root / "usr/share/icons/hicolor"
    assert (icons / "scalable/apps/costmeter.svg").is_file()
    for size in deb.ICON_SIZES:
        png = (icons / f"{size}x{size}/apps/costmeter.png").read_bytes()
        assert png[:4] == b"\x89PNG"
        assert int.from_bytes(png[16:20], "big") == size


@pytest.mark.parametrize("name", ["costmeter.svg", "costmeter.desktop"])
def test_resources_are_package_data(name: str) -> None:
    from importlib import resources

    assert resources.files("costmeter.resources").joinpath(name).is_file()
