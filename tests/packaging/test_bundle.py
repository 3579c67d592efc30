"""The packaged installer: build the PyInstaller bundle once, then run the real program from it;
build the .deb from it, install it with dpkg, run the installed command, remove it.

The build takes about a minute on 2 CPUs: one session-scoped fixture builds it for every test.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import costmeter

pytestmark = [pytest.mark.packaging, pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1200
RUN_TIMEOUT_S = 120


@dataclass(frozen=True)
class Built:
    dist: Path
    work: Path

    @property
    def bundle(self) -> Path:
        return self.dist / "costmeter"

    @property
    def program(self) -> Path:
        return self.bundle / "costmeter"


def _build(*args: str, dist: Path, work: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "packaging" / "build.py"), *args),
            *("--dist-dir", str(dist), "--work-dir", str(work)),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"build failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if not sys.platform.startswith("linux"):
        pytest.skip("the packaging tests build and run the Linux bundle")
    base = tmp_path_factory.mktemp("package")
    result = Built(dist=base / "dist", work=base / "build")
    _build("--no-deb", dist=result.dist, work=result.work)
    return result


def _env(home: Path) -> dict[str, str]:
    """A clean user: HOME in tmp and no XDG overrides, so the default dirs land inside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen")
    # The bundle must not lean on the development tree's Python.
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def _run(program: Path | str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=_env(home),
        cwd=home,
        check=False,
    )


def _rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_bundle_answers_version_and_leaves_out_torch(built: Built, tmp_path: Path) -> None:
    done = _run(built.program, "--version", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"costmeter {costmeter.__version__}"
    internal = built.bundle / "_internal"
    assert (internal / "PySide6").is_dir() and (internal / "costmeter" / "resources").is_dir()
    for heavy in ("torch", "torchao", "sklearn", "ray", "pytest"):
        assert not (internal / heavy).exists(), f"{heavy} is in the bundle"


def test_bundle_records_simulated_gpus_into_sqlite(built: Built, tmp_path: Path) -> None:
    db = tmp_path / "rec.db"
    done = _run(
        built.program,
        *("record", "--simulate", "2", "--duration", "2", "--db", str(db)),
        home=tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # Two simulated GPUs sampled at least once each, and the host.
    assert _rows(db, "device_samples") >= 2
    assert _rows(db, "host_samples") >= 1


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_bundle_gui_saves_a_screenshot_offscreen(built: Built, tmp_path: Path) -> None:
    shot = tmp_path / "window.png"
    done = _run(
        built.program,
        *("gui", "--simulate", "2", "--screenshot", str(shot), "--quit-after", "60"),
        *("--db", str(tmp_path / "gui.db"), "--settings", str(tmp_path / "gui.ini")),
        home=tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    assert shot.is_file(), f"no screenshot: {done.stdout}\n{done.stderr}"
    width, height = _png_size(shot)
    assert width >= 600 and height >= 400
    assert shot.stat().st_size > 20_000  # a drawn window, not a blank one


def test_bundle_finds_the_builtin_backend_through_entry_points(
    built: Built, tmp_path: Path
) -> None:
    done = _run(built.program, "plugins", "--format", "json", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    backends = {b["name"]: b for b in json.loads(done.stdout)}
    assert "local" in backends, backends
    assert backends["local"]["status"] == "ok"


@pytest.mark.parametrize(
    "args",
    [("compress", "model.pt", "--method", "fp16"), ("example", "digits")],
    ids=["compress", "example"],
)
def test_bundle_torch_features_say_how_to_get_torch(
    built: Built, tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "model.pt").write_bytes(b"not really a model")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(tmp_path / "model.pt", home / "model.pt")
    done = _run(built.program, *args, home=home)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "torch" in done.stderr and "pip install" in done.stderr, done.stderr
    # and the way that works for a bundle user: a pip install beside it, not into it
    assert "python3 -m venv" in done.stderr, done.stderr


# --- the .deb ----------------------------------------------------------------------------------


def _dpkg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=300, check=False)


def _missing_packages(deb: Path) -> list[str]:
    field = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    names = [d.split("(")[0].strip() for d in field.split(",") if d.strip()]
    return [
        n
        for n in names
        if "install ok installed"
        not in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", n],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    ]


@pytest.fixture(scope="session")
def deb(built: Built) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed: the .deb is built on Debian/Ubuntu")
    _build("--deb-only", dist=built.dist, work=built.work)
    found = sorted(built.dist.glob("costmeter_*.deb"))
    assert len(found) == 1, found
    return found[0]


def test_deb_installs_runs_and_removes_cleanly(deb: Path, tmp_path: Path) -> None:
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed here")
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root (dpkg -i)")
    if _dpkg("-s", "costmeter").returncode == 0:
        pytest.skip("a costmeter package is already installed here: not touching it")
    missing = _missing_packages(deb)
    if missing:
        pytest.skip(f"the .deb's dependencies are not installed here: {', '.join(missing)}")
    home = tmp_path / "home"
    user_config = home / ".config" / "costmeter" / "config.toml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text("# the user's own settings\n")
    try:
        installed = _dpkg("-i", str(deb))
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert Path("/usr/share/applications/costmeter.desktop").is_file()
        assert Path("/usr/share/icons/hicolor/scalable/apps/costmeter.svg").is_file()
        assert Path("/usr/share/icons/hicolor/256x256/apps/costmeter.png").is_file()

        version = _run("/usr/bin/costmeter", "--version", home=home)
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip() == f"costmeter {costmeter.__version__}"
        # No --db: the simulated history goes to the user's data dir, which must outlive the
        # package.
        rec = _run("/usr/bin/costmeter", "record", "--simulate", "1", "--duration", "1", home=home)
        assert rec.returncode == 0, rec.stderr
        data_dir = home / ".local" / "share" / "costmeter"
        user_files = sorted(p for p in data_dir.rglob("*") if p.is_file())
        assert user_files, f"record wrote nothing under {data_dir}: {rec.stderr}"

        for step in ("-r", "--purge"):
            removed = _dpkg(step, "costmeter")
            assert removed.returncode == 0, removed.stdout + removed.stderr
            assert not Path("/opt/costmeter").exists()
            assert not Path("/usr/bin/costmeter").exists()
            assert not Path("/usr/bin/costmeter").is_symlink()
            assert not Path("/usr/share/applications/costmeter.desktop").exists()
            assert all(p.is_file() for p in user_files), f"{step} removed the user's data"
            assert user_config.read_text() == "# the user's own settings\n"
    finally:
        if _dpkg("-s", "costmeter").returncode == 0:
            _dpkg("--purge", "costmeter")
