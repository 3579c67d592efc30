"""Size and CPU latency of a model, measured here rather than assumed.

Size is the number of bytes ``torch.save(model.state_dict())`` writes: the weights as stored,
dense. Latency is the median (with the 10th and 90th percentiles) of ``repeat`` timed forward
passes after ``warmup`` untimed ones, the models timed in turn, with torch's CPU threads fixed
for the whole measurement.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from costmeter.compress.errors import CompressionCancelled

if TYPE_CHECKING:
    import torch

#: Untimed runs before timing: first calls allocate, pack weights, warm caches.
WARMUP = 5


@dataclass(frozen=True)
class Latency:
    """Seconds per forward pass; ``error`` instead when the model cannot run that batch."""

    batch: int
    median_s: float | None = None
    p10_s: float | None = None
    p90_s: float | None = None
    runs: int = 0
    error: str | None = None


def state_dict_bytes(module: torch.nn.Module) -> int:
    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return len(buffer.getvalue())


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` while measuring, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_latencies(
    runs: Sequence[tuple[torch.nn.Module, torch.Tensor]],
    *,
    repeat: int,
    warmup: int = WARMUP,
    cancelled: Callable[[], bool] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> list[Latency]:
    """Time ``module(example)`` for each pair, interleaved: every round times each model once
    (in alternating order), so a burst of load on a shared machine hits them all alike instead
    of whichever happened to be measured then. A model that fails on its input gets ``error``
    rather than raising (fp16 on some CPUs, a program exported for another batch size)."""
    import torch

    times: list[list[float]] = [[] for _ in runs]
    errors: list[str | None] = [None] * len(runs)
    with torch.no_grad():
        for i in range(warmup + repeat):
            order = range(len(runs)) if i % 2 == 0 else range(len(runs) - 1, -1, -1)
            for k in order:
                if errors[k] is not None:
                    continue
                check_cancelled(cancelled)
                module, example = runs[k]
                try:
                    start = time.perf_counter()
                    module(example)
                    elapsed = time.perf_counter() - start
                except Exception as exc:
                    errors[k] = _reason(exc)
                    continue
                if i >= warmup:
                    times[k].append(elapsed)
            if on_round is not None and i >= warmup:
                on_round(i - warmup + 1)
    out = []
    for (_, example), t, error in zip(runs, times, errors, strict=True):
        batch = int(example.shape[0])
        if error is not None or not t:
            out.append(Latency(batch, error=error or "not timed"))
        else:
            out.append(Latency(batch, statistics.median(t), _percentile(t, 0.10),
                               _percentile(t, 0.90), len(t)))  # fmt: skip
    return out


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = share * (len(ordered) - 1)  # linear interpolation between neighbours
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def check_cancelled(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        raise CompressionCancelled()


def _reason(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text[:200]
