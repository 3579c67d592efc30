"""Knowledge distillation: train a smaller student MLP from the teacher's soft targets.

The loss is Hinton, Vinyals and Dean (2015): ``alpha * T^2 * KL(teacher_T || student_T)`` on
the softmax of both models' outputs divided by the temperature ``T``, plus
``(1 - alpha) * cross_entropy(student, y)`` when the training data has labels ``y`` (without
them the soft targets alone teach: alpha is taken as 1).

The student: for a teacher that is a plain MLP (an eager ``nn.Sequential`` of Linear layers and
activations), the same depth and activations with narrower hidden layers; for any other model
(convolutions, TorchScript, torch.export), a two-layer MLP over the flattened input to the
teacher's number of outputs. Training is seeded and runs on the caller's torch threads (the
pipeline fixes them), checks ``cancelled`` every batch and reports each epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from costmeter.compress.distill_options import DistillOptions
from costmeter.compress.errors import CompressionCancelled, TrainDataError, UnsupportedMethod
from costmeter.compress.loading import LoadedModel
from costmeter.compress.measure import check_cancelled
from costmeter.compress.methods import Compressed
from costmeter.compress.mlp import MlpShape, build_mlp, checkpoint_payload, mlp_shape
from costmeter.compress.train_data import TrainData

if TYPE_CHECKING:
    import torch

#: The student's hidden layers are the teacher's divided by this (at least MIN_HIDDEN wide).
SHRINK = 4
MIN_HIDDEN = 8
#: Hidden width of the two-layer student of a teacher that is not a plain MLP.
FALLBACK_HIDDEN = 32
LEARNING_RATE = 3e-3
BATCH_SIZE = 64
#: Rows per forward pass when the teacher labels the training data.
TEACHER_BATCH = 256

Progress = Callable[[str, float], None]


def distill(
    teacher: LoadedModel,
    data: TrainData,
    options: DistillOptions,
    input_shape: tuple[int, ...],
    *,
    progress: Progress,
    cancelled: Callable[[], bool] | None = None,
    span: tuple[float, float] = (0.0, 1.0),
) -> Compressed:
    """Train the student; progress shares run from ``span[0]`` to ``span[1]``."""
    import torch

    if tuple(int(d) for d in data.x.shape[1:]) != input_shape:
        raise TrainDataError(
            f"{data.path}: x has rows of shape {tuple(data.x.shape[1:])}, but the model takes "
            f"{input_shape}."
        )
    x = torch.from_numpy(data.x)
    progress("Distilling: the teacher labels the training data", span[0])
    soft = _teacher_outputs(teacher, x, cancelled)
    classes = int(soft.shape[1])
    y = _labels(data, classes)
    shape, how = student_shape(teacher.module, input_shape, classes, options.hidden)
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's generator
        torch.manual_seed(options.seed)
        student = build_mlp(shape)
    alpha = options.alpha if y is not None else 1.0
    start = time.perf_counter()
    loss = _train(student, x, soft, y, options, alpha, progress, cancelled, span)
    seconds = time.perf_counter() - start
    student.eval()
    labels = (
        f"the labels (cross-entropy, weight {1 - alpha:g})"
        if y is not None
        else "no labels (the file has no y: soft targets only)"
    )
    note = (
        f"Student: {_describe(shape)}, {how}; trained {options.epochs} epochs on {len(x)} rows "
        f"of {data.path.name} from the teacher's soft targets at temperature "
        f"{options.temperature:g} (KL divergence x T², weight {alpha:g}) and {labels}; Adam lr "
        f"{LEARNING_RATE:g}, batch {BATCH_SIZE}, seed {options.seed}: {seconds:.2f} s here, "
        f"final loss {loss:.4f}."
    )
    payload = checkpoint_payload(student, shape, distilled_from=str(teacher.described))
    engine = f"distillation (torch {torch.__version__})"
    return Compressed(student, torch.float32, engine, [note], checkpoint=payload,
                      training_s=seconds)  # fmt: skip


def student_shape(
    teacher: torch.nn.Module, input_shape: tuple[int, ...], classes: int, hidden: int | None
) -> tuple[MlpShape, str]:
    """The student's shape and a phrase saying how it was chosen."""
    shape = mlp_shape(teacher)
    if shape is not None and shape.hidden:
        widths = tuple(hidden or max(MIN_HIDDEN, w // SHRINK) for w in shape.hidden)
        how = (
            f"the teacher's depth with hidden width {hidden}"
            if hidden
            else "the teacher's depth, a quarter of its widths"
        ) + f"; the teacher is an {_describe(shape)}"
        return MlpShape((shape.widths[0], *widths, classes), shape.activations, input_shape), how
    width = hidden or FALLBACK_HIDDEN
    flat = math.prod(input_shape)
    how = "a two-layer MLP over the flattened input: the teacher is not a plain MLP"
    return MlpShape((flat, width, classes), ("ReLU",), input_shape, len(input_shape) > 1), how


def _teacher_outputs(
    teacher: LoadedModel, x: torch.Tensor, cancelled: Callable[[], bool] | None
) -> torch.Tensor:
    import torch

    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, len(x), TEACHER_BATCH):
                check_cancelled(cancelled)
                chunks.append(teacher.module(x[start : start + TEACHER_BATCH]))
    except CompressionCancelled:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UnsupportedMethod(
            f"distill needs the teacher to run on the training data, and this "
            f"{teacher.described} did not: {first}"
        ) from exc
    if not all(isinstance(c, torch.Tensor) and c.dim() == 2 for c in chunks):
        raise UnsupportedMethod(
            "distill needs a teacher whose output is one row of class scores per input; "
            "this model's is not."
        )
    return torch.cat(chunks).float()


def _labels(data: TrainData, classes: int) -> torch.Tensor | None:
    import torch

    if data.y is None:
        return None
    low, high = int(data.y.min()), int(data.y.max())
    if low < 0 or high >= classes:
        raise TrainDataError(
            f"{data.path}: y has labels from {low} to {high}, but the teacher scores "
            f"{classes} classes (0 to {classes - 1})."
        )
    return torch.from_numpy(data.y)


def _train(
    student: torch.nn.Module,
    x: torch.Tensor,
    teacher_out: torch.Tensor,
    y: torch.Tensor | None,
    options: DistillOptions,
    alpha: float,
    progress: Progress,
    cancelled: Callable[[], bool] | None,
    span: tuple[float, float],
) -> float:
    """The epochs of training; returns the last epoch's mean loss."""
    import torch
    from torch.nn import functional

    from costmeter.examples.digits import _Adam  # torch.optim would import torch._dynamo (~1.5 s)

    t = options.temperature
    soft_targets = functional.log_softmax(teacher_out / t, dim=1)
    optimiser = _Adam(list(student.parameters()), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(options.seed)
    mean = 0.0
    student.train()
    for epoch in range(1, options.epochs + 1):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for first in range(0, len(x), BATCH_SIZE):
            check_cancelled(cancelled)
            idx = order[first : first + BATCH_SIZE]
            out = student(x[idx])
            loss = alpha * t * t * functional.kl_div(
                functional.log_softmax(out / t, dim=1), soft_targets[idx],
                reduction="batchmean", log_target=True,
            )  # fmt: skip
            if y is not None and alpha < 1.0:
                loss = loss + (1.0 - alpha) * functional.cross_entropy(out, y[idx])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        mean = total / len(x)
        share = span[0] + (span[1] - span[0]) * epoch / options.epochs
        progress(f"Distilling: epoch {epoch}/{options.epochs}, loss {mean:.4f}", share)
    return mean


def _describe(shape: MlpShape) -> str:
    acts = sorted(set(shape.activations))
    return f"MLP {'-'.join(str(w) for w in shape.widths)}" + (
        f" ({', '.join(acts)})" if acts else ""
    )
