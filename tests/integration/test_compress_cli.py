"""``costmeter example digits`` and ``costmeter compress`` as a user types them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
PY = sys.executable
#: Makes `import torch` (and torchao) fail in the child, as on a build shipped without torch.
NO_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchao"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, NoTorch())
from costmeter.cli.main import main
raise SystemExit(main(sys.argv[1:]))
"""


def costmeter(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "costmeter", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    out = costmeter(
        "example", "digits", "--out", "digits.pt", "--eval-out", "digits.npz", "--epochs", "3",
        cwd=d,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "epoch   3/3" in out.stdout
    assert "costmeter compress digits.pt --method int8-dynamic --eval digits.npz" in out.stdout
    return {"dir": d, "model": d / "digits.pt", "eval": d / "digits.npz"}


def test_example_then_compress_as_json(example) -> None:
    out = costmeter(
        "compress", "digits.pt", "--method", "int8-dynamic:torch.ao", "--eval", "digits.npz",
        "--format", "json", "--repeat", "3", "--batch", "32", cwd=example["dir"],
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    assert report["format"] == "Costmeter weights-only checkpoint"
    assert report["before"]["size_bytes"] > 2.5 * report["after"]["size_bytes"]
    assert report["before"]["latency_n"]["batch"] == 32
    assert report["eval_rows"] == 450 and 0.8 < report["agreement"] <= 1.0
    assert report["verdict"] in ("keep", "reject")
    assert out.returncode == (1 if report["verdict"] == "reject" else 0)
    assert out.stderr == ""  # no deprecation noise, no progress lines in JSON mode


@pytest.mark.slow
def test_table_output_and_saving(example) -> None:
    # --goal size: fp16 serves slower on most CPUs, so the default goal (cost) rejects it
    out = costmeter(
        "compress", "digits.pt", "--method", "fp16", "--eval", "digits.npz", "--repeat", "3",
        "--out", "digits-fp16.pt2", "--goal", "size", cwd=example["dir"],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "size (state_dict bytes)" in out.stdout and "agreement with original" in out.stdout
    assert "Keep: 1.9" in out.stdout  # fp16 halves the weights: kept, with the ratio
    assert "costmeter: Timing both models at batch 64…" in out.stderr
    again = costmeter(
        "compress", "digits-fp16.pt2", "--method", "prune:0.5", "--repeat", "2",
        "--format", "json", cwd=example["dir"],
    )  # fmt: skip
    assert json.loads(again.stdout)["format"] == "torch.export program", again.stderr


@pytest.mark.slow
def test_a_pickled_model_needs_trust(example) -> None:
    script = (
        "import sys, torch; from costmeter.examples import digits; "
        "torch.save(digits.load_model(sys.argv[1]), sys.argv[2])"
    )
    made = subprocess.run(
        [PY, "-c", script, "digits.pt", "whole.pt"], cwd=example["dir"], timeout=120,
        capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    refused = costmeter("compress", "whole.pt", "--method", "bf16", cwd=example["dir"])
    assert refused.returncode == 2
    assert "runs code named in the file" in refused.stderr and "--trust" in refused.stderr
    assert "Traceback" not in refused.stderr
    trusted = costmeter(
        "compress", "whole.pt", "--method", "bf16", "--trust", "--repeat", "2",
        cwd=example["dir"],
    )  # fmt: skip
    assert trusted.returncode in (0, 1), trusted.stderr
    assert "torch.save(model) file" in trusted.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [(["digits.npz", "--method", "fp16"], "NumPy archive"),
     (["missing.pt", "--method", "fp16"], "no such file"),
     (["digits.pt", "--method", "int3"], "Unknown method 'int3'"),
     (["digits.pt", "--method", "fp16", "--eval", "digits.pt"], "torch file, not evaluation")],
)  # fmt: skip
def test_bad_input_is_a_sentence_and_exit_2(example, args: list[str], words: str) -> None:
    out = costmeter("compress", *args, cwd=example["dir"])
    assert out.returncode == 2
    assert words in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [["compress", "digits.pt", "--method", "fp16"], ["example", "digits", "--out", "x.pt"]],
)
def test_without_torch_every_entry_point_says_what_to_install(tmp_path: Path, args) -> None:
    out = subprocess.run(
        [PY, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr
    assert "needs torch: pip install 'costmeter[torch]'" in out.stderr
    assert "Traceback" not in out.stderr
    helped = subprocess.run(
        [PY, "-c", NO_TORCH, "compress", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "--max-drop" in helped.stdout
