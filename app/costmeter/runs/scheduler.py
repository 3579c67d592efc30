"""GPU placement on this machine: which GPUs a run may have, given how many runs each may hold.

Pure bookkeeping, no processes and no store: the queue asks ``GpuPool.try_acquire`` before it
submits a run and calls ``release`` when the run has ended. A GPU holds at most ``per_gpu`` runs
at once (one by default; more is "packing"). The pool never hands out more, whatever the number
of threads asking, and it remembers the most runs it has seen on any one GPU so tests and the
benchmark can check that.

One pool per machine: several queues (one per backend, or per simulated profile) may share it.
Each registers a waker; when one queue frees GPUs, the others are woken to start what waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from costmeter.core.errors import CostmeterError


class PlacementError(CostmeterError):
    """A run asks for GPUs this machine (or this backend) cannot ever give it."""


def check_request(gpus: int, gpu_count: int, *, per_gpu: int = 1) -> None:
    """Raise ``PlacementError`` when a request for ``gpus`` GPUs can never be met here."""
    if gpus < 0:
        raise PlacementError(f"A run cannot ask for {gpus} GPUs.")
    if gpus == 0:
        return
    if gpu_count <= 0:
        raise PlacementError(
            f"The run asks for {gpus} GPU{'s' if gpus != 1 else ''}, but this machine has no "
            "GPUs that Costmeter can see. Leave out --gpus to run it on the CPU, or use "
            "--simulate to try it with simulated GPUs."
        )
    if gpus > gpu_count:
        raise PlacementError(
            f"The run asks for {gpus} GPUs, but this machine has only {gpu_count}. Ask for "
            f"at most {gpu_count}."
        )
    if per_gpu < 1:
        raise PlacementError(f"Runs per GPU must be at least 1, not {per_gpu}.")


def choose_gpus(load: Sequence[int], want: int, per_gpu: int) -> tuple[int, ...] | None:
    """The ``want`` GPUs a new run should get, or None when fewer than that have room now.

    ``load[i]`` is how many runs GPU ``i`` holds. The least loaded GPUs are chosen first, so
    packed runs spread out before they double up; ties go to the lower index. The result is in
    index order (it becomes ``CUDA_VISIBLE_DEVICES``).
    """
    if want <= 0:
        return ()
    free = [i for i, n in enumerate(load) if n < per_gpu]
    if len(free) < want:
        return None
    free.sort(key=lambda i: (load[i], i))
    return tuple(sorted(free[:want]))


class GpuPool:
    """The runs each GPU of this machine holds now. Thread-safe."""

    def __init__(self, gpu_count: int, per_gpu: int = 1) -> None:
        if gpu_count < 0:
            raise ValueError("gpu_count cannot be negative.")
        if per_gpu < 1:
            raise PlacementError(f"Runs per GPU must be at least 1, not {per_gpu}.")
        self.gpu_count = gpu_count
        self.per_gpu = per_gpu
        self._load = [0] * gpu_count
        self._lock = threading.Lock()
        self._max_seen = 0
        self._wakers: list[Callable[[], None]] = []

    def check(self, gpus: int) -> None:
        check_request(gpus, self.gpu_count, per_gpu=self.per_gpu)

    def try_acquire(self, gpus: int) -> tuple[int, ...] | None:
        """Reserve ``gpus`` GPUs and return their indices, or None when they are not free now."""
        self.check(gpus)
        with self._lock:
            chosen = choose_gpus(self._load, gpus, self.per_gpu)
            if chosen is None:
                return None
            for i in chosen:
                self._load[i] += 1
                if self._load[i] > self.per_gpu:  # would be a bug in choose_gpus
                    raise AssertionError(f"GPU {i} over-allocated")
                self._max_seen = max(self._max_seen, self._load[i])
            return chosen

    def release(self, indices: Sequence[int]) -> None:
        with self._lock:
            for i in indices:
                if not 0 <= i < self.gpu_count or self._load[i] <= 0:
                    raise ValueError(f"GPU {i} was not held.")
                self._load[i] -= 1

    def add_waker(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (with no lock held) after another sharer of the pool frees GPUs."""
        with self._lock:
            self._wakers.append(wake)

    def wake_others(self, freed_by: Callable[[], None]) -> None:
        """GPUs were released by the sharer whose waker is ``freed_by``: wake the rest.
        Called by the queue outside its own lock, so two queues never wait on each other."""
        with self._lock:
            others = [w for w in self._wakers if w != freed_by]
        for wake in others:
            wake()

    def load(self) -> tuple[int, ...]:
        """Runs per GPU now, by index."""
        with self._lock:
            return tuple(self._load)

    @property
    def max_runs_per_gpu(self) -> int:
        """The most runs any one GPU has held at once since the pool was made."""
        with self._lock:
            return self._max_seen
