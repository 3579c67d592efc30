"""Accuracy on held-out data, and how often two models agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from costmeter.compress.errors import EvalDataError

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Rows per forward pass when predicting the whole set.
EVAL_BATCH = 256


@dataclass(frozen=True)
class EvalData:
    x: np.ndarray
    y: np.ndarray
    path: Path


def load_eval(path: Path) -> EvalData:
    """Arrays ``x`` (inputs, one row each) and ``y`` (integer labels) from an ``.npz`` file."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: no such evaluation file.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise EvalDataError(f"{path} holds one array; save x and y with np.savez.")
            if any(name.endswith("data.pkl") for name in archive.files):
                raise EvalDataError(f"{path} is a torch file, not evaluation data (.npz).")
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                found = ", ".join(archive.files[:5]) or "nothing"
                raise EvalDataError(
                    f"{path} has no array {' or '.join(missing)} (it has {found}): save the "
                    "inputs as x and the labels as y, np.savez(PATH, x=..., y=...)."
                )
            x, y = archive["x"], archive["y"]
    except EvalDataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise EvalDataError(f"{path} is not a NumPy .npz archive ({exc}).") from exc
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
        raise EvalDataError(f"{path}: x must be numbers, one row per example (shape {x.shape}).")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise EvalDataError(f"{path}: y must be integer class labels, one per row of x.")
    if len(x) != len(y) or len(x) == 0:
        raise EvalDataError(f"{path}: x has {len(x)} rows but y has {len(y)} labels.")
    return EvalData(x.astype("float32", copy=False), y.astype("int64", copy=False), path)


def predict(module: torch.nn.Module, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """Argmax class of each row. A model that accepts only one batch size (an exported program
    traced without a dynamic batch) is run one row at a time."""
    import numpy as np
    import torch

    inputs = torch.from_numpy(x).to(dtype)
    chunks: list[np.ndarray] = []
    with torch.no_grad():
        try:
            for start in range(0, len(inputs), EVAL_BATCH):
                chunks.append(_argmax(module(inputs[start : start + EVAL_BATCH])))
        except Exception:
            if len(inputs) == 1:
                raise
            chunks = [_argmax(module(inputs[i : i + 1])) for i in range(len(inputs))]
    return np.concatenate(chunks)


def _argmax(output: object) -> np.ndarray:
    import torch

    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        raise EvalDataError(
            "The model's output is not one row of class scores per input, so accuracy "
            "cannot be measured; leave out --eval to measure size and latency only."
        )
    return output.float().argmax(dim=1).numpy()


def accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    return float((predicted == y).mean())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows on which both models predict the same class."""
    return float((a == b).mean())
