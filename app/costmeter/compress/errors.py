"""Errors of model compression: each is a sentence a user can act on."""

from __future__ import annotations

import sys

from costmeter.core.errors import CostmeterError

TORCH_HINT = "pip install 'costmeter[torch]'"
#: Said instead in the packaged build (PyInstaller sets ``sys.frozen``), which leaves torch out
#: and cannot be pip-installed into.
BUNDLE_TORCH_HINT = (
    "this packaged Costmeter leaves torch out (it is about 700 MB); install Costmeter with pip "
    "in a Python 3.11+ environment instead: python3 -m venv ~/.venvs/costmeter && "
    "~/.venvs/costmeter/bin/pip install 'costmeter[gui,torch]'"
)


class CompressError(CostmeterError):
    """Base class of everything ``costmeter compress`` refuses."""


class TorchMissing(CompressError):
    """torch (or numpy) is not installed: the app itself works without it."""

    def __init__(self, what: str = "Model compression") -> None:
        hint = BUNDLE_TORCH_HINT if getattr(sys, "frozen", False) else TORCH_HINT
        super().__init__(f"{what} needs torch: {hint}.")


class ModelFileError(CompressError):
    """The file is missing, not a model, damaged, or of a kind that cannot be loaded."""


class TrustRequired(ModelFileError):
    """A whole pickled model: loading it runs code named in the file."""


class UnsupportedMethod(CompressError):
    """An unknown method, a bad amount, or a method the model's format does not allow."""


class EvalDataError(CompressError):
    """The --eval file is not arrays ``x`` and ``y`` that fit the model."""


class TrainDataError(CompressError):
    """The --train file (distillation) is missing, unreadable, or does not fit the model."""


class CompressionCancelled(CompressError):
    def __init__(self) -> None:
        super().__init__("The measurement was cancelled.")
