"""``costmeter record``: headless recording until a duration ends or Ctrl-C.

Besides this machine it collects from remote hosts: the ``[hosts.NAME]`` tables of the
configuration (enabled ones) and the command line's ``--remote URL`` (agents) and ``--scrape
URL`` (Prometheus exporters). ``--token-file`` pairs with ``--remote`` by order: given once, it
is the token of every ``--remote``; given as often as ``--remote``, the k-th file is the token
of the k-th URL; any other count is an error. It also reads the history of Prometheus-compatible
servers (``[sources.NAME]``, ``--prometheus URL``), then follows them; ``--once`` stops when
they are read up to now.

Exit status: 0 when every sample was saved; 1 when some could not be written (the last line
says how many and why), or with ``--once`` when a source could not be read up to now; 2 for
bad options or a database that cannot be recorded into (a folder, a missing folder, read-only,
a full disk, damaged beyond use); 3 when another recorder already writes the database.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.config import Config, RemoteHostConfig, SourceConfig, check_selector
from costmeter.core import ConfigError, StoreError, StoreLockedError
from costmeter.core.units import format_duration, parse_duration
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.service.remote.http import RemoteError, check_url
from costmeter.service.remote.pollers import split_urls
from costmeter.service.remote.prom_source import source_from_url
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


def sources(args: argparse.Namespace, config: Config) -> tuple[SourceConfig, ...]:
    """The configuration's enabled ``[sources]``, then each ``--prometheus URL`` (named after
    its host:port). ``--token-file`` is the token of ``--prometheus`` when no ``--remote`` is
    given (given once: of every one); ``--match``, ``--backfill`` and ``--step`` apply to each."""
    urls = list(getattr(args, "prometheus", []) or [])
    found = [s for s in config.sources if s.enabled]
    if not urls:
        for option in ("match", "backfill", "step"):
            if getattr(args, option, None) is not None:
                raise ConfigError(f"--{option} is an option of --prometheus, which is not given.")
        return tuple(found)
    token_files = list(getattr(args, "token_file", []) or [])
    tokens: list[Path | None] = [None] * len(urls)
    if token_files and not getattr(args, "remote", None):
        if len(token_files) not in (1, len(urls)):
            raise ConfigError(
                f"{len(token_files)} --token-file options for {len(urls)} --prometheus URLs: "
                "give one for all of them, or one after each --prometheus."
            )
        paths: list[Path | None] = [Path(f).expanduser() for f in token_files]
        tokens = paths * len(urls) if len(paths) == 1 else paths
    match = getattr(args, "match", None)
    if match is not None:
        try:
            match = check_selector(match)
        except ValueError as err:
            raise ConfigError(f"--{err}") from None
    backfill = getattr(args, "backfill", None)
    step = getattr(args, "step", None)
    try:
        for url, token in zip(urls, tokens, strict=True):
            found.append(
                source_from_url(
                    check_url(url),
                    token_file=token,
                    match=match,
                    backfill_s=7 * 86400.0 if backfill is None else backfill,
                    step_s=60.0 if step is None else step,
                )
            )
    except RemoteError as err:
        raise ConfigError(f"--prometheus: {err}") from None
    seen: set[str] = set()
    for s in found:
        if s.url in seen:
            raise ConfigError(f"{s.url} is listed twice (command line or [sources] tables).")
        seen.add(s.url)
    return tuple(found)


def remote_hosts(args: argparse.Namespace, config: Config) -> tuple[RemoteHostConfig, ...]:
    """The configuration's enabled hosts, then the command line's (named as they report)."""
    remotes = list(getattr(args, "remote", []) or [])
    scrapes = list(getattr(args, "scrape", []) or [])
    token_files = list(getattr(args, "token_file", []) or [])
    if not remotes and getattr(args, "prometheus", None):
        token_files = []  # they are --prometheus's (``sources``)
    tokens = pair_tokens(remotes, token_files)
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
        history = sources(args, config)
    except ConfigError as exc:
        say(str(exc))
        return 2
    local = not getattr(args, "no_local", False)
    if not local and not remote and not history:
        say(
            "--no-local needs at least one remote host or source: --remote URL, --scrape URL, "
            "--prometheus URL, [hosts] or [sources]."
        )
        return 2
    once = bool(getattr(args, "once", False))
    if once and not history:
        say("--once stops when the sources have read up to now: give --prometheus or [sources].")
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
            sources=history,
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
    what = _what(monitor, local, len(remote), len(history))
    until = " until the sources are read up to now" if once else until
    say(f"recording {what} every {monitor.interval_s:g} s into {db}{until}.")
    started = time.monotonic()
    caught_up = _stop_when_settled(monitor) if once else None
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
    if caught_up is not None and not caught_up.is_set():
        say("--once: a source could not be read up to now (its line above says why).")
        return 1
    return 1 if lost else 0  # the writer has said how many and why (its on_error line)


def _stop_when_settled(monitor: Monitor) -> threading.Event:
    """Stop the monitor once every source has read up to now or failed (``--once``); the
    event returned is set when they all caught up."""
    caught_up = threading.Event()
    found = monitor.sources
    if found is None:
        monitor.stop()
        return caught_up

    def wait() -> None:
        if found.wait_settled():
            caught_up.set()
        monitor.stop()

    threading.Thread(target=wait, name="costmeter-record-once", daemon=True).start()
    return caught_up


def _what(monitor: Monitor, local: bool, remotes: int, history: int = 0) -> str:
    parts = []
    if local:
        gpus = len(monitor.devices)
        kind = {"simulated": "simulated GPU", "nvml": "GPU", "none": "GPU"}[monitor.gpu_mode]
        parts.append(f"{gpus} {kind}{'s' if gpus != 1 else ''} and the host")
    if remotes:
        parts.append(f"{remotes} remote host{'s' if remotes != 1 else ''}")
    if history:
        parts.append(f"{history} Prometheus source{'s' if history != 1 else ''}")
    return " and ".join(parts)
