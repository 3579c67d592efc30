"""``measure_compression``: the measurement the CLI and the GUI share, and saving its result."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from costmeter.compress.distill import distill
from costmeter.compress.errors import (
    CompressError,
    EvalDataError,
    ModelFileError,
    TrainDataError,
)
from costmeter.compress.evaluate import EvalData, accuracy, agreement, load_eval, predict
from costmeter.compress.loading import LoadedModel, load_model
from costmeter.compress.measure import (
    WARMUP,
    Latency,
    check_cancelled,
    fixed_threads,
    measure_latencies,
    state_dict_bytes,
)
from costmeter.compress.methods import Compressed, apply_method, check_supported, parse_method
from costmeter.compress.report import GOALS, CompressionReport, Figures, Goal, decide
from costmeter.compress.serving_cost import ServingPrice, format_money
from costmeter.compress.torch_env import require_torch
from costmeter.compress.train_data import TrainData, load_train

if TYPE_CHECKING:
    import numpy as np
    import torch

Progress = Callable[[str, float], None]
#: Share of the progress bar that distilling takes; measuring both models takes the rest.
DISTILL_SHARE = 0.45


def measure_compression(
    model_path: str | Path,
    method: str,
    *,
    eval_path: str | Path | None = None,
    train_path: str | Path | None = None,
    goal: Goal = "cost",
    price: ServingPrice | None = None,
    trust: bool = False,
    max_drop: float = 1.0,
    batch: int = 64,
    repeat: int = 30,
    out_path: str | Path | None = None,
    threads: int = 1,
    on_progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> CompressionReport:
    """Load the model, compress a fresh copy with ``method`` (distill: train a student on
    ``train_path``), measure both, give the verdict for ``goal`` (priced with ``price`` when
    given); with ``out_path`` save the compressed model unless it is rejected. Raises
    CompressError subclasses (sentences) for bad input, CompressionCancelled when
    ``cancelled()`` turns true."""
    require_torch()
    if batch < 2 or repeat < 1 or threads < 1:
        raise CompressError("--batch must be at least 2, --repeat and threads at least 1.")
    if max_drop < 0:
        raise CompressError("--max-drop must be zero or more percentage points.")
    if goal not in GOALS:
        raise CompressError(f"Unknown goal '{goal}': use {', '.join(GOALS)}.")
    report_progress: Progress = on_progress or (lambda _stage, _share: None)
    spec = parse_method(method)
    if spec.name == "distill" and train_path is None:
        raise TrainDataError(
            "distill trains a smaller student on your data: give it with --train DATA.npz "
            "(arrays x and, for labels, y; `costmeter example digits --train-out` writes one)."
        )
    if spec.name != "distill" and train_path is not None:
        raise CompressError(f"--train is for --method distill only, not {spec.label}.")
    path = Path(model_path)
    report_progress("Loading the model", 0.0)
    original = load_model(path, trust=trust)
    check_supported(spec, original.format)
    data = load_eval(Path(eval_path)) if eval_path is not None else None
    train = load_train(Path(train_path)) if train_path is not None else None
    shape = _input_shape(original, data, train)
    examples = _examples(shape, batch, data)

    check_cancelled(cancelled)
    report_progress(f"Compressing ({spec.label})", 0.03)
    measure_progress = report_progress
    with fixed_threads(threads):
        if spec.distill is not None and train is not None:
            compressed = distill(original, train, spec.distill, shape, progress=report_progress,
                                 cancelled=cancelled, span=(0.03, DISTILL_SHARE))  # fmt: skip

            def measure_progress(stage: str, share: float) -> None:
                report_progress(stage, DISTILL_SHARE + (1 - DISTILL_SHARE) * share)
        else:
            compressed = apply_method(spec, load_model(path, trust=trust))
        check_cancelled(cancelled)
        before, after, predictions = _measure_both(
            original.module, compressed, examples, data, repeat, cancelled, measure_progress
        )
    report = CompressionReport(
        model=str(path),
        format=original.described,
        method=spec.label,
        engine=compressed.engine,
        threads=threads,
        repeat=repeat,
        batch=batch,
        input_shape=shape,
        before=before,
        after=after,
        eval_path=str(data.path) if data is not None else None,
        eval_rows=len(data.y) if data is not None else 0,
        sparsity=compressed.sparsity,
        max_drop=max_drop,
        notes=list(compressed.notes),
        goal=goal,
        price_per_hour=price.per_hour(threads) if price is not None else None,
        currency=price.currency if price is not None else "USD",
        price_source=price.source if price is not None else "",
        training_s=compressed.training_s,
        compressed=SavedModel(compressed, original.format, examples),
    )
    if predictions[0] is not None and predictions[1] is not None:
        report.agreement = agreement(predictions[0], predictions[1])
    report.verdict, report.reason = decide(report)
    report.notes.extend(_notes(report, original, data))
    report.notes.extend(_price_notes(report, price))
    if out_path is not None:
        if report.verdict == "reject":
            report.notes.append(f"Not saved to {out_path}: the compressed model was rejected.")
        else:
            measure_progress("Saving the compressed model", 0.97)
            try:
                save_compressed(report, Path(out_path))
            except CompressError as exc:  # the measurement is still worth showing
                report.save_error = str(exc)
    report_progress("Done", 1.0)
    return report


@dataclass
class SavedModel:
    """What ``save_compressed`` needs: the compressed model, its source format, an input."""

    compressed: Compressed
    source_format: str
    #: Inputs at batch 1 and at the larger batch (float32).
    examples: tuple[torch.Tensor, torch.Tensor]


def save_compressed(report: CompressionReport, out_path: Path) -> Path:
    """Write the compressed model: TorchScript input -> TorchScript; a ``.pt2`` name -> a
    torch.export program (loads without running code); otherwise ``torch.save(model)``."""
    import torch

    saved = report.compressed
    if not isinstance(saved, SavedModel):
        raise CompressError("There is no compressed model to save: measure one first.")
    module = saved.compressed.module
    out_path = Path(out_path)
    checkpoint = saved.compressed.checkpoint
    try:
        if checkpoint is not None and out_path.suffix != ".pt2":
            torch.save(checkpoint, out_path)  # weights only: loads without --trust
        elif saved.source_format == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.save(module, str(out_path))
        elif out_path.suffix == ".pt2":
            torch.export.save(_export(saved), str(out_path))
        else:
            torch.save(module, out_path)
    except OSError as exc:
        raise CompressError(f"Could not write {out_path}: {exc.strerror or exc}.") from exc
    except Exception as exc:
        other = "a .pt name (torch.save)" if out_path.suffix == ".pt2" else "a .pt2 name"
        raise CompressError(
            f"This {report.method} model cannot be saved as {out_path.name} "
            f"({type(exc).__name__}: {str(exc)[:160]}); try {other}."
        ) from exc
    report.out_path = str(out_path)
    return out_path


def _export(saved: SavedModel) -> torch.export.ExportedProgram:
    """An exported program with a dynamic batch size where the model allows one."""
    import torch

    one, many = (e.to(saved.compressed.input_dtype) for e in saved.examples)
    module = saved.compressed.module
    try:
        auto = torch.export.Dim.AUTO
        return torch.export.export(module, (many,), dynamic_shapes=({0: auto},))
    except Exception:  # a model that runs at one batch size only (itself exported so)
        return torch.export.export(module, (one,))


def _measure_both(
    original: torch.nn.Module,
    compressed: Compressed,
    examples: tuple[torch.Tensor, torch.Tensor],
    data: EvalData | None,
    repeat: int,
    cancelled: Callable[[], bool] | None,
    progress: Progress,
) -> tuple[Figures, Figures, tuple[np.ndarray | None, np.ndarray | None]]:
    """Sizes, then latency of both models timed in turn at batch 1 and at the larger batch,
    then accuracy on the evaluation data."""
    import torch

    dtypes = (torch.float32, compressed.input_dtype)
    modules = (original, compressed.module)
    progress("Measuring sizes", 0.05)
    sizes = [state_dict_bytes(m) for m in modules]
    counts = [_parameters(m) for m in modules]
    latencies = []
    for step, example in enumerate(examples):
        stage = f"Timing both models at batch {len(example)}"
        start = 0.05 + 0.45 * step

        def timed(i: int, stage: str = stage, start: float = start) -> None:
            progress(stage, start + 0.45 * i / repeat)

        runs = [(m, example.to(dtype)) for m, dtype in zip(modules, dtypes, strict=True)]
        latencies.append(measure_latencies(runs, repeat=repeat, cancelled=cancelled,
                                           on_round=timed))  # fmt: skip
    predictions: list[np.ndarray | None] = [None, None]
    accuracies: list[float | None] = [None, None]
    if data is not None:
        progress("Measuring accuracy", 0.95)
        for k in (0, 1):
            predicted = _predict(modules[k], data, dtypes[k], latencies[0][k])
            predictions[k] = predicted
            if predicted is not None:
                accuracies[k] = accuracy(predicted, data.y)
    before, after = (
        Figures(sizes[k], latencies[0][k], latencies[1][k], accuracies[k], counts[k])
        for k in (0, 1)
    )
    return before, after, (predictions[0], predictions[1])


def _predict(
    module: torch.nn.Module, data: EvalData, dtype: torch.dtype, lat: Latency
) -> np.ndarray | None:
    try:
        return predict(module, data.x, dtype)
    except EvalDataError:
        raise
    except Exception as exc:
        if lat.error is not None:  # it does not run at all: the verdict says so
            return None
        raise EvalDataError(f"The model did not accept the evaluation data: {exc}") from exc


def _parameters(module: torch.nn.Module) -> int | None:
    try:
        return sum(int(p.numel()) for p in module.parameters())
    except Exception:  # a quantized tensor subclass that does not count its elements
        return None


def _input_shape(
    loaded: LoadedModel, data: EvalData | None, train: TrainData | None = None
) -> tuple[int, ...]:
    if data is None and train is not None and loaded.input_shape is None:
        return tuple(int(d) for d in train.x.shape[1:])  # distill checks the rows fit
    if data is not None:
        shape = tuple(int(d) for d in data.x.shape[1:])
        if loaded.input_shape is not None and loaded.input_shape != shape:
            raise EvalDataError(
                f"{data.path}: x has rows of shape {shape}, but the model takes "
                f"{loaded.input_shape} (from {loaded.input_source})."
            )
        return shape
    if loaded.input_shape is None:
        raise ModelFileError(
            "The input shape cannot be told from this model's weights: give evaluation data "
            "(--eval DATA.npz), whose x rows are real inputs."
        )
    return loaded.input_shape


def _examples(
    shape: tuple[int, ...], batch: int, data: EvalData | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs for timing: rows of the evaluation data when given (repeated up to ``batch``),
    else seeded random numbers of the model's input shape."""
    import torch

    if data is not None:
        x = torch.from_numpy(data.x)
        many = x[torch.arange(batch) % len(x)].contiguous()
    else:
        many = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0))
    return many[:1].clone(), many


