"""Each compression method on the digits example model: size, CPU latency, accuracy, agreement,
serving cost per million inferences, and the verdict for each goal (cost, latency, size).

Trains the example (the same model `costmeter example digits` saves), then runs
``measure_compression`` once per method, as `costmeter compress` does (distillation trains a
student on the training split, `--train`), and prints one Markdown table. Latency: median
(p10-p90) of --repeat timed runs after 5 warm-up runs, 1 torch thread. Cost: latency per row x
the price table's core-hour price x 1 core. The last line compares the default distilled
student with the teacher measured in the same run.

    .venv/bin/python bench/bench_compress.py [--repeat 100] [--batch 64] [--epochs 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from costmeter.compress import GOALS, CompressionReport, ServingPrice, measure_compression
from costmeter.compress.measure import Latency
from costmeter.compress.report import decide, format_bytes, format_seconds
from costmeter.cost.pricing import load_default_pricing
from costmeter.examples import digits

METHODS = (
    "int8-dynamic",
    "int8-dynamic:torch.ao",
    "int8-weight",
    "fp16",
    "bf16",
    "prune:0.5",
    "prune:0.9",
    "distill",
    "distill:hidden=16",
)


def lat(value: Latency) -> str:
    if value.median_s is None or value.p10_s is None or value.p90_s is None:
        return "does not run"
    return (
        f"{format_seconds(value.median_s)} "
        f"({format_seconds(value.p10_s)}–{format_seconds(value.p90_s)})"
    )


def verdicts(report: CompressionReport) -> str:
    """The verdict for each goal on the same measured figures: "keep/reject/keep"."""
    return "/".join(decide(dataclasses.replace(report, goal=goal))[0] for goal in GOALS)


def cost_pair(report: CompressionReport, at_n: bool) -> str:
    before = report.cost_per_million(report.before, at_n)
    after = report.cost_per_million(report.after, at_n)
    return f"{report.money(before)} → {report.money(after)}"


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
    pricing = load_default_pricing()
    price = ServingPrice(pricing.cpu_core_hour, pricing.currency, pricing.cpu_core_hour_source)
    print(f"price: {pricing.cpu_core_hour} {pricing.currency} per core-hour ({price.source})\n")
    head = (
        "| method | size before → after | batch 1 before → after | "
        f"batch {args.batch} before → after | cost per 1M, batch 1 | cost per 1M, batch "
        f"{args.batch} | accuracy before → after | agreement | verdict {'/'.join(GOALS)} |"
    )
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        model_path, eval_path = Path(tmp) / "digits.pt", Path(tmp) / "digits.npz"
        train_path = Path(tmp) / "train.npz"
        digits.save_model(model, model_path, hidden=128, test_accuracy=accuracy)
        np.savez(eval_path, x=data.x_test, y=data.y_test)
        np.savez(train_path, x=data.x_train, y=data.y_train)
        student: CompressionReport | None = None
        for method in args.methods.split(","):
            r = measure_compression(
                model_path, method, eval_path=eval_path, repeat=args.repeat, batch=args.batch,
                price=price, train_path=train_path if method.startswith("distill") else None,
            )  # fmt: skip
            if method == "distill":
                student = r
            b, a = r.before, r.after
            sparsity = f", sparsity {r.sparsity:.0%}" if r.sparsity is not None else ""
            print(
                f"| {r.method} | {format_bytes(b.size_bytes)} → "
                f"{format_bytes(a.size_bytes)} | {lat(b.latency_1)} → {lat(a.latency_1)} | "
                f"{lat(b.latency_n)} → {lat(a.latency_n)} | {cost_pair(r, False)} | "
                f"{cost_pair(r, True)} | {b.accuracy:.1%} → {a.accuracy:.1%}{sparsity} | "
                f"{r.agreement:.1%} | {verdicts(r)} |",
                flush=True,
            )
    if student is not None:
        b, a = student.before, student.after
        cost_b = student.cost_per_million(b, at_batch_n=True) or 0.0
        cost_a = student.cost_per_million(a, at_batch_n=True) or 0.0
        print(
            f"\ndistill vs teacher (same run): {b.size_bytes / a.size_bytes:.2f}x smaller, "
            f"accuracy {-(student.accuracy_drop_points or 0.0):+.1f} points, serving cost at "
            f"batch {args.batch} {cost_a / cost_b:.2f}x the teacher's"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
