"""Progress reporting for training scripts, and reading it back.

In a training script::

    from costmeter import progress

    for step in range(total):
        ...
        progress.report(step + 1, total, loss=loss)

``report`` appends JSON lines to the file named by ``$COSTMETER_PROGRESS_FILE``, which Costmeter
sets for every run it starts. Outside Costmeter the variable is unset and ``report`` does nothing.
It never raises and is cheap enough to call every step: at most one line is written per
:data:`MIN_INTERVAL_S` seconds (the newest point wins; the last one is written at exit, and a step
that reaches ``total`` is written at once). In a multi-process job, report from one process only
(rank 0).

File format, one object per line::

    {"time": 1712345678.123, "step": 10, "total": 100, "metrics": {"loss": 0.52}}

``total`` may be ``null``; a metric that is not a finite number is written as ``null``.
The module imports only the standard library: it runs inside users' scripts.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from costmeter.plugin_api import PROGRESS_ENV

__all__ = [
    "FILE_NAME",
    "MIN_INTERVAL_S",
    "ProgressPoint",
    "eta",
    "flush",
    "latest",
    "read_progress",
    "report",
]

#: The file name Costmeter gives the progress file inside a run's directory.
FILE_NAME = "progress.jsonl"
#: At most one line per this many seconds (monotonic clock); points in between are coalesced.
MIN_INTERVAL_S = 1.0
#: ``eta`` looks at the points of the last this many seconds.
ETA_WINDOW_S = 300.0
_TAIL_BYTES = 64 * 1024

_Point = tuple[float, int, int | None, Mapping[str, object]]


class _Writer:
    """The open progress file of this process. All access holds ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.path: str | None = None
        self.fd: int | None = None
        self.last_write = -math.inf
        self.pending: _Point | None = None

    def switch_to(self, path: str) -> None:
        self.close()
        self.path = path
        try:  # O_APPEND: each line is one write(2), so lines from forked workers do not tear
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            self.fd = None  # remembered for this path, so a bad path costs one attempt

    def write(self, point: _Point) -> None:
        if self.fd is None:
            return
        self.last_write = time.monotonic()
        self.pending = None
        with contextlib.suppress(OSError, TypeError, ValueError):
            os.write(self.fd, _encode(point))

    def close(self) -> None:
        if self.pending is not None:
            self.write(self.pending)
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = None
        self.path = None
        self.last_write = -math.inf


_writer = _Writer()


def _reset_after_fork() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    _writer.lock = threading.Lock()
    _writer.pending = None


os.register_at_fork(after_in_child=_reset_after_fork)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _encode(point: _Point) -> bytes:
    when, step, total, metrics = point
    record = {
        "time": round(when, 3),
        "step": int(step),
        "total": None if total is None else int(total),
        "metrics": {str(k): _number(v) for k, v in metrics.items()},
    }
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def report(step: int, total: int | None = None, **metrics: float) -> None:
    """Record that ``step`` of ``total`` is done, with optional metrics (``loss=0.3``).

    Does nothing when Costmeter did not start this process; never raises.
    """
    try:
        path = os.environ.get(PROGRESS_ENV)
        if not path:
            return
        now = time.time()
        w = _writer
        with w.lock:
            if path != w.path:
                w.switch_to(path)
            if w.fd is None:
                return
            point: _Point = (now, step, total, metrics)
            due = time.monotonic() - w.last_write >= MIN_INTERVAL_S
            if due or (total is not None and step >= total):
                w.write(point)
            else:
                w.pending = point
    except Exception:
        pass


def flush() -> None:
    """Write the newest coalesced point now (also done at exit)."""
    try:
        with _writer.lock:
            if _writer.pending is not None:
                _writer.write(_writer.pending)
    except Exception:
        pass


atexit.register(flush)


@dataclass(frozen=True)
class ProgressPoint:
    time: float
    step: int
    total: int | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        """Share done, 0 to 1; ``None`` without a total."""
        if not self.total or self.total <= 0:
            return None
        return min(max(self.step / self.total, 0.0), 1.0)


def parse_line(line: str | bytes) -> ProgressPoint | None:
    """One line of a progress file, or ``None`` for a torn or foreign line."""
    try:
        obj = json.loads(line)
        total = obj.get("total")
        metrics = obj.get("metrics") or {}
        return ProgressPoint(
            time=float(obj["time"]),
            step=int(obj["step"]),
            total=None if total is None else int(total),
            metrics={str(k): _number(v) for k, v in metrics.items()},
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def read_progress(path: str | Path) -> list[ProgressPoint]:
    """Every readable point, oldest first; ``[]`` when the file is missing."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    points = (parse_line(line) for line in data.splitlines() if line.strip())
    return [p for p in points if p is not None]


def latest(path: str | Path) -> ProgressPoint | None:
    """The newest readable point, reading only the end of the file."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        point = parse_line(line) if line.strip() else None
        if point is not None:
            return point
    if size > _TAIL_BYTES:  # a line longer than the tail: rare, read it all
        points = read_progress(path)
        return points[-1] if points else None
    return None


def eta(points: Sequence[ProgressPoint], now: float | None = None) -> float | None:
    """Seconds left, from the step rate over the recent points; ``None`` when it cannot tell.

    Only the last stretch where steps go up counts (a restart from a checkpoint begins a new
    one), and within it the last :data:`ETA_WINDOW_S` seconds. With ``now``, the time since
    the newest point is taken off.
    """
    if not points:
        return None
    last = points[-1]
    if last.total is None:
        return None
    if last.step >= last.total:
        return 0.0
    start = len(points) - 1
    while start > 0:
        before = points[start - 1]
        if before.step > points[start].step or before.time > points[start].time:
            break
        if last.time - before.time > ETA_WINDOW_S and start < len(points) - 1:
            break
        start -= 1
    first = points[start]
    steps, seconds = last.step - first.step, last.time - first.time
    if steps <= 0 or seconds <= 0:
        return None
    left = (last.total - last.step) * seconds / steps
    if now is not None:
        left -= max(0.0, now - last.time)
    return max(left, 0.0)
