"""The ``costmeter`` command: argument parsing and dispatch.

This module imports only the standard library so that ``costmeter --version`` and ``--help`` answer
at once; each subcommand's module (and with it psutil, sqlite-utils, pynvml) is imported on use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from costmeter import __version__

SIM_HELP = (
    "use simulated GPUs instead of the NVIDIA driver: a count (4) or a comma list of "
    "MODEL:PROFILE (a100:idle,h100:train); see `costmeter simulate --help` for models and profiles"
)


def _common(p: argparse.ArgumentParser, *, simulate: bool = True) -> None:
    p.add_argument("--db", metavar="PATH", help="database file (default: the user data dir)")
    p.add_argument("--config", metavar="PATH", help="config file (default: the user config dir)")
    if simulate:
        p.add_argument("--simulate", metavar="SPEC", help=SIM_HELP)
        p.add_argument("--seed", type=int, default=0, help="seed for simulated GPUs (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="costmeter",
        description="What your GPUs and CPUs are doing, what it costs, and what to change.",
    )
    parser.add_argument("--version", action="version", version=f"costmeter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    rec = sub.add_parser("record", help="sample GPUs and the host into the database (headless)")
    rec.add_argument("--interval", type=float, metavar="S", help="seconds between samples")
    rec.add_argument("--duration", metavar="S", help="stop after this long (90, 15m, 2h)")
    _common(rec)

    sim = sub.add_parser(
        "simulate",
        help="write H hours of simulated history that end now, in seconds",
        description="Write the H hours of history that end now, sampled from simulated GPUs "
        "through the same sampler -> store path on a simulated clock.",
    )
    sim.add_argument("--hours", type=float, required=True, metavar="H")
    sim.add_argument("--interval", type=float, metavar="S", help="seconds between samples")
    _common(sim)

    rep = sub.add_parser("report", help="energy, cost and idle cost per device and host")
    rep.add_argument("--since", default="24h", metavar="DURATION", help="e.g. 1h, 24h, 7d")
    rep.add_argument("--format", choices=("table", "json", "csv"), default="table")
    rep.add_argument(
        "--simulate",
        nargs="?",
        const="",
        metavar="SPEC",
        help="read the simulation database (the default for commands run with --simulate)",
    )
    _common(rep, simulate=False)

    gui = sub.add_parser("gui", help="open the desktop app (the default without a command)")
    gui.add_argument(
        "--screenshot",
        metavar="PATH",
        help="save a PNG of the window once it shows live data, then quit",
    )
    gui.add_argument(
        "--quit-after", type=float, metavar="S", help="close the window after S seconds"
    )
    gui.add_argument(
        "--page",
        choices=("overview", "devices", "processes", "history", "settings"),
        help="the page to open on",
    )
    gui.add_argument("--interval", type=float, metavar="S", help="seconds between samples")
    gui.add_argument("--theme", choices=("light", "dark"), help="override the saved theme")
    gui.add_argument(
        "--settings", metavar="PATH", help="window settings file (default: the platform's)"
    )
    _common(gui)

    doc = sub.add_parser("doctor", help="check the NVIDIA driver, permissions and the database")
    _common(doc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `costmeter` alone opens the desktop app
        args = parser.parse_args(["gui"])
    module = importlib.import_module(f"costmeter.cli.{args.command}_cmd")
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: a sentence, not a traceback
        from costmeter.core import CostmeterError

        if isinstance(exc, CostmeterError):
            print(f"costmeter: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
