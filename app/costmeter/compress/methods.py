"""Compression methods: parsing ``--method`` and applying it to a freshly loaded model.

Which method works on which format (``SUPPORTED``):

- int8-dynamic, int8-weight: models with ``nn.Linear`` modules, i.e. a ``torch.save(model)`` file
  or a Costmeter checkpoint. TorchScript and torch.export files keep no ``nn.Linear`` modules
  for the quantizer to replace.
- fp16, bf16, prune:AMOUNT: every format.
- distill: every format whose model runs on the training data (``--train``); it trains a new,
  smaller student (compress/distill.py) rather than changing the teacher.
"""

from __future__ import annotations

import copy
import importlib.metadata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from costmeter.compress.distill_options import OPTIONS_HELP, DistillOptions, parse_distill
from costmeter.compress.errors import UnsupportedMethod
from costmeter.compress.loading import FORMATS, Format, LoadedModel
from costmeter.compress.torch_env import no_deprecation_noise, torchao_quantization

if TYPE_CHECKING:
    import torch

MethodName = Literal["int8-dynamic", "int8-weight", "fp16", "bf16", "prune", "distill"]
Engine = Literal["torchao", "torch.ao", "torch"]
_EAGER: tuple[Format, ...] = ("pickle", "checkpoint")
SUPPORTED: dict[MethodName, tuple[Format, ...]] = {
    "int8-dynamic": _EAGER,
    "int8-weight": _EAGER,
    "fp16": ("pickle", "checkpoint", "torchscript", "export"),
    "bf16": ("pickle", "checkpoint", "torchscript", "export"),
    "prune": ("pickle", "checkpoint", "torchscript", "export"),
    "distill": ("pickle", "checkpoint", "torchscript", "export"),
}
METHOD_HELP = (
    "int8-dynamic (torchao; int8-dynamic:torch.ao for the older quantizer), int8-weight, fp16, "
    "bf16, prune:AMOUNT with AMOUNT between 0 and 1 (prune:0.5), or "
    f"{OPTIONS_HELP} with --train DATA.npz"
)
#: What the GUI offers; prune gets its amount from a separate field.
CHOICES: tuple[str, ...] = ("int8-dynamic", "int8-dynamic:torch.ao", "int8-weight", "fp16", "bf16")
PRUNE_NOTE = (
    "Pruning sets weights to zero but stores them densely: the file is no smaller and inference "
    "no faster until the model is saved in a sparse format or run with sparse kernels."
)


@dataclass(frozen=True)
class Method:
    name: MethodName
    amount: float | None = None  # prune only
    engine: Engine | None = None  # int8-dynamic only: None picks torchao, else torch.ao
    distill: DistillOptions | None = None  # distill only

    @property
    def label(self) -> str:
        if self.name == "prune":
            return f"prune:{self.amount:g}"
        if self.distill is not None:
            return self.distill.label
        return f"{self.name}:{self.engine}" if self.engine == "torch.ao" else self.name


@dataclass
class Compressed:
    module: torch.nn.Module
    #: The dtype the compressed model's inputs must have.
    input_dtype: torch.dtype
    engine: str
    notes: list[str] = field(default_factory=list)
    #: Share of zero weights in the pruned tensors (prune only).
    sparsity: float | None = None
    #: A weights-only checkpoint to save instead of the pickled module (a distilled MLP).
    checkpoint: dict[str, Any] | None = None
    #: Seconds spent training (distill only).
    training_s: float | None = None


def parse_method(text: str) -> Method:
    raw = text.strip().lower()
    name, _, arg = raw.partition(":")
    if name == "prune":
        try:
            amount = float(arg)
        except ValueError:
            raise UnsupportedMethod(
                f"'{text}': give pruning an amount between 0 and 1, such as prune:0.5."
            ) from None
        if not 0.0 < amount < 1.0:
            raise UnsupportedMethod(f"'{text}': the pruning amount must be between 0 and 1.")
        return Method("prune", amount=amount)
    if name == "distill":
        return Method("distill", distill=parse_distill(text, arg))
    if name == "int8-dynamic" and arg in ("", "torchao", "torch.ao"):
        return Method("int8-dynamic", engine="torch.ao" if arg == "torch.ao" else None)
    if name in ("int8-weight", "fp16", "bf16") and not arg:
        return Method(name)  # type: ignore[arg-type]  # checked just above
    raise UnsupportedMethod(f"Unknown method '{text}': use {METHOD_HELP}.")


