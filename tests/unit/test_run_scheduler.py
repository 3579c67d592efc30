"""GPU placement: limits, packing, and no over-allocation however many threads ask at once."""

from __future__ import annotations

import random
import threading

import pytest

from costmeter.runs.scheduler import GpuPool, PlacementError, check_request, choose_gpus


def test_choose_gpus_takes_free_ones_least_loaded_first() -> None:
    assert choose_gpus([0, 0, 0], 2, per_gpu=1) == (0, 1)
    assert choose_gpus([1, 0, 0], 2, per_gpu=1) == (1, 2)
    assert choose_gpus([1, 1, 0], 2, per_gpu=1) is None
    # Packing: spread out first, then double up.
    assert choose_gpus([1, 0], 1, per_gpu=2) == (1,)
    assert choose_gpus([1, 1], 2, per_gpu=2) == (0, 1)
    assert choose_gpus([2, 1], 1, per_gpu=2) == (1,)
    assert choose_gpus([2, 2], 1, per_gpu=2) is None
    assert choose_gpus([5], 0, per_gpu=1) == ()


def test_pool_never_exceeds_per_gpu_and_releases() -> None:
    pool = GpuPool(2, per_gpu=1)
    a = pool.try_acquire(1)
    b = pool.try_acquire(1)
    assert {a, b} == {(0,), (1,)}
    assert pool.try_acquire(1) is None
    assert a is not None
    pool.release(a)
    assert pool.try_acquire(1) == a
    assert pool.max_runs_per_gpu == 1
    with pytest.raises(ValueError):
        pool.release((1, 1))  # GPU 1 holds one run, not two


def test_packing_allows_m_runs_per_gpu() -> None:
    pool = GpuPool(2, per_gpu=2)
    got = [pool.try_acquire(1) for _ in range(5)]
    assert got[:4] == [(0,), (1,), (0,), (1,)]
    assert got[4] is None
    assert pool.load() == (2, 2)
    assert pool.max_runs_per_gpu == 2


@pytest.mark.parametrize(
    ("gpus", "count", "match"),
    [
        (3, 2, "only 2"),
        (1, 0, "no GPUs"),
        (-1, 4, "cannot ask for -1"),
    ],
)
def test_impossible_requests_are_clear_errors(gpus: int, count: int, match: str) -> None:
    with pytest.raises(PlacementError, match=match):
        check_request(gpus, count)
    with pytest.raises(PlacementError, match=match):
        GpuPool(count).try_acquire(gpus)


def test_zero_runs_per_gpu_is_refused() -> None:
    with pytest.raises(PlacementError, match="at least 1"):
        GpuPool(2, per_gpu=0)


@pytest.mark.parametrize("per_gpu", [1, 2, 3])
def test_no_over_allocation_under_concurrency(per_gpu: int) -> None:
    pool = GpuPool(4, per_gpu=per_gpu)
    held: list[int] = [0] * 4
    lock = threading.Lock()
    worst = [0]
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            want = rng.choice((1, 1, 2, 3))
            got = pool.try_acquire(want)
            if got is None:
                continue
            if len(got) != want or len(set(got)) != want:
                errors.append(f"asked {want}, got {got}")
            with lock:
                for i in got:
                    held[i] += 1
                    worst[0] = max(worst[0], held[i])
            with lock:
                for i in got:
                    held[i] -= 1
            pool.release(got)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert worst[0] <= per_gpu
    assert pool.max_runs_per_gpu <= per_gpu
    assert pool.load() == (0, 0, 0, 0)
