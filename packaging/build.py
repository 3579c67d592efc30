"""Build the PyInstaller onedir bundle (dist/costmeter/) and, on Debian/Ubuntu, the .deb.

.venv/bin/python packaging/build.py            # both (what `make package` runs)
.venv/bin/python packaging/build.py --no-deb   # the bundle only (Windows, macOS, other Linux)
.venv/bin/python packaging/build.py --deb-only # the .deb from an existing bundle
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deb import DebSpec, build_deb
from deb_depends import WAYLAND_RECOMMENDS, DependsError, depends

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "costmeter.spec"


def source_version() -> str:
    text = (ROOT / "app" / "costmeter" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if m is None:
        raise SystemExit("build: no __version__ in app/costmeter/__init__.py")
    return m.group(1)


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def build_bundle(dist: Path, work: Path) -> Path:
    if importlib.util.find_spec("PyInstaller") is None:
        raise SystemExit(
            "build: PyInstaller is not installed in this Python: pip install -e '.[package]' "
            "(make package does it)"
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(dist),
            "--workpath",
            str(work / "pyinstaller"),
            str(SPEC),
        ],
        check=True,
        cwd=ROOT,
    )
    bundle = dist / "costmeter"
    program = bundle / ("costmeter.exe" if sys.platform == "win32" else "costmeter")
    shown = subprocess.run(
        [str(program), "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    expected = f"costmeter {source_version()}"
    if shown.stdout.strip() != expected:
        raise SystemExit(
            f"build: the bundle's `costmeter --version` said {shown.stdout.strip()!r} "
            f"(expected {expected!r}): {shown.stderr.strip()}"
        )
    return bundle


def debian_arch() -> str:
    done = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def build_package(bundle: Path, dist: Path, work: Path) -> Path:
    if not bundle.is_dir():
        raise SystemExit(f"build: no bundle at {bundle}: build it first (without --deb-only)")
    try:
        deps = depends(bundle)
    except DependsError as err:
        raise SystemExit(f"build: {err}") from err
    spec = DebSpec(
        bundle=bundle,
        resources=ROOT / "resources",
        version=source_version(),
        arch=debian_arch(),
        depends=tuple(deps),
        recommends=WAYLAND_RECOMMENDS,
    )
    return build_deb(spec, work, dist)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist-dir", type=Path, default=ROOT / "dist", metavar="DIR")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "build", metavar="DIR")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--no-deb", action="store_true", help="build the bundle only")
    which.add_argument("--deb-only", action="store_true", help="build the .deb only")
    args = parser.parse_args(argv)
    dist, work = args.dist_dir.resolve(), args.work_dir.resolve()
    want_deb = not args.no_deb
    if want_deb and not args.deb_only and shutil.which("dpkg-deb") is None:
        print("build: dpkg-deb is not here (not Debian/Ubuntu): building the bundle only")
        want_deb = False
    started = time.monotonic()
    bundle = dist / "costmeter"
    if not args.deb_only:
        bundle = build_bundle(dist, work)
        print(f"bundle: {bundle} ({tree_size(bundle) / 1e6:.0f} MB)")
    if want_deb:
        deb = build_package(bundle, dist, work)
        print(f"deb:    {deb} ({deb.stat().st_size / 1e6:.0f} MB)")
    print(f"built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
