"""Compression methods applied to the digits model: what each really changes."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from costmeter.compress import UnsupportedMethod, parse_method  # noqa: E402
from costmeter.compress.loading import load_model  # noqa: E402
from costmeter.compress.measure import state_dict_bytes  # noqa: E402
from costmeter.compress.methods import Method, apply_method, check_supported  # noqa: E402
from costmeter.examples import digits  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("methods")
    model = digits.train(2, 0, hidden=64)
    ckpt, ts = d / "ckpt.pt", d / "ts.pt"
    digits.save_model(model, ckpt, hidden=64, test_accuracy=0.0)
    torch.jit.save(torch.jit.script(model), str(ts))
    return {"ckpt": ckpt, "ts": ts}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("int8-dynamic", Method("int8-dynamic")),
     ("INT8-dynamic:torch.ao", Method("int8-dynamic", engine="torch.ao")),
     ("fp16", Method("fp16")), ("bf16", Method("bf16")), ("int8-weight", Method("int8-weight")),
     (" prune:0.25 ", Method("prune", amount=0.25))],
)  # fmt: skip
def test_parse_method(text: str, expected: Method) -> None:
    assert parse_method(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [("int4", "Unknown method"), ("prune", "amount between 0 and 1"), ("prune:x", "amount"),
     ("prune:0", "between 0 and 1"), ("prune:1", "between 0 and 1"), ("fp16:x", "Unknown"),
     ("int8-dynamic:onnx", "Unknown")],
)  # fmt: skip
def test_bad_methods_are_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(UnsupportedMethod, match=words):
        parse_method(text)


@pytest.mark.parametrize(("name", "dtype"), [("fp16", "float16"), ("bf16", "bfloat16")])
def test_half_precision_halves_the_weights(paths, name: str, dtype: str) -> None:
    loaded = load_model(paths["ckpt"])
    size = state_dict_bytes(loaded.module)
    out = apply_method(parse_method(name), loaded)
    assert out.input_dtype == getattr(torch, dtype)
    assert all(p.dtype == out.input_dtype for p in out.module.parameters())
    assert state_dict_bytes(out.module) < size * 0.6


@pytest.mark.parametrize("key", ["ckpt", "ts"])
def test_prune_is_permanent_and_reports_real_sparsity(paths, key: str) -> None:
    loaded = load_model(paths[key])
    out = apply_method(parse_method("prune:0.3"), loaded)
    assert out.sparsity == pytest.approx(0.3, abs=0.01)
    weights = [p for n, p in out.module.named_parameters() if n.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(out.sparsity)
    names = [n for n, _ in out.module.named_parameters()]
    assert not any(n.endswith("_orig") for n in names)  # no leftover pruning masks
    assert any("sparse" in note for note in out.notes)


@pytest.mark.parametrize("engine", ["int8-dynamic", "int8-dynamic:torch.ao", "int8-weight"])
def test_int8_makes_the_state_dict_smaller(paths, engine: str) -> None:
    loaded = load_model(paths["ckpt"])
    before = state_dict_bytes(loaded.module)
    out = apply_method(parse_method(engine), load_model(paths["ckpt"]))
    assert state_dict_bytes(out.module) < before / 2.5
    expected = "torch.ao" if engine.endswith("torch.ao") else "torchao"
    assert out.engine.startswith(expected)
    x = torch.rand(3, 64)
    with torch.no_grad():
        assert out.module(x).shape == (3, 10)


def test_int8_on_torchscript_is_refused_in_words(paths) -> None:
    loaded = load_model(paths["ts"])
    with pytest.raises(UnsupportedMethod, match="cannot be applied to a TorchScript file"):
        check_supported(parse_method("int8-dynamic"), loaded.format)
