"""A small training job to try Costmeter on: a torch MLP on scikit-learn's bundled digits.

Everything is offline (the 1,797 8x8 digit images ship with scikit-learn) and 20 epochs take a
second or two on a CPU, so it suits a demo::

    costmeter run --simulate a100:train -- python -m costmeter.examples.digits --epochs 20

It reports its progress with ``costmeter.progress.report`` every epoch (Costmeter shows an ETA
and a forecast cost from it); outside Costmeter that does nothing. Needs the ``torch`` extra
(``pip install costmeter[torch]``: torch and scikit-learn).

``train`` is the reusable part (``costmeter example digits`` builds on it); ``main`` is the
command line: ``--out MODEL.pt`` saves the model, ``--eval-out DATA.npz`` the held-out test
split (arrays ``x`` and ``y``) for measuring the model later.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costmeter import progress

if TYPE_CHECKING:
    import numpy as np
    import torch

INPUTS = 64  # 8 x 8 pixels
CLASSES = 10
TEST_SHARE = 0.25


@dataclass(frozen=True)
class Digits:
    """The digits split into training and test sets, pixels scaled to 0..1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    epochs: int
    loss: float
    test_accuracy: float
    seconds: float


def load_data(seed: int = 0) -> Digits:
    """The bundled digits, shuffled with ``seed`` and split 75/25 within each class."""
    import numpy as np

    raw = _digits_array()
    x = (raw[:, :-1] / 16.0).astype("float32")
    y = raw[:, -1].astype("int64")
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for label in range(CLASSES):
        members = rng.permutation(np.flatnonzero(y == label))
        test.extend(members[: round(len(members) * TEST_SHARE)].tolist())
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(np.flatnonzero(is_test))
    return Digits(x[train_idx], y[train_idx], x[test_idx], y[test_idx])


def _digits_array() -> np.ndarray:
    """scikit-learn's ``digits.csv.gz`` (64 pixels and the label per row), read straight from
    its package: importing ``sklearn.datasets`` costs more than the training itself."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ImportError("scikit-learn is not installed: pip install 'costmeter[torch]'.")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path.exists():
        return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits  # the file moved in some release: the slow way

    data = load_digits()
    return np.column_stack([data.data, data.target])


def build_model(hidden: int = 128) -> torch.nn.Module:
    from torch import nn

    return nn.Sequential(
        nn.Linear(INPUTS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, CLASSES),
    )  # fmt: skip


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Share of ``x`` the model classifies as ``y``."""
    import torch

    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(dim=1)
    return float((predicted == torch.from_numpy(y)).float().mean())


def train(
    epochs: int,
    seed: int = 0,
    *,
    hidden: int = 128,
    lr: float = 3e-3,
    batch_size: int = 64,
    data: Digits | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> torch.nn.Module:
    """Train the MLP for ``epochs`` epochs (deterministic for a seed); report progress each
    epoch to Costmeter and to ``on_epoch``."""
    import torch

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}.")
    torch.manual_seed(seed)
    data = data if data is not None else load_data(seed)
    model = build_model(hidden)
    optimiser = _Adam(list(model.parameters()), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        result = EpochResult(
            epoch=epoch,
            epochs=epochs,
            loss=total / len(x),
            test_accuracy=accuracy(model, data.x_test, data.y_test),
            seconds=time.perf_counter() - t0,
        )
        progress.report(epoch, epochs, loss=result.loss, accuracy=result.test_accuracy)
        if on_epoch is not None:
            on_epoch(result)
    progress.flush()
    return model


class _Adam:
    """Adam, written out: creating a ``torch.optim`` optimiser imports ``torch._dynamo`` (about
    1.5 s on a laptop CPU), which would double this demo's run time."""

    def __init__(self, params: list[torch.nn.Parameter], lr: float) -> None:
        import torch

        self.params = params
        self.lr = lr
        self.steps = 0
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

    def step(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        import torch

        self.steps += 1
        c1, c2 = 1 - beta1**self.steps, 1 - beta2**self.steps
        with torch.no_grad():
            for p, (m, v) in zip(self.params, self.moments, strict=True):
                if p.grad is None:
                    continue
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                p.sub_(self.lr * (m / c1) / ((v / c2).sqrt() + eps))
                p.grad = None


def save_model(model: torch.nn.Module, path: Path, *, hidden: int, test_accuracy: float) -> None:
    import torch

    payload: dict[str, Any] = {
        "state_dict": model.state_dict(),
        "hidden": hidden,
        "inputs": INPUTS,
        "classes": CLASSES,
        "test_accuracy": test_accuracy,
    }
    torch.save(payload, path)


def load_model(path: Path) -> torch.nn.Module:
    """A model saved by ``--out`` (loaded with ``weights_only``: no code runs from the file)."""
    import torch

    payload = torch.load(path, weights_only=True)
    model = build_model(int(payload["hidden"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m costmeter.examples.digits",
        description="Train a small MLP on scikit-learn's digits, reporting progress to Costmeter.",
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=128, help="units per hidden layer")
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate (Adam)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest for a model this small, and it leaves the "
        "other cores alone)",
    )
    parser.add_argument("--out", type=Path, metavar="MODEL.pt", help="save the trained model")
    parser.add_argument(
        "--eval-out", type=Path, metavar="DATA.npz", help="save the test split (x, y)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1.")
    try:
        import numpy as np
        import torch
    except ImportError:
        print(
            "This example needs torch and scikit-learn: pip install 'costmeter[torch]'.",
            file=sys.stderr,
        )
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(args.seed)

    def show(r: EpochResult) -> None:
        print(
            f"epoch {r.epoch:3d}/{r.epochs}  loss {r.loss:.4f}  "
            f"test accuracy {r.test_accuracy:.3f}  ({r.seconds * 1000:.0f} ms)",
            flush=True,
        )

    model = train(args.epochs, args.seed, hidden=args.hidden, lr=args.lr, data=data, on_epoch=show)
    final = accuracy(model, data.x_test, data.y_test)
    print(f"final test accuracy {final:.3f} on {len(data.y_test)} held-out digits", flush=True)
    if args.out is not None:
        save_model(model, args.out, hidden=args.hidden, test_accuracy=final)
        print(f"model saved to {args.out}", flush=True)
    if args.eval_out is not None:
        np.savez(args.eval_out, x=data.x_test, y=data.y_test)
        print(f"test split saved to {args.eval_out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
