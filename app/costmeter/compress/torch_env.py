"""Lazy, quiet imports of torch and torchao: the rest of Costmeter runs without them."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import types
import warnings
from collections.abc import Iterator

from costmeter.compress.errors import TorchMissing


def require_torch(what: str = "Model compression") -> types.ModuleType:
    """``torch``, or TorchMissing with the install hint (numpy is checked too: the eval data
    and the digits example need it)."""
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as exc:
        raise TorchMissing(what) from exc
    return torch


def torchao_quantization() -> types.ModuleType | None:
    """``torchao.quantization``, imported without the noise it makes on a CPU-only machine
    (it reports that its CUDA extensions failed to load); None when torchao is missing or
    broken with this torch."""
    try:
        with _quiet():
            import torchao.quantization as quantization
    except Exception:  # ImportError, or an incompatible build failing at import
        return None
    return quantization


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    sink = io.StringIO()
    pytree = logging.getLogger("torch.utils._pytree")
    level = pytree.level
    pytree.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            _quiet_fd2(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        pytree.setLevel(level)


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Some messages are written by C++ straight to file descriptor 2."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@contextlib.contextmanager
def no_deprecation_noise() -> Iterator[None]:
    """torch.ao.quantization works in the pinned torch but warns that it is deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
        yield