def check_supported(method: Method, fmt: Format) -> None:
    if fmt not in SUPPORTED[method.name]:
        kinds = " or ".join(FORMATS[f] for f in SUPPORTED[method.name])
        raise UnsupportedMethod(
            f"{method.label} cannot be applied to a {FORMATS[fmt]}: it replaces nn.Linear "
            f"modules, which only a {kinds} keeps. fp16, bf16 and prune:AMOUNT work on every "
            "format."
        )


def apply_method(method: Method, loaded: LoadedModel) -> Compressed:
    """Compress ``loaded.module`` in place (the caller loads a fresh copy for this)."""
    import torch

    check_supported(method, loaded.format)
    if method.name == "distill":
        raise UnsupportedMethod("distill trains a student: it runs through distill.distill.")
    module = loaded.module
    if method.name in ("fp16", "bf16"):
        dtype = torch.float16 if method.name == "fp16" else torch.bfloat16
        return Compressed(module.to(dtype), dtype, "torch")
    if method.name == "prune":
        assert method.amount is not None
        eager = loaded.format in _EAGER
        sparsity = _prune(module, method.amount, eager=eager)
        return Compressed(module, torch.float32, "torch.nn.utils.prune" if eager else "torch",
                          [PRUNE_NOTE], sparsity)  # fmt: skip
    if method.name == "int8-weight":
        ao = torchao_quantization()
        if ao is None:
            raise UnsupportedMethod("int8-weight needs torchao: pip install 'costmeter[torch]'.")
        _require_linear(module, method)
        ao.quantize_(module, ao.Int8WeightOnlyConfig())
        return Compressed(module, torch.float32, _version("torchao"))
    return _int8_dynamic(method, module)


def _int8_dynamic(method: Method, module: torch.nn.Module) -> Compressed:
    import torch

    _require_linear(module, method)
    ao = torchao_quantization() if method.engine != "torch.ao" else None
    if ao is not None:
        try:  # on a copy: a quantizer failing half-way must not leave a half-quantized model
            quantized = copy.deepcopy(module)
            ao.quantize_(quantized, ao.Int8DynamicActivationInt8WeightConfig())
            return Compressed(quantized, torch.float32, _version("torchao"))
        except Exception as exc:  # fall back to torch's own quantizer, and say so
            note = f"torchao failed ({type(exc).__name__}: {exc}); torch.ao.quantization was used."
            return _torch_ao_dynamic(module, [note])
    notes = [] if method.engine == "torch.ao" else ["torchao is not installed: used torch.ao."]
    return _torch_ao_dynamic(module, notes)


def _torch_ao_dynamic(module: torch.nn.Module, notes: list[str]) -> Compressed:
    import torch

    with no_deprecation_noise():
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    notes.append("torch.ao.quantization is deprecated in favour of torchao; it still works here.")
    engine = f"torch.ao.quantization (torch {torch.__version__})"
    return Compressed(quantized, torch.float32, engine, notes)


def _require_linear(module: torch.nn.Module, method: Method) -> None:
    import torch

    if not any(isinstance(m, torch.nn.Linear) for m in module.modules()):
        raise UnsupportedMethod(
            f"{method.label} found no nn.Linear layer to quantize in this model; fp16, bf16 "
            "or prune:AMOUNT may still apply."
        )


def _prune(module: torch.nn.Module, amount: float, *, eager: bool) -> float:
    """Zero the ``amount`` smallest-magnitude weights of each layer, permanently; returns the
    share of zeros actually in those weights afterwards."""
    import torch

    if eager:
        from torch.nn.utils import prune

        layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
        targets = [m for m in module.modules() if isinstance(m, layers)]
        for layer in targets:
            prune.l1_unstructured(layer, "weight", amount=amount)
            prune.remove(layer, "weight")  # the mask is applied and dropped: permanent
        weights = [layer.weight for layer in targets]
    else:  # TorchScript or exported modules: no pruning hooks, so zero the weights in place
        weights = [p for n, p in module.named_parameters() if n.endswith("weight") and p.dim() > 1]
        with torch.no_grad():
            for w in weights:
                count = round(amount * w.numel())
                if count:
                    smallest = w.abs().flatten().topk(count, largest=False).indices
                    w.view(-1)[smallest] = 0.0
    if not weights:
        raise UnsupportedMethod("prune found no weight matrix (Linear or convolution) to prune.")
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


def _version(package: str) -> str:
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package
