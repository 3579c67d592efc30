"""Reading model files for compression: every accepted format, and a sentence for the rest."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from costmeter.compress import ModelFileError, TrustRequired  # noqa: E402
from costmeter.compress.loading import load_model  # noqa: E402
from costmeter.examples import digits  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit's deprecation


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The digits model (2 epochs) saved in each format, and some files that are not models."""
    d = tmp_path_factory.mktemp("models")
    data = digits.load_data(0)
    model = digits.train(2, 0, hidden=32, data=data)
    out = {name: d / name for name in ("ckpt.pt", "full.pt", "ts.pt", "ep.pt2", "sd.pt")}
    digits.save_model(model, out["ckpt.pt"], hidden=32, test_accuracy=0.0)
    torch.save(model, out["full.pt"])
    torch.jit.save(torch.jit.script(model), str(out["ts.pt"]))
    example = torch.from_numpy(data.x_test[:4])
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, str(out["ep.pt2"]))
    torch.save(model.state_dict(), out["sd.pt"])
    out["text"] = d / "notes.pt"
    out["text"].write_text("these are not weights\n")
    out["empty"] = d / "empty.pt"
    out["empty"].write_bytes(b"")
    out["npz"] = d / "data.npz"
    np.savez(out["npz"], x=data.x_test, y=data.y_test)
    raw = out["full.pt"].read_bytes()
    out["truncated"] = d / "cut.pt"
    out["truncated"].write_bytes(raw[: len(raw) // 2])
    out["x"] = torch.from_numpy(data.x_test[:8])  # type: ignore[assignment]
    out["expected"] = model(out["x"]).detach()  # type: ignore[arg-type,assignment]
    return out


@pytest.mark.parametrize(
    ("name", "fmt", "trust"),
    [("ckpt.pt", "checkpoint", False), ("full.pt", "pickle", True), ("ts.pt", "torchscript", False),
     ("ep.pt2", "export", False)],
)  # fmt: skip
def test_each_format_loads_the_same_model(files, name: str, fmt: str, trust: bool) -> None:
    loaded = load_model(files[name], trust=trust)
    assert loaded.format == fmt
    assert loaded.input_shape == (64,)
    with torch.no_grad():
        out = loaded.module(files["x"])
    assert torch.allclose(out, files["expected"], atol=1e-5)


def test_a_pickled_model_needs_trust_and_the_error_says_why(files) -> None:
    with pytest.raises(TrustRequired) as err:
        load_model(files["full.pt"])
    text = str(err.value)
    assert "--trust" in text and "runs code" in text and str(files["full.pt"]) in text


@pytest.mark.parametrize(
    ("name", "words"),
    [("text", "is text"), ("empty", "empty"), ("npz", "NumPy archive"),
     ("truncated", "truncated"), ("sd.pt", "state_dict")],
)  # fmt: skip
def test_files_that_are_not_models_get_a_sentence(files, name: str, words: str) -> None:
    with pytest.raises(ModelFileError, match=words):
        load_model(files[name], trust=True)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(ModelFileError, match="folder"):
        load_model(tmp_path)


def test_pickled_model_whose_class_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trusted pickle that names a class this process cannot import: a sentence, no traceback."""
    package = tmp_path / "src"
    package.mkdir()
    (package / "h2_custom_net.py").write_text(
        textwrap.dedent(
            """
            import torch

            class Net(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = torch.nn.Linear(4, 2)

                def forward(self, x):
                    return self.fc(x)
            """
        )
    )
    monkeypatch.syspath_prepend(str(package))
    import h2_custom_net  # type: ignore[import-not-found]

    path = tmp_path / "custom.pt"
    torch.save(h2_custom_net.Net(), path)
    assert load_model(path, trust=True).input_shape == (4,)
    monkeypatch.delitem(sys.modules, "h2_custom_net")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(package)])
    with pytest.raises(ModelFileError, match="cannot be imported here"):
        load_model(path, trust=True)


def test_the_packaged_build_says_how_to_get_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from costmeter.compress.errors import TorchMissing

    assert "pip install 'costmeter[torch]'" in str(TorchMissing())
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    text = str(TorchMissing("Model compression"))
    assert "packaged Costmeter leaves torch out" in text and "costmeter[gui,torch]" in text
