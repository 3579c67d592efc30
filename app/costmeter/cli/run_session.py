"""What ``costmeter run`` and ``costmeter sweep`` share: options, the monitor that samples while
runs go, output streaming, Ctrl-C and the wait. Backend, run service and GPU placement come from
a ``RunSession`` (``costmeter.service.run_session``), as in the desktop app.

The monitor: unless another recorder (``costmeter record``, the desktop app) already writes the
database, a monitor runs in a thread of this process, samples the runs' processes and, with
``--simulate``, puts them on the simulated GPUs. When another recorder holds the file, no second
writer starts: the runs' GPU use is attributed from that recorder's samples (it samples every
process on a GPU anyway) and their CPU time is measured here. ``--simulate`` needs a monitor of
its own, so it is refused then.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.config import Config
from costmeter.core import CostmeterError, SamplerUnavailable, StoreLockedError, units
from costmeter.core.bounds import BUDGET
from costmeter.core.tags import merge_tags
from costmeter.core.units import format_duration, parse_duration
from costmeter.cost.run_cost import format_cost
from costmeter.plugin_api import Backend, RunSpec, RunState
from costmeter.runs.data_parallel import parse_command
from costmeter.runs.events import EventKind, RunEvent
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.service.run_session import RunSession, SessionOptions
from costmeter.service.run_support import record_refused
from costmeter.service.runs import RunService
from costmeter.store.lock import lock_holder
from costmeter.store.runs import RunStore

#: A running run's progress (ETA, forecast) is printed at most this often.
PROGRESS_EVERY_S = 10.0


class UsageError(CostmeterError):
    """The command line asks for something impossible (exit code 2)."""


def parse_money(text: str) -> float:
    """A run's budget (above 0, at most ``BUDGET.high``); UsageError naming the text otherwise."""
    try:
        return units.parse_money(text, BUDGET, "--budget")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def command_of(args: argparse.Namespace) -> list[str]:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("Give the command to run after --, e.g. costmeter run -- python train.py")
    return argv


