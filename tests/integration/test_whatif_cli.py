"""``costmeter whatif`` as a user runs it: a short run on a simulated A100 is sampled into a real
SQLite file, then a real process estimates it on every priced model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from costmeter.cost.gpu_specs import load_gpu_specs
from costmeter.cost.whatif import GIB, balance, margin_bytes

pytestmark = pytest.mark.integration
COSTMETER = [sys.executable, "-m", "costmeter"]


def costmeter(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COSTMETER, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("whatif") / "runs.db"
    done = costmeter(
        "run", "--db", str(path), "--simulate", "a100:train", "--gpus", "1",
        "--interval", "0.1", "--", sys.executable, "-c", "import time; time.sleep(1.5)",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


def test_json_estimates_every_priced_model(db: Path) -> None:
    before = db.read_bytes()
    done = costmeter("whatif", "--db", str(db), "--run", "1", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert db.read_bytes() == before  # reads only
    out = json.loads(done.stdout)
    w = out["workload"]
    assert w["model"] == "A100 80GB" and w["gpu_count"] == 1 and w["duration_s"] > 1.0
    assert 0 < w["gpu_util_pct"] <= 100 and w["mem_util_pct"] is not None
    rows = {o["model"]: o for o in out["options"]}
    assert rows["A100 80GB"]["current"] and rows["A100 80GB"]["cost"] == out["actual_cost"]
    # Too little memory is refused, with the figures.
    peak = w["peak_mem_bytes"]
    need = (peak + margin_bytes(peak)) / GIB
    for o in out["options"]:
        if o["memory_gib"] is not None and not o["current"]:
            assert o["fits"] is (need <= o["memory_gib"])
            if not o["fits"]:
                assert f"needs {need:.1f} GiB" in o["reason"]
    # The H100's estimate is the measured duration scaled by the table's ratios and the balance.
    specs = load_gpu_specs()
    a100, h100 = specs.for_model("A100 80GB"), specs.for_model("H100 SXM 80GB")
    assert a100 is not None and h100 is not None
    b = balance(w["gpu_util_pct"], w["mem_util_pct"])
    c = a100.tflops["bf16"] / h100.tflops["bf16"]
    bw = (a100.bandwidth_gbs or 0) / (h100.bandwidth_gbs or 1)
    assert rows["H100 SXM 80GB"]["duration_s"] == pytest.approx(w["duration_s"] * b.factor(c, bw))
    costs = [o["cost"] for o in out["options"] if o["cost"] is not None]
    assert costs == sorted(costs)
    best = out["cheapest_fit"]
    assert best is not None and rows[best]["fits"] and not rows[best]["current"]
    assert "not a benchmark" in out["stands_on"]


def test_table_closes_with_the_cheapest_that_fits(db: Path) -> None:
    done = costmeter("whatif", "--db", str(db), "--run", "1", "--precision", "fp16")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["model", "fits", "memory"]
    assert lines[-1].startswith("Cheapest that fits:") or "already the cheapest" in lines[-1]
    assert "estimate" in lines[-1] and "FP16" in lines[-1] and "margin" in lines[-1]


def test_a_device_over_a_window(db: Path) -> None:
    runs = json.loads(costmeter("runs", "--db", str(db), "--format", "json").stdout)
    host = runs[0]["host"]
    done = costmeter(
        "whatif", "--db", str(db), "--device", f"{host}:0", "--since", "1h", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["workload"]["peak_basis"] == "the GPU's memory used"
    assert out["workload"]["model"] == "A100 80GB"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--run", "99"), 2, "there is no run 99"),
        (("--device", "nohost:0"), 2, "no GPU nohost:0"),
        (("--device", "gpu0"), 2, "HOST:INDEX"),
        (("--run", "1", "--precision", "fp64"), 2, "invalid choice"),
        (("--run", "1", "--device", "h:0"), 2, "not allowed with"),
    ],
)
def test_bad_input_is_said_in_words(db: Path, args: tuple[str, ...], code: int, words: str) -> None:
    done = costmeter("whatif", "--db", str(db), *args)
    assert done.returncode == code and words in done.stderr
    assert "Traceback" not in done.stderr


def test_no_database(tmp_path: Path) -> None:
    done = costmeter("whatif", "--db", str(tmp_path / "none.db"), "--run", "1")
    assert done.returncode == 3 and "no database" in done.stderr
    assert not (tmp_path / "none.db").exists()
