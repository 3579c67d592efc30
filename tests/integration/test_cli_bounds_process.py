"""Bad intervals through the real ``costmeter`` process: refused at once with exit status 2 and
nothing written; the shortest valid interval ends on time without spinning a core."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Keep the user's real data and config dirs out of every test."""
    return {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float, float]:
    """Exit status, stderr, wall seconds and the child's CPU seconds (user + system; the child
    is reaped before this returns, so its use is the change in RUSAGE_CHILDREN)."""
    cpu0, t0 = _cpu_of_children(), time.monotonic()
    child = subprocess.Popen(
        [*COSTMETER, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        _out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    return child.returncode, err, time.monotonic() - t0, _cpu_of_children() - cpu0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["record", "--interval", "nan", "--duration", "1"], "argument --interval: nan is not"),
        (["record", "--interval", "0", "--duration", "1"], "argument --interval: 0 is not"),
        (["agent", "--interval", "inf", "--simulate", "1"], "argument --interval: inf is not"),
        (["run", "--interval", "-1", "--", sys.executable, "-c", "pass"], "-1 is not"),
        (["run", "--interval", "nan", "--", sys.executable, "-c", "pass"], "nan is not"),
    ],
    ids=["record-nan", "record-0", "agent-inf", "run-minus-1", "run-nan"],
)
def test_a_bad_interval_exits_2_at_once_and_writes_nothing(
    tmp_path: Path, env: dict[str, str], args: list[str], words: str
) -> None:
    db = tmp_path / "c.db"
    code, err, wall, cpu = _run([*args[:1], "--db", str(db), *args[1:]], env, timeout=30)
    assert code == 2, err
    assert words in err and "give a value from 0.05 to 3600" in err
    assert wall < 10 and cpu < 5
    assert not db.exists()  # no run recorded at $0, no samples: nothing started


def test_a_nan_interval_in_the_config_file_is_refused_before_recording(
    tmp_path: Path, env: dict[str, str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[sampling]\ninterval_s = nan\n", encoding="utf-8")
    db = tmp_path / "c.db"
    code, err, _wall, _ = _run(
        ["record", "--config", str(config), "--db", str(db), "--duration", "1"], env, timeout=30
    )
    assert code == 2, err
    assert "key 'sampling.interval_s'" in err and "got nan" in err
    assert not db.exists()


def test_the_shortest_interval_stops_on_time_without_spinning(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """20 samples a second for 3 s: the process ends after about 3 s (plus start-up) and uses a
    small share of one core; a loop that spun would use about 3 s of CPU."""
    db = tmp_path / "c.db"
    code, err, wall, cpu = _run(
        ["record", "--simulate", "1", "--interval", "0.05", "--duration", "3", "--db", str(db)],
        env,
        timeout=60,
    )
    assert code == 0, err
    assert "samples saved" in err
    assert 3.0 <= wall < 12.0
    # Start-up (imports) is about 0.5-1 s of CPU here; 60 ticks cost well under a second.
    assert cpu < 2.4, f"{cpu:.2f} s of CPU for a 3 s recording: the loop spins"
