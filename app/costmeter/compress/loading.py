"""Reading a model file: which kind it is, and loading it without surprises.

Kinds accepted (``FORMATS``):

- ``pickle``: ``torch.save(model)``. Unpickling runs code named in the file, so it is loaded
  only with ``trust=True`` (``--trust``).
- ``checkpoint``: Costmeter's own weights-only checkpoint (``costmeter example digits``); it
  loads with ``weights_only=True``: no code runs.
- ``torchscript``: ``torch.jit.save``.
- ``export``: ``torch.export.save`` (``.pt2``).
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from costmeter.compress.errors import ModelFileError, TrustRequired
from costmeter.compress.mlp import build_mlp, shape_from_checkpoint
from costmeter.compress.torch_env import require_torch

if TYPE_CHECKING:
    import torch

Format = Literal["pickle", "checkpoint", "torchscript", "export"]
FORMATS: dict[Format, str] = {
    "pickle": "torch.save(model) file",
    "checkpoint": "Costmeter weights-only checkpoint",
    "torchscript": "TorchScript file",
    "export": "torch.export program",
}
_ZIP_KINDS = ("torchscript", "export", "torch.save")


@dataclass
class LoadedModel:
    module: torch.nn.Module
    format: Format
    #: The shape of one input row (without the batch dimension), when the file tells it.
    input_shape: tuple[int, ...] | None
    #: Where ``input_shape`` came from, for the report.
    input_source: str

    @property
    def described(self) -> str:
        return FORMATS[self.format]


def load_model(path: Path, *, trust: bool = False) -> LoadedModel:
    """The model in ``path`` in eval mode, or ModelFileError with a sentence saying why not."""
    require_torch()
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file.")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file.")
    kind = _zip_kind(path)
    if kind == "torchscript":
        loaded = _load_torchscript(path)
    elif kind == "export":
        loaded = _load_export(path)
    else:
        loaded = _load_torch_save(path, trust=trust)
    _set_eval(loaded.module)
    return loaded


def _zip_kind(path: Path) -> str:
    """Which zip-based torch format ``path`` is; "legacy" for a file that is not a zip."""
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            head = f.read(64)
        if head[:1] == b"\x80":  # a pickle: torch.save's format before torch 1.6
            return "legacy"
        if head[:2] == b"PK":
            raise ModelFileError(f"{path} is a damaged or truncated zip archive (cut short?).")
        raise ModelFileError(f"{path} is not a model file: {_looks_like(head)}.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path} is damaged or truncated ({exc}).") from exc
    if names and all(n.endswith(".npy") for n in names):
        raise ModelFileError(
            f"{path} is a NumPy archive (.npz): data, not a model. Evaluation data goes to "
            "--eval; the model is a torch.save, TorchScript or torch.export file."
        )
    tails = {n.split("/", 1)[-1] for n in names}
    if "constants.pkl" in tails and any(t.startswith("code/") for t in tails):
        return "torchscript"
    if "archive_format" in tails or any(t.startswith("models/") for t in tails):
        return "export"
    if "data.pkl" in tails:
        return "torch.save"
    raise ModelFileError(
        f"{path} is a zip archive but not a torch model (no torch.save, TorchScript or "
        "torch.export contents)."
    )


def _looks_like(head: bytes) -> str:
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "it is neither a torch.save, TorchScript nor torch.export file"
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"it is text (starting {first!r})" if first else "it is blank text"


def _load_torchscript(path: Path) -> LoadedModel:
    import torch

    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, and still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelFileError(f"{path} is a TorchScript file that did not load: {exc}") from exc
    shape = _shape_from_first_weight(module)
    return LoadedModel(module, "torchscript", shape, "the first layer's weight")


def _load_export(path: Path) -> LoadedModel:
    import torch

    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as exc:
        raise ModelFileError(f"{path} is a torch.export file that did not load: {exc}") from exc
    shape: tuple[int, ...] | None = None
    examples = getattr(program, "example_inputs", None)
    if examples and examples[0] and isinstance(examples[0][0], torch.Tensor):
        shape = tuple(int(d) for d in examples[0][0].shape[1:])
    return LoadedModel(module, "export", shape, "the program's example input")


def _load_torch_save(path: Path, *, trust: bool) -> LoadedModel:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise ModelFileError(f"{path} is not a model file that torch can read.") from exc
        return _load_pickled_model(path, trust=trust)
    except Exception as exc:  # zip reader errors on a damaged file
        raise ModelFileError(f"{path} is damaged or not a torch file: {_first_line(exc)}") from exc
    if _is_costmeter_checkpoint(payload):
        return _from_checkpoint(path, payload)
    if isinstance(payload, torch.nn.Module):
        shape = _shape_from_first_weight(payload)
        return LoadedModel(payload, "pickle", shape, "the first layer's weight")
    if (
        isinstance(payload, Mapping)
        and payload
        and all(isinstance(v, torch.Tensor) for v in payload.values())
    ):
        raise ModelFileError(
            f"{path} holds only weights (a state_dict), not the model: compression needs the "
            "model itself. Save it with torch.save(model), torch.jit.save(torch.jit.script("
            "model)) or torch.export.save(torch.export.export(model, (example,)), PATH)."
        )
    raise ModelFileError(f"{path} holds a {type(payload).__name__}, not a torch model.")


def _load_pickled_model(path: Path, *, trust: bool) -> LoadedModel:
    import torch

    if not trust:
        raise TrustRequired(
            f"{path} is a whole pickled model (torch.save(model)). Loading it unpickles it, and "
            "unpickling runs code named in the file, so it is refused by default. If you made "
            "this file or trust where it came from, pass --trust (in the app: tick 'Trust this "
            "file'). Files saved with torch.export or TorchScript load without running code."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise ModelFileError(
            f"{path} refers to code that cannot be imported here ({exc}). Run from where the "
            "model's class can be imported, or save the model with torch.export or TorchScript."
        ) from exc
    except Exception as exc:
        raise ModelFileError(f"{path} did not unpickle: {_first_line(exc)}") from exc
    if not isinstance(obj, torch.nn.Module):
        raise ModelFileError(f"{path} holds a {type(obj).__name__}, not a torch model.")
    return LoadedModel(obj, "pickle", _shape_from_first_weight(obj), "the first layer's weight")


def _is_costmeter_checkpoint(payload: Any) -> bool:
    return isinstance(payload, Mapping) and {"state_dict", "hidden", "inputs", "classes"} <= set(
        payload
    )


def _from_checkpoint(path: Path, payload: Mapping[str, Any]) -> LoadedModel:
    """The digits example's checkpoint, or an MLP's with its widths (a distilled student)."""
    from costmeter.examples import digits

    try:
        shape = shape_from_checkpoint(payload)
        module = digits.build_model(int(payload["hidden"])) if shape is None else build_mlp(shape)
        module.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} is a damaged Costmeter checkpoint: {exc}") from exc
    inputs = (int(payload["inputs"]),) if shape is None else shape.input_shape
    return LoadedModel(module, "checkpoint", inputs, "the checkpoint")


def _shape_from_first_weight(module: torch.nn.Module) -> tuple[int, ...] | None:
    """The features of a model whose first layer is a Linear one (a 2-D weight); None when the
    shape cannot be told from the weights (a convolution needs the image size too)."""
    for name, param in module.named_parameters():
        if name.endswith("weight"):
            return (int(param.shape[1]),) if param.dim() == 2 else None
    return None


def _set_eval(module: torch.nn.Module) -> None:
    # Some exported modules refuse train()/eval().
    with contextlib.suppress(NotImplementedError, RuntimeError):
        module.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
