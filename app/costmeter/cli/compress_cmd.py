"""``costmeter compress``: compress a model and print what was measured, before and after.

Exit status: 0 when the compressed model is kept (or no verdict without --eval), 1 when it is
rejected (so a script can gate on it), 2 for bad input (printed as a sentence by ``main``) or
when --out could not be written (after the report). Serving cost is priced with the core-hour
price of the effective price table (the defaults with your configuration on top).
"""

from __future__ import annotations

import argparse
import json
import sys

from costmeter.cli.common import load_config_from
from costmeter.compress import CompressError, CompressionReport, ServingPrice, measure_compression
from costmeter.core import CostmeterError

EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2


def run(args: argparse.Namespace) -> int:
    last_stage = [""]

    def progress(stage: str, _share: float) -> None:
        # Once a stage, not once a timed run or an epoch ("Distilling: epoch 3/30" is one).
        key = stage.split(":")[0]
        if key != last_stage[0] and stage != "Done":
            last_stage[0] = key
            print(f"costmeter: {stage}…", file=sys.stderr, flush=True)

    pricing = load_config_from(args).pricing()
    price = ServingPrice(pricing.cpu_core_hour, pricing.currency, pricing.cpu_core_hour_source)
    try:
        report = measure_compression(
            args.model,
            args.method,
            eval_path=args.eval,
            train_path=args.train,
            goal=args.goal,
            price=price,
            trust=args.trust,
            max_drop=args.max_drop,
            batch=args.batch,
            repeat=args.repeat,
            out_path=args.out,
            on_progress=progress if args.format == "table" else None,
        )
    except CostmeterError:
        raise
    except Exception as exc:  # torch failing inside: a sentence, not a traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CompressError(
            f"Compressing {args.model} with {args.method} failed: {type(exc).__name__}: {first}"
        ) from exc
    print(render(report, args.format))
    if report.save_error:  # measured, but --out could not be written
        print(f"costmeter: {report.save_error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_REJECTED if report.verdict == "reject" else 0


def render(report: CompressionReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2)
    return report.render_table()
