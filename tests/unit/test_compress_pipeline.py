"""measure_compression end to end on the digits model: figures, gate, saving, cancel, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from costmeter.compress import (
    CompressError,
    CompressionCancelled,
    EvalDataError,
    TorchMissing,
    measure_compression,
    save_compressed,
)

torch = pytest.importorskip("torch")

from costmeter.compress.loading import load_model  # noqa: E402
from costmeter.examples import digits  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pipeline")
    data = digits.load_data(0)
    model = digits.train(4, 0, data=data)
    ckpt, npz = d / "digits.pt", d / "test.npz"
    digits.save_model(model, ckpt, hidden=128, test_accuracy=0.0)
    np.savez(npz, x=data.x_test, y=data.y_test)
    return {"model": ckpt, "eval": npz, "dir": d}


def test_figures_are_measured_and_consistent(trained) -> None:
    stages: list[tuple[str, float]] = []
    threads = torch.get_num_threads()
    r = measure_compression(
        trained["model"], "fp16", eval_path=trained["eval"], repeat=3, batch=16,
        on_progress=lambda stage, share: stages.append((stage, share)),
    )  # fmt: skip
    assert torch.get_num_threads() == threads  # restored after measuring with 1 thread
    assert r.threads == 1 and r.repeat == 3 and r.batch == 16 and r.eval_rows == 450
    assert r.before.latency_1.runs == 3 and r.after.latency_n.batch == 16
    for lat in (r.before.latency_1, r.before.latency_n, r.after.latency_1, r.after.latency_n):
        assert lat.error is None and lat.p10_s <= lat.median_s <= lat.p90_s
    assert r.after.size_bytes < r.before.size_bytes * 0.6
    data = np.load(trained["eval"])
    expected = digits.accuracy(digits.load_model(trained["model"]), data["x"], data["y"])
    assert r.before.accuracy == pytest.approx(expected)
    assert 0.95 <= r.agreement <= 1.0
    shares = [s for _, s in stages]
    assert shares == sorted(shares) and shares[-1] == 1.0
    assert any("Compressing (fp16)" in s for s, _ in stages)
    assert r.verdict in ("keep", "reject") and r.reason


def test_the_gate_rejects_a_model_that_lost_accuracy(trained) -> None:
    r = measure_compression(
        trained["model"], "prune:0.97", eval_path=trained["eval"], repeat=2, max_drop=1.0
    )
    assert r.accuracy_drop_points > 1.0
    assert r.verdict == "reject" and "more than the 1 allowed" in r.reason
    assert r.sparsity == pytest.approx(0.97, abs=0.01)
    assert any("sparse" in n for n in r.notes)


def test_without_eval_inputs_are_random_and_there_is_no_accuracy(trained) -> None:
    r = measure_compression(trained["model"], "bf16", repeat=2)
    assert r.before.accuracy is None and r.agreement is None
    assert r.verdict in ("unmeasured", "reject")
    assert any("random numbers of shape (64,)" in n for n in r.notes)


def test_saves_what_it_keeps_in_the_format_asked(trained) -> None:
    out = trained["dir"] / "small.pt2"
    r = measure_compression(
        trained["model"], "fp16", eval_path=trained["eval"], repeat=2, out_path=out,
        max_drop=100, goal="size",
    )  # fmt: skip
    if r.verdict == "reject":  # fp16 may be no faster here and no smaller is impossible
        pytest.fail(f"fp16 halves the weights, it should be kept: {r.reason}")
    assert r.out_path == str(out)
    program = load_model(out)  # a .pt2 loads without --trust
    assert program.format == "export"
    x = torch.rand(5, 64).half()
    assert program.module(x).shape == (5, 10)  # the batch size is not frozen at export
    pickled = save_compressed(r, trained["dir"] / "small.pt")
    assert load_model(pickled, trust=True).format == "pickle"


def test_a_rejected_model_is_not_saved(trained) -> None:
    out = trained["dir"] / "rejected.pt"
    r = measure_compression(
        trained["model"], "prune:0.97", eval_path=trained["eval"], repeat=1, out_path=out
    )
    assert r.verdict == "reject" and not out.exists() and r.out_path is None
    assert any("Not saved" in n for n in r.notes)


def test_torchao_int8_cannot_be_pickled_whole_and_says_what_works(trained) -> None:
    out = trained["dir"] / "q.pt"
    r = measure_compression(
        trained["model"], "int8-dynamic", eval_path=trained["eval"], repeat=1, out_path=out,
        goal="size",
    )  # fmt: skip
    assert r.verdict == "keep"  # 3x smaller, same accuracy: kept, but not savable as a pickle
    assert r.out_path is None and "try a .pt2 name" in (r.save_error or "")
    assert "Not saved:" in r.render_table()
    with pytest.raises(CompressError, match=r"try a \.pt2 name"):
        save_compressed(r, out)
    assert load_model(save_compressed(r, out.with_suffix(".pt2"))).format == "export"


def test_cancel_stops_at_the_next_timed_run(trained) -> None:
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 20

    with pytest.raises(CompressionCancelled):
        measure_compression(trained["model"], "fp16", repeat=1000, cancelled=cancelled)
    assert calls["n"] == 21


@pytest.mark.parametrize(
    ("arrays", "words"),
    [({"x": np.zeros((3, 64), "float32")}, "no array y"),
     ({"x": np.zeros((3, 10), "float32"), "y": np.zeros(3, "int64")}, r"shape \(10,\)"),
     ({"x": np.zeros((3, 64), "float32"), "y": np.zeros(3, "float32")}, "integer class labels"),
     ({"x": np.zeros((3, 64), "float32"), "y": np.zeros(2, "int64")}, "3 rows but y has 2")],
)  # fmt: skip
def test_bad_eval_data_gets_a_sentence(trained, tmp_path: Path, arrays, words: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(EvalDataError, match=words):
        measure_compression(trained["model"], "fp16", eval_path=path, repeat=1)


def test_bad_numbers_are_refused(trained) -> None:
    with pytest.raises(CompressError, match="--batch must be at least 2"):
        measure_compression(trained["model"], "fp16", batch=1)
    with pytest.raises(CompressError, match="--max-drop"):
        measure_compression(trained["model"], "fp16", max_drop=-1)


def test_without_torch_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(TorchMissing, match=r"needs torch: pip install 'costmeter\[torch\]'"):
        measure_compression("any.pt", "fp16")