def _notes(report: CompressionReport, loaded: LoadedModel, data: EvalData | None) -> list[str]:
    notes = [
        f"Latency: median of {report.repeat} timed runs after {WARMUP} warm-up runs, the two "
        f"models in turn, on this CPU with {report.threads} torch "
        f"thread{'s' if report.threads != 1 else ''} (10th and 90th percentiles in --format "
        "json).",
        "Size: bytes of torch.save(model.state_dict()), weights stored densely.",
    ]
    if data is None:
        notes.append(
            f"Inputs for timing: random numbers of shape {report.input_shape} (from "
            f"{loaded.input_source}); accuracy not measured."
        )
    for label, lat in (
        ("batch 1", report.after.latency_1),
        ("the larger batch", report.after.latency_n),
    ):
        if lat.error:
            notes.append(f"The compressed model did not run at {label} here: {lat.error}")
    for label, lat in (
        ("batch 1", report.before.latency_1),
        ("the larger batch", report.before.latency_n),
    ):
        if lat.error:
            notes.append(f"The original model did not run at {label}: {lat.error}")
    return notes


def _price_notes(report: CompressionReport, price: ServingPrice | None) -> list[str]:
    if price is None or report.price_per_hour is None:
        return []
    cores = f"{report.threads} CPU core{'s' if report.threads != 1 else ''}"
    notes = [
        f"Cost per 1M inferences: median latency per row x {cores} at "
        f"{format_money(price.core_hour, price.currency)} per core-hour"
        + (f" ({price.source})" if price.source else "")
        + "; measured on the CPU, so no GPU-hour price applies."
    ]
    if report.training_s is not None:
        spent = report.training_s / 3600.0 * report.price_per_hour
        notes.append(
            f"Distilling took {report.training_s:.2f} s on {cores}: "
            f"{format_money(spent, price.currency)} at the same price."
        )
    return notes
