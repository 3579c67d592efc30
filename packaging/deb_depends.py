"""The Debian packages the bundle's Qt needs from the system, found with ldd and dpkg -S.

The xcb platform plugin, the xcb GL integrations and the Qt libraries are scanned with ``ldd``
(no LD_LIBRARY_PATH, so what the system must provide resolves to the system). The libraries each
of them names directly (``readelf -d``: NEEDED) that resolve outside the bundle are mapped to
their packages with ``dpkg -S``. The bundle carries copies of many of them; depending on the
system's packages all the same means the system's libGL (which is never bundled) finds the X
libraries it was built against, and a library the bundle lacks is still there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

#: Qt libraries and plugins only used on Wayland: their libraries are recommended, not required
#: (on a Wayland desktop Qt falls back to xcb through XWayland).
WAYLAND_MARKERS = ("wayland", "wlshell")
WAYLAND_RECOMMENDS = ("libwayland-client0", "libwayland-cursor0", "libwayland-egl1")
_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(not found|\S+)")
#: The dynamic loader, which ldd names by its path alone: "/lib64/ld-linux-x86-64.so.2 (0x...)".
_LDD_LOADER = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-f]+\)")
_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")


class DependsError(RuntimeError):
    """The build machine cannot tell what the package needs (a tool or a library is missing)."""


def scan_targets(bundle: Path) -> list[Path]:
    """The ELF files whose system libraries the package must depend on."""
    qt = _qt_root(bundle)
    files = [qt / "plugins" / "platforms" / "libqxcb.so"]
    files += sorted((qt / "plugins" / "xcbglintegrations").glob("*.so"))
    files += sorted(
        p
        for p in (qt / "lib").glob("libQt6*.so*")
        if not any(m in p.name.lower() for m in WAYLAND_MARKERS) and not p.is_symlink()
    )
    files.append(bundle / "costmeter")
    files += sorted((bundle / "_internal").glob("libpython3*.so*"))
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DependsError(f"the bundle lacks {', '.join(missing)}: is it a PySide6 onedir build?")
    return files


def _qt_root(bundle: Path) -> Path:
    return bundle / "_internal" / "PySide6" / "Qt"


def parse_ldd(text: str) -> dict[str, str | None]:
    """soname -> resolved path (None when ldd says "not found") from ldd's output."""
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        m = _LDD_LINE.match(line)
        if m:
            found[m.group(1)] = None if m.group(2) == "not found" else m.group(2)
        elif loader := _LDD_LOADER.match(line):
            found.setdefault(os.path.basename(loader.group(1)), loader.group(1))
    return found


def parse_needed(text: str) -> list[str]:
    """The sonames a library names directly, from ``readelf -d``."""
    return _NEEDED.findall(text)


def _run(argv: list[str]) -> str:
    tool = shutil.which(argv[0])
    if tool is None:
        raise DependsError(f"`{argv[0]}` is not installed here; it is needed to build the .deb")
    done = subprocess.run(
        [tool, *argv[1:]], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout


def system_libraries(files: Iterable[Path], bundle: Path) -> dict[str, str]:
    """soname -> path of each library the files name directly and the system provides."""
    inside = str(bundle.resolve())
    result: dict[str, str] = {}
    missing: dict[str, list[str]] = {}
    for f in files:
        resolved = parse_ldd(_run(["ldd", str(f)]))
        for soname in parse_needed(_run(["readelf", "-d", str(f)])):
            path = resolved.get(soname)
            if path is None:
                missing.setdefault(soname, []).append(f.name)
            elif not os.path.realpath(path).startswith(inside):
                result[soname] = path
    if missing:
        names = "; ".join(f"{lib} (for {', '.join(sorted(set(b)))})" for lib, b in missing.items())
        raise DependsError(
            f"this machine lacks libraries the bundle's Qt needs: {names}. Install them (see "
            "packaging/README.md), then build again: a .deb made here would miss them"
        )
    return result


def _dpkg_candidates(path: str) -> list[str]:
    """Paths dpkg may know the library by (merged /usr: /lib is a link to /usr/lib)."""
    real_dir = os.path.realpath(os.path.dirname(path))
    out = [path, os.path.join(real_dir, os.path.basename(path)), os.path.realpath(path)]
    if path.startswith("/lib"):
        out.append("/usr" + path)
    return list(dict.fromkeys(out))


def package_of(path: str) -> str:
    """The Debian package that installed the library at path (architecture qualifier dropped)."""
    for candidate in _dpkg_candidates(path):
        done = subprocess.run(
            ["dpkg", "-S", candidate], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode == 0 and ":" in done.stdout:
            return done.stdout.split(":", 1)[0].split(",")[0].strip()
    raise DependsError(f"no Debian package owns {path} (dpkg -S): was it installed by hand?")


def libc_floor() -> str:
    """``libc6 (>= X.Y)`` for this machine's glibc: bundled libraries were linked against it."""
    version = _run(["dpkg-query", "-W", "-f=${Version}", "libc6"]).strip()
    m = re.match(r"(\d+\.\d+)", version)
    return f"libc6 (>= {m.group(1)})" if m else "libc6"


def depends(bundle: Path) -> list[str]:
    """The Depends field's entries for the bundle, sorted; libc6 carries a version floor."""
    libs = system_libraries(scan_targets(bundle), bundle)
    packages = {package_of(path) for path in libs.values()}
    packages.discard("libc6")
    return [libc_floor(), *sorted(packages)]
