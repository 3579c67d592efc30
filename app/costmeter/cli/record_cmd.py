"""``costmeter record``: headless recording until a duration ends or Ctrl-C.

Besides this machine it collects from remote hosts: the ``[hosts.NAME]`` tables of the
configuration (enabled ones) and the command line's ``--remote URL`` (agents) and ``--scrape
URL`` (Prometheus exporters). ``--token-file`` pairs with ``--remote`` by order: given once, it
is the token of every ``--remote``; given as often as ``--remote``, the k-th file is the token
of the k-th URL; any other count is an error.

Exit status: 0 when every sample was saved; 1 when some could not be written (the last line
says how many and why); 2 for bad options or a database that cannot be recorded into (a folder,
a missing folder, read-only, a full disk, damaged beyond use); 3 when another recorder already
writes the database.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.config import Config, RemoteHostConfig
from costmeter.core import ConfigError, StoreError, StoreLockedError
from costmeter.core.units import format_duration, parse_duration
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.service.remote.http import RemoteError, check_url
from costmeter.service.remote.pollers import split_urls
from costmeter.store.errors import path_problem


def pair_tokens(remotes: Sequence[str], token_files: Sequence[str]) -> list[Path | None]:
    """The token file of each ``--remote``, by the rule in the module doc."""
    if not token_files:
        return [None] * len(remotes)
    if not remotes:
        raise ConfigError("--token-file is the token of a --remote URL, and no --remote is given.")
    paths: list[Path | None] = [Path(f).expanduser() for f in token_files]
    if len(paths) == 1:
        return paths * len(remotes)
    if len(paths) == len(remotes):
        return list(paths)
    raise ConfigError(
        f"{len(paths)} --token-file options for {len(remotes)} --remote URLs: give one "
        "--token-file for all of them, or one after each --remote."
    )


def remote_hosts(args: argparse.Namespace, config: Config) -> tuple[RemoteHostConfig, ...]:
    """The configuration's enabled hosts, then the command line's (named as they report)."""
    remotes = list(getattr(args, "remote", []) or [])
    scrapes = list(getattr(args, "scrape", []) or [])
    tokens = pair_tokens(remotes, list(getattr(args, "token_file", []) or []))
    hosts = [h for h in config.hosts if h.enabled]
    try:
        for url, token in zip(remotes, tokens, strict=True):
            hosts.append(RemoteHostConfig(name="", url=check_url(url), token_file=token))
        for url in scrapes:
            urls = [check_url(u) for u in split_urls(url)]
            hosts.append(RemoteHostConfig(name="", url=",".join(urls), kind="prometheus"))
    except RemoteError as err:
        raise ConfigError(f"--remote/--scrape: {err}") from None
    seen: set[str] = set()
    for h in hosts:
        if h.url in seen:
            raise ConfigError(f"{h.url} is listed twice (command line or [hosts] tables).")
        seen.add(h.url)
    return tuple(hosts)


def run(args: argparse.Namespace) -> int:
    config = load_config_from(args)
    duration = parse_duration(args.duration) if args.duration else None
    if args.interval is not None and args.interval <= 0:
        say("--interval must be more than 0 seconds.")
        return 2
    try:
        remote = remote_hosts(args, config)
    except ConfigError as exc:
        say(str(exc))
        return 2
    local = not getattr(args, "no_local", False)
    if not local and not remote:
        say("--no-local needs at least one remote host: --remote URL, --scrape URL or [hosts].")
        return 2
    db = resolve_db(args, config)
    # A --db in a folder that does not exist is a typo until shown otherwise: it is not made
    # (the default data folder, or the configured one, is).
    found = path_problem(db, create=True, make_parent=not getattr(args, "db", None))
    if found is not None:
        say(str(found))
        return 2
    monitor = Monitor(
        MonitorOptions(
            db_path=db,
            config=config,
            interval_s=args.interval,
            simulate=args.simulate,
            seed=args.seed,
            remote=remote,
            local=local,
        ),
        on_message=say,
    )
    try:
        monitor.open()
    except StoreLockedError as exc:
        say(str(exc))
        monitor.close()
        return 3
    except (StoreError, ValueError) as exc:
        say(str(exc))
        monitor.close()
        return 2
    writer = monitor.writer

    def _stop(signum: int, _frame: FrameType | None) -> None:
        monitor.stop()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    until = f" for {format_duration(duration)}" if duration else " until Ctrl-C"
    what = _what(monitor, local, len(remote))
    say(f"recording {what} every {monitor.interval_s:g} s into {db}{until}.")
    started = time.monotonic()
    try:
        end = monitor.clock.now() + duration if duration else None
        monitor.run_until(end)
        statuses = monitor.remote_statuses()
    finally:
        monitor.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for s in statuses:
        say(f"{s.name}: {s.state}" + (f" ({s.error})" if s.error else ""))
    stats = writer.stats if writer is not None else None
    saved = stats.ticks_written if stats is not None else monitor.ticks
    lost = stats.lost if stats is not None else 0
    say(
        f"stopped after {format_duration(time.monotonic() - started)}: {saved} "
        f"sample{'s' if saved != 1 else ''} saved"
        + (f", {lost} lost" if lost else "")
        + f". See them with: costmeter report --db {db}"
    )
    return 1 if lost else 0  # the writer has said how many and why (its on_error line)


def _what(monitor: Monitor, local: bool, remotes: int) -> str:
    parts = []
    if local:
        gpus = len(monitor.devices)
        kind = {"simulated": "simulated GPU", "nvml": "GPU", "none": "GPU"}[monitor.gpu_mode]
        parts.append(f"{gpus} {kind}{'s' if gpus != 1 else ''} and the host")
    if remotes:
        parts.append(f"{remotes} remote host{'s' if remotes != 1 else ''}")
    return " and ".join(parts)
