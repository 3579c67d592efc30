"""``costmeter example digits``: train the bundled example model, so anyone can try
``costmeter compress`` without a model of their own."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from costmeter.compress import CompressError, require_torch

#: Training threads: one is fastest for a model this small and leaves other cores alone.
THREADS = 1


def run(args: argparse.Namespace) -> int:
    torch = require_torch("The digits example")
    import numpy as np

    from costmeter.examples import digits

    if args.epochs < 1:
        raise CompressError(f"--epochs must be at least 1, not {args.epochs}.")
    out = Path(args.out) if args.out else None
    eval_out = Path(args.eval_out) if args.eval_out else None
    train_out = Path(args.train_out) if getattr(args, "train_out", None) else None
    for target in (out, eval_out, train_out):
        if target is not None and not target.parent.is_dir():
            raise CompressError(f"Cannot write {target}: folder {target.parent} does not exist.")
    torch.set_num_threads(THREADS)
    data = digits.load_data(args.seed)

    def show(r: digits.EpochResult) -> None:
        print(
            f"epoch {r.epoch:3d}/{r.epochs}  loss {r.loss:.4f}  "
            f"test accuracy {r.test_accuracy:.3f}  ({r.seconds * 1000:.0f} ms)",
            flush=True,
        )

    hidden = 128
    model = digits.train(args.epochs, args.seed, hidden=hidden, data=data, on_epoch=show)
    final = digits.accuracy(model, data.x_test, data.y_test)
    print(f"test accuracy {final:.3f} on {len(data.y_test)} held-out digits")
    try:
        if out is not None:
            digits.save_model(model, out, hidden=hidden, test_accuracy=final)
            print(f"model saved to {out} (weights only: it loads without --trust)")
        if eval_out is not None:
            with eval_out.open("wb") as f:  # np.savez would append .npz to another name
                np.savez(f, x=data.x_test, y=data.y_test)
            print(f"held-out data saved to {eval_out} (arrays x and y)")
        if train_out is not None:
            with train_out.open("wb") as f:
                np.savez(f, x=data.x_train, y=data.y_train)
            print(f"training data saved to {train_out} (arrays x and y)")
    except OSError as exc:
        raise CompressError(f"Could not save: {exc}.") from exc
    if out is not None:
        command = ["costmeter", "compress", str(out), "--method", "int8-dynamic"]
        if eval_out is not None:
            command += ["--eval", str(eval_out)]
        print("\nTry next:\n  " + shlex.join(command), file=sys.stdout)
        if train_out is not None:
            distill = [*command[:4], "distill", "--train", str(train_out), *command[5:]]
            print("  " + shlex.join(distill), file=sys.stdout)
    return 0