def spec_from(args: argparse.Namespace, argv: list[str], name: str | None = None) -> RunSpec:
    """The RunSpec the options describe (``--gpus`` below 1 is checked by ``gpus_problem``)."""
    check_profile(args)
    gpus = args.gpus
    nproc = getattr(args, "nproc_per_node", None)
    if isinstance(nproc, str):
        raise UsageError(
            f"--nproc-per-node {nproc} takes a grid's value: it works in costmeter sweep with "
            f"--grid {nproc.strip('{}')}=1,2 (costmeter run needs a number)."
        )
    try:
        if nproc is not None and nproc > 1:
            parse_command(argv)  # torchrun starts only a script or a module once per rank
        return RunSpec(
            argv=tuple(argv),
            gpus=gpus if gpus is not None and gpus > 0 else 0,
            name=name or args.name,
            tags=merge_tags(getattr(args, "tag", None) or []),
            time_limit_s=parse_duration(args.time_limit, label="--time-limit")
            if args.time_limit
            else None,
            budget=parse_money(args.budget) if args.budget else None,
            cwd=str(Path.cwd()),
            nproc_per_node=int(getattr(args, "nproc_per_node", None) or 1),
            output_dirs=tuple(
                str(Path(d).expanduser().resolve()) for d in getattr(args, "output_dir", None) or ()
            ),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_profile(args: argparse.Namespace) -> None:
    """``--profile`` names a workload profile, and only means something with ``--simulate``."""
    if args.profile is None:
        return
    from costmeter.sampling.simulated.profiles import PROFILES, get_profile

    try:
        get_profile(args.profile)
    except KeyError:
        raise UsageError(
            f"Unknown profile '{args.profile}'. Profiles: {', '.join(PROFILES)}."
        ) from None
    if args.simulate is None:
        raise UsageError("--profile sets what a run does on simulated GPUs: add --simulate.")


_OPTION_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def backend_overrides(args: argparse.Namespace) -> dict[str, object]:
    """``--backend-option KEY=VALUE`` (repeatable): VALUE as TOML when it reads as a value
    (``2``, ``true``, ``"x"``, ``[1, 2]``), else as the text it is (``127.0.0.1:6379``)."""
    found: dict[str, object] = {}
    for text in getattr(args, "backend_option", None) or []:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not _OPTION_KEY.match(key):
            raise UsageError(
                f"--backend-option '{text}' is not KEY=VALUE; write for example "
                "--backend-option address=127.0.0.1:6379"
            )
        value: object = raw.strip()
        with contextlib.suppress(tomllib.TOMLDecodeError):
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        found[key] = value
    return found


def gpus_problem(args: argparse.Namespace) -> str | None:
    if args.gpus is not None and args.gpus < 1:
        return (
            f"--gpus {args.gpus} is not a number of GPUs to place the run on: ask for 1 or "
            "more, or leave out --gpus (the run then gets no GPUs of its own)."
        )
    return None


@dataclass
class Session:
    config: Config
    db: Path
    backend: Backend
    service: RunService
    runs: RunSession
    monitor: Monitor | None = None
    thread: threading.Thread | None = None
    interrupted: bool = False
    _printer: OutputPrinter | None = field(default=None, repr=False)

    def close(self) -> None:
        self.runs.close()
        if self.monitor is not None:
            self.monitor.stop()
            if self.thread is not None:
                self.thread.join(timeout=10)
            self.monitor.close()
        for problem in self.runs.close_backends():
            say(problem)


def refuse(db: Path, spec: RunSpec, backend: str, message: str, sweep: str | None = None) -> None:
    """Say why and keep a failed row for the run."""
    say(message)
    try:
        with RunStore.open(db) as store:
            record_refused(store, spec, backend, message, sweep=sweep)
    except CostmeterError as exc:
        say(str(exc))


def _count_gpus(simulate: str | None) -> int:
    from costmeter.sampling.nvml import NvmlSampler

    if simulate is not None:
        return 0
    sampler = NvmlSampler()
    try:
        return len(sampler.open())
    except SamplerUnavailable:
        return 0
    finally:
        sampler.close()


def open_session(
    args: argparse.Namespace,
    *,
    first_spec: RunSpec,
    max_parallel: int = 1,
    per_gpu: int = 1,
    stop_on_failure: bool = False,
    prefix_output: bool = False,
) -> Session:
    """Backend, monitor and run service for these options; raises CostmeterError with the
    reason (after recording ``first_spec`` as refused where the database can be written)."""
    config = load_config_from(args)
    db = resolve_db(args, config)
    name = args.backend or "local"
    printer = OutputPrinter(prefix_output)
    opened: list[Monitor | None] = [None]  # the monitor opens once the backend has loaded
    runs = RunSession(
        db,
        config=lambda: config,
        monitor=lambda: opened[0],
        gpu_count=lambda: _count_gpus(args.simulate),
        listener=printer,
        options=SessionOptions(
            simulated_runs_only=True,
            stream_logs=True,
            backend_overrides=backend_overrides(args),
            on_message=say,
        ),
    )
    try:
        backend = runs.backend(name)
    except CostmeterError as exc:
        refuse(db, first_spec, name, _sentence(str(exc)))
        raise _Reported() from None
    monitor = opened[0] = _open_monitor(args, config, db)
    service = runs.service(
        name,
        args.profile,
        config.pricing(),
        max_parallel=max_parallel,
        per_gpu=per_gpu,
        stop_on_failure=stop_on_failure,
    )
    thread = None
    if monitor is not None:  # sampling starts once the service has prepared simulated GPUs
        thread = threading.Thread(
            target=monitor.run_until, args=(None,), name="costmeter-monitor", daemon=True
        )
        thread.start()
    session = Session(config, db, backend, service, runs, monitor, thread)
    session._printer = printer
    return session


def _open_monitor(args: argparse.Namespace, config: Config, db: Path) -> Monitor | None:
    holder = lock_holder(db)
    if holder is None:
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
        except StoreLockedError:
            monitor.close()
            holder = lock_holder(db) or "another recorder"
        else:
            return monitor
    if args.simulate is not None:
        raise UsageError(
            f"{holder} is already recording {db}, and --simulate needs a recording of its own. "
            "Pass --db to use another file, or stop that recorder."
        )
    say(
        f"{holder} is already recording {db}: the runs' GPU use is attributed from its "
        "samples, and their CPU time is measured here."
    )
    return None


class _Reported(CostmeterError):
    """Raised after the problem has been said (and recorded); exit code 2, no more output."""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


class OutputPrinter:
    """Streams runs' output to stdout; with ``prefix`` each line starts with ``[run name]``."""

    def __init__(self, prefix: bool) -> None:
        self.prefix = prefix
        self._partial: dict[int, str] = {}
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        if event.kind == EventKind.OUTPUT:
            self._write(event.run.key, event.run.name, event.text)
        elif event.kind == EventKind.FINISHED and self.prefix:
            rest = self._partial.pop(event.run.key, "")
            if rest:
                self._write(event.run.key, event.run.name, rest + "\n")

    def _write(self, key: int, name: str, text: str) -> None:
        with self._lock:
            if not self.prefix:
                sys.stdout.write(text)
            else:
                text = self._partial.pop(key, "") + text
                lines = text.split("\n")
                self._partial[key] = lines.pop()
                sys.stdout.write("".join(f"[{name}] {line}\n" for line in lines))
            sys.stdout.flush()


def wait_with_signals(session: Session) -> None:
    """Wait for every run; Ctrl-C (or SIGTERM) cancels them cleanly. Prints progress now and
    then for runs that report it."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        if not session.interrupted:
            say("stopping: cancelling the runs (Ctrl-C again does not hurry it).")
        session.interrupted = True
        session.service.cancel_all("Cancelled with Ctrl-C.")

    handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    try:
        while not session.service.wait(timeout=0.2):
            if time.monotonic() >= next_progress:
                next_progress = time.monotonic() + PROGRESS_EVERY_S
                _print_progress(session)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _print_progress(session: Session) -> None:
    currency = session.config.pricing().currency
    for info in session.service.queue.runs():
        if info.state != RunState.RUNNING:
            continue
        live = session.service.live(info.key)
        if live is None or live.fraction is None:
            continue
        text = f"[{info.name}] {live.fraction:.0%} done"
        if live.eta_s is not None:
            text += f", about {format_duration(live.eta_s)} left"
        text += f"; cost so far {format_cost(live.cost.cost, currency)}"
        if live.forecast is not None:
            text += f", forecast {format_cost(live.forecast, currency)}"
        say(text + ".")
