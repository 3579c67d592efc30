"""The data a student is distilled on (``--train DATA.npz``): inputs ``x``, labels ``y`` if any."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from costmeter.compress.errors import TrainDataError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TrainData:
    x: np.ndarray
    #: Integer class labels; None when the file has none (the teacher's answers alone teach).
    y: np.ndarray | None
    path: Path


def load_train(path: Path) -> TrainData:
    """Arrays ``x`` (one row per example) and, optionally, ``y`` from an ``.npz`` file."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise TrainDataError(f"{path}: {what} (--train takes an .npz with arrays x and y).")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise TrainDataError(f"{path} holds one array; save x (and y) with np.savez.")
            if any(name.endswith("data.pkl") for name in archive.files):
                raise TrainDataError(f"{path} is a torch file, not training data (.npz).")
            if "x" not in archive.files:
                found = ", ".join(archive.files[:5]) or "nothing"
                raise TrainDataError(
                    f"{path} has no array x (it has {found}): save the training inputs as x "
                    "and their labels as y, np.savez(PATH, x=..., y=...)."
                )
            x = archive["x"]
            y = archive["y"] if "y" in archive.files else None
    except TrainDataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise TrainDataError(f"{path} is not a NumPy .npz archive ({exc}).") from exc
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2 or len(x) == 0:
        raise TrainDataError(
            f"{path}: x must be numbers, one row per example (it has shape {x.shape})."
        )
    if y is not None:
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise TrainDataError(f"{path}: y must be integer class labels, one per row of x.")
        if len(y) != len(x):
            raise TrainDataError(f"{path}: x has {len(x)} rows but y has {len(y)} labels.")
        y = y.astype("int64", copy=False)
    return TrainData(x.astype("float32", copy=False), y, path)
