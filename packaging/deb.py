"""Build the Debian package from the onedir bundle.

Layout: the bundle in /opt/costmeter, /usr/bin/costmeter a link to its program, the desktop entry
and the icons under /usr/share. Maintainer scripts refresh the desktop database and the icon
cache where those tools exist. Removing the package removes /opt/costmeter and nothing else: the
user's data (~/.local/share/costmeter) and settings (~/.config/costmeter) stay.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PREFIX = "opt/costmeter"
ICON_SIZES = (16, 32, 48, 64, 128, 256)
MAINTAINER = "Costmeter developers <costmeter@users.noreply.github.com>"
DESCRIPTION = """\
GPU and CPU cost monitor: what your machines do and what it costs
 Costmeter records NVIDIA GPUs (through NVML) and the host, shows what each device
 and each run costs in money and energy, and says what to change to pay less. It
 has a desktop app (costmeter gui) and a headless command line (costmeter record,
 report, run, advise).
 .
 This package carries its own Python and Qt under /opt/costmeter. Model compression
 (costmeter compress) needs torch and is not included: install Costmeter with pip
 for it (pip install 'costmeter[torch]')."""

_REFRESH = """\
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q /usr/share/applications || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -f -t /usr/share/icons/hicolor || true
fi
"""
POSTINST = f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
{_REFRESH}fi
exit 0
"""
# Only /opt/costmeter (the package's own folder) is removed; nothing under anyone's home.
POSTRM = f"""#!/bin/sh
set -e
case "$1" in
    remove|purge)
        rm -rf /{PREFIX}
{_REFRESH}        ;;
esac
exit 0
"""
COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: costmeter

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0. The bundle in /opt/costmeter also carries
 Python, Qt (LGPLv3), PySide6 (LGPLv3), pyqtgraph (MIT), numpy (BSD), psutil (BSD)
 and nvidia-ml-py (BSD) under their own licences.
"""


@dataclass(frozen=True)
class DebSpec:
    bundle: Path
    resources: Path
    version: str
    arch: str
    depends: tuple[str, ...]
    recommends: tuple[str, ...] = ()


def deb_name(version: str, arch: str) -> str:
    return f"costmeter_{version}_{arch}.deb"


def control_text(spec: DebSpec, installed_kib: int) -> str:
    lines = [
        "Package: costmeter",
        f"Version: {spec.version}",
        f"Architecture: {spec.arch}",
        f"Maintainer: {MAINTAINER}",
        f"Installed-Size: {installed_kib}",
        f"Depends: {', '.join(spec.depends)}",
    ]
    if spec.recommends:
        lines.append(f"Recommends: {', '.join(spec.recommends)}")
    lines += ["Section: utils", "Priority: optional", f"Description: {DESCRIPTION}"]
    return "\n".join(lines) + "\n"


def _link_or_copy(src: str, dst: str) -> None:
    """Hard links keep staging 200+ MB cheap; copy where the two are on other file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def stage_tree(spec: DebSpec, root: Path) -> None:
    """Lay out the package's files under root (which must not exist yet)."""
    shutil.copytree(spec.bundle, root / PREFIX, symlinks=True, copy_function=_link_or_copy)
    usr_bin = root / "usr" / "bin"
    usr_bin.mkdir(parents=True)
    (usr_bin / "costmeter").symlink_to(f"/{PREFIX}/costmeter")
    share = root / "usr" / "share"
    apps = share / "applications"
    apps.mkdir(parents=True)
    shutil.copyfile(spec.resources / "costmeter.desktop", apps / "costmeter.desktop")
    icons = share / "icons" / "hicolor"
    (icons / "scalable" / "apps").mkdir(parents=True)
    shutil.copyfile(spec.resources / "costmeter.svg", icons / "scalable/apps/costmeter.svg")
    for size in ICON_SIZES:
        target = icons / f"{size}x{size}" / "apps"
        target.mkdir(parents=True)
        shutil.copyfile(spec.resources / f"costmeter-{size}.png", target / "costmeter.png")
    _write(share / "doc" / "costmeter" / "copyright", COPYRIGHT)


def normalise_modes(root: Path) -> None:
    """0755 folders and programs, 0644 other files, whatever the build left (umask, links)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            if not p.is_symlink():
                p.chmod(0o755)
        for f in filenames:
            p = Path(dirpath, f)
            if not p.is_symlink():
                p.chmod(0o755 if p.stat().st_mode & 0o111 else 0o644)
    root.chmod(0o755)


def _installed_kib(root: Path) -> int:
    total = sum(Path(dp, f).lstat().st_size for dp, _, files in os.walk(root) for f in files)
    return max(1, (total + 1023) // 1024)


def _md5sums(root: Path) -> str:
    lines = []
    for dirpath, _, filenames in sorted(os.walk(root)):
        for f in sorted(filenames):
            p = Path(dirpath, f)
            if p.is_symlink() or p.relative_to(root).parts[0] == "DEBIAN":
                continue
            digest = hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
            lines.append(f"{digest}  {p.relative_to(root).as_posix()}")
    return "\n".join(lines) + "\n"


def build_deb(spec: DebSpec, work: Path, out_dir: Path) -> Path:
    """Stage the tree in work/deb-root and build out_dir/costmeter_VERSION_ARCH.deb."""
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise RuntimeError("dpkg-deb is not installed here: the .deb is built on Debian/Ubuntu")
    root = work / "deb-root"
    shutil.rmtree(root, ignore_errors=True)
    stage_tree(spec, root)
    normalise_modes(root)
    debian = root / "DEBIAN"
    _write(debian / "md5sums", _md5sums(root))
    _write(debian / "control", control_text(spec, _installed_kib(root)))
    _write(debian / "postinst", POSTINST, 0o755)
    _write(debian / "postrm", POSTRM, 0o755)
    debian.chmod(0o755)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / deb_name(spec.version, spec.arch)
    subprocess.run(
        [dpkg_deb, "--root-owner-group", "-Zzstd", "--build", str(root), str(out)],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(root, ignore_errors=True)
    return out
