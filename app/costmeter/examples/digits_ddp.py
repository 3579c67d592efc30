"""The digits example trained data-parallel: DistributedDataParallel over N processes.

Started by PyTorch's launcher, which Costmeter uses for ``--nproc-per-node N``::

    costmeter run --nproc-per-node 2 -- python -m costmeter.examples.digits_ddp --epochs 5

Each process (rank) trains on its share of the training set (``DistributedSampler``) and the
gradients are averaged across ranks every step: over ``gloo`` on the CPU, or ``nccl`` with one
GPU per rank (``cuda:LOCAL_RANK``, among the GPUs Costmeter placed the run on). Rank 0 reports
progress to Costmeter and prints loss and test accuracy each epoch. Started without the launcher
(no ``WORLD_SIZE``), it trains in one process without DDP: the baseline N = 1.

Model and data are those of :mod:`costmeter.examples.digits`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from costmeter import progress
from costmeter.examples.digits import build_model, load_data

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job (torchrun's environment, or alone)."""

    rank: int
    local_rank: int
    world: int

    @classmethod
    def from_env(cls) -> Ranks:
        return cls(
            int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")),
        )

    @property
    def distributed(self) -> bool:
        return "WORLD_SIZE" in os.environ


def pick_device(ranks: Ranks) -> tuple[str, str]:
    """(device, process-group backend): this rank's GPU with nccl, else the CPU with gloo."""
    import torch

    if torch.cuda.is_available() and ranks.local_rank < torch.cuda.device_count():
        return f"cuda:{ranks.local_rank}", "nccl"
    return "cpu", "gloo"


def train(
    epochs: int, *, seed: int = 0, hidden: int = 128, lr: float = 3e-3, batch_size: int = 64
) -> float:
    """Train for ``epochs`` epochs on every rank; the test accuracy at the end (rank 0's)."""
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}.")
    ranks = Ranks.from_env()
    device_name, backend = pick_device(ranks)
    device = torch.device(device_name)
    if ranks.distributed:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    over = f" ({backend})" if ranks.distributed else ""
    print(
        f"rank {ranks.rank} of {ranks.world} on {device_name}{over}, pid {os.getpid()}", flush=True
    )
    try:
        torch.manual_seed(seed)  # the same initial weights on every rank
        data = load_data(seed)
        dataset = TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
        sampler: DistributedSampler[tuple[torch.Tensor, ...]] | None = None
        if ranks.distributed:
            sampler = DistributedSampler(
                dataset, num_replicas=ranks.world, rank=ranks.rank, seed=seed
            )
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, shuffle=sampler is None
        )
        model: torch.nn.Module = build_model(hidden).to(device)
        if ranks.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        test_accuracy = 0.0
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            if sampler is not None:
                sampler.set_epoch(epoch)
            model.train()
            total, seen = 0.0, 0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                optimiser.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()  # DDP averages the gradients across ranks here
                optimiser.step()
                total += loss.item() * len(y)
                seen += len(y)
            if ranks.rank == 0:
                plain = cast("torch.nn.Module", model.module) if ranks.distributed else model
                test_accuracy = _accuracy(plain, data.x_test, data.y_test, device)
                loss_avg = total / max(seen, 1)
                progress.report(epoch, epochs, loss=loss_avg, accuracy=test_accuracy)
                print(
                    f"epoch {epoch}/{epochs}: loss {loss_avg:.4f}, test accuracy "
                    f"{test_accuracy:.3f} ({time.perf_counter() - t0:.2f} s, {ranks.world} "
                    f"process{'es' if ranks.world != 1 else ''})",
                    flush=True,
                )
        progress.flush()
        return test_accuracy
    finally:
        if ranks.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Share of ``x`` classified as ``y``, on the rank's own device (the model stays there)."""
    import torch

    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x).to(device)).argmax(dim=1).cpu()
    return float((predicted == torch.from_numpy(y)).float().mean())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m costmeter.examples.digits_ddp",
        description="Train the digits MLP data-parallel (start it with torchrun, or with "
        "costmeter run --nproc-per-node N).",
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=128, help="units per hidden layer")
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate (Adam)")
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.hidden < 1 or args.batch_size < 1:
        parser.error("--epochs, --hidden and --batch-size must be at least 1.")
    try:
        train(
            args.epochs, seed=args.seed, hidden=args.hidden, lr=args.lr, batch_size=args.batch_size
        )
    except ImportError as exc:
        print(f"digits_ddp: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
