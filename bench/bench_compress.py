"""Each compression method on the digits example model: size, CPU latency, accuracy, agreement.

Trains the example (the same model `costmeter example digits` saves), then runs
``measure_compression`` once per method, as `costmeter compress` does, and prints one Markdown
table. Latency: median (p10-p90) of --repeat timed runs after 5 warm-up runs, 1 torch thread.

    .venv/bin/python bench/bench_compress.py [--repeat 100] [--batch 64] [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from costmeter.compress import measure_compression
from costmeter.compress.measure import Latency
from costmeter.compress.report import format_bytes, format_seconds
from costmeter.examples import digits

METHODS = (
    "int8-dynamic",
    "int8-dynamic:torch.ao",
    "int8-weight",
    "fp16",
    "bf16",
    "prune:0.5",
    "prune:0.9",
)


def lat(value: Latency) -> str:
    if value.median_s is None or value.p10_s is None or value.p90_s is None:
        return "does not run"
    return (
        f"{format_seconds(value.median_s)} "
        f"({format_seconds(value.p10_s)}–{format_seconds(value.p90_s)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    data = digits.load_data(0)
    model = digits.train(args.epochs, 0, data=data)
    accuracy = digits.accuracy(model, data.x_test, data.y_test)
    print(
        f"digits MLP 64-128-128-10, {args.epochs} epochs, test accuracy {accuracy:.3f}; "
        f"torch {torch.__version__}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; repeat {args.repeat}, batch {args.batch}\n"
    )
    head = (
        "| method | engine | size before → after | batch 1 before → after | "
        f"batch {args.batch} before → after | accuracy before → after | agreement | verdict |"
    )
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        model_path, eval_path = Path(tmp) / "digits.pt", Path(tmp) / "digits.npz"
        digits.save_model(model, model_path, hidden=128, test_accuracy=accuracy)
        np.savez(eval_path, x=data.x_test, y=data.y_test)
        for method in args.methods.split(","):
            r = measure_compression(
                model_path, method, eval_path=eval_path, repeat=args.repeat, batch=args.batch
            )
            b, a = r.before, r.after
            sparsity = f", sparsity {r.sparsity:.0%}" if r.sparsity is not None else ""
            print(
                f"| {r.method} | {r.engine} | {format_bytes(b.size_bytes)} → "
                f"{format_bytes(a.size_bytes)} | {lat(b.latency_1)} → {lat(a.latency_1)} | "
                f"{lat(b.latency_n)} → {lat(a.latency_n)} | {b.accuracy:.1%} → "
                f"{a.accuracy:.1%}{sparsity} | {r.agreement:.1%} | {r.verdict} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
