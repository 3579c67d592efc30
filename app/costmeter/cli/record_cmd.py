"""``costmeter record``: headless recording until a duration ends or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import time
from types import FrameType

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.core import StoreError
from costmeter.core.units import format_duration, parse_duration
from costmeter.service.monitor import Monitor, MonitorOptions


def run(args: argparse.Namespace) -> int:
    config = load_config_from(args)
    duration = parse_duration(args.duration) if args.duration else None
    if args.interval is not None and args.interval <= 0:
        say("--interval must be more than 0 seconds.")
        return 2
    db = resolve_db(args, config)
    monitor = Monitor(
        MonitorOptions(
            db_path=db,
            config=config,
            interval_s=args.interval,
            simulate=args.simulate,
            seed=args.seed,
        ),
        on_message=say,
    )
    try:
        monitor.open()
    except (StoreError, ValueError) as exc:
        say(str(exc))
        monitor.close()
        return 3

    def _stop(signum: int, _frame: FrameType | None) -> None:
        monitor.stop()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    gpus = len(monitor.devices)
    kind = {"simulated": "simulated GPU", "nvml": "GPU", "none": "GPU"}[monitor.gpu_mode]
    until = f" for {format_duration(duration)}" if duration else " until Ctrl-C"
    say(
        f"recording {gpus} {kind}{'s' if gpus != 1 else ''} and the host every "
        f"{monitor.interval_s:g} s into {db}{until}."
    )
    started = time.monotonic()
    try:
        end = monitor.clock.now() + duration if duration else None
        monitor.run_until(end)
    finally:
        monitor.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(
        f"stopped after {format_duration(time.monotonic() - started)}: {monitor.ticks} "
        f"sample{'s' if monitor.ticks != 1 else ''} saved. "
        f"See them with: costmeter report --db {db}"
    )
    return 0
