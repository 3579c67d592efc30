"""``costmeter agent``: sample this machine, buffer, and serve it over HTTP(S) until stopped.

The first line on stdout is ``costmeter agent listening on URL`` (with the real port when
``--listen`` asked for port 0); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import ssl
import threading
from pathlib import Path
from types import FrameType
from typing import TypeVar

import platformdirs

from costmeter.cli.common import load_config_from, say
from costmeter.core import ConfigError, StoreError
from costmeter.service.agent.agent import Agent, AgentOptions
from costmeter.service.agent.auth import ListenRefused, check_listen, is_loopback, parse_listen
from costmeter.service.tokens import read_token_file

T = TypeVar("T")
BUFFER_NAME = "agent-buffer.db"
SIMULATED_BUFFER_NAME = "agent-buffer-simulated.db"


def default_buffer_path(simulated: bool) -> Path:
    folder = Path(platformdirs.user_data_dir("costmeter"))
    return folder / (SIMULATED_BUFFER_NAME if simulated else BUFFER_NAME)


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("give both --tls-cert and --tls-key to serve HTTPS, or neither.")
    key_path = Path(key).expanduser()
    with contextlib.suppress(OSError):
        if os.name == "posix" and key_path.stat().st_mode & 0o077:
            say(f"warning: other users can read the TLS key {key_path}; run: chmod 600 {key_path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(Path(cert).expanduser(), Path(key).expanduser())
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(
            f"the certificate {cert} and key {key} could not be loaded ({err}); give PEM files "
            "that belong together."
        ) from err
    return context


def _options(args: argparse.Namespace) -> AgentOptions:
    """Everything checked before anything starts; raises ConfigError/ListenRefused."""
    config = load_config_from(args)
    interval = args.interval if args.interval is not None else config.interval_s
    if not interval > 0:
        raise ConfigError("--interval must be more than 0 seconds.")
    if not args.buffer_hours > 0:
        raise ConfigError("--buffer-hours must be more than 0.")
    name = (args.name or "").strip() or None
    if name is not None and (len(name) > 255 or not name.isprintable()):
        raise ConfigError("--name must be a printable host name of at most 255 characters.")
    attach = tuple(parse_attach(text) for text in args.attach)
    if attach and args.simulate is None:
        raise ConfigError("--attach puts a process on a simulated GPU: it needs --simulate.")
    host, port = parse_listen(args.listen)
    token = read_token_file(Path(args.token_file)) if args.token_file else None
    check_listen(host, has_token=token is not None)
    db = (
        Path(args.db).expanduser().resolve()
        if args.db
        else default_buffer_path(args.simulate is not None)
    )
    return AgentOptions(
        listen=(host, port),
        db_path=db,
        interval_s=float(interval),
        buffer_hours=float(args.buffer_hours),
        name=name,
        token=token,
        tls=_tls_context(args.tls_cert, args.tls_key),
        simulate=args.simulate,
        seed=args.seed,
        attach=attach,
        process_scan_interval_s=config.process_scan_interval_s,
        request_timeout_s=_given(args.request_timeout, config.agent.request_timeout_s),
        max_connections=_given(args.max_connections, config.agent.max_connections),
        max_per_client=_given(args.max_per_client, config.agent.max_per_client),
    )


def parse_attach(text: str) -> tuple[int, int]:
    """``PID:GPU`` -> (pid, GPU index); ConfigError in words otherwise."""
    pid, sep, gpu = text.strip().partition(":")
    digits = sep and pid.isascii() and pid.isdigit() and gpu.isascii() and gpu.isdigit()
    if digits and 1 < int(pid) < 2**31 and int(gpu) < 1024:
        return int(pid), int(gpu)
    raise ConfigError(f"--attach {text!r}: give PID:GPU, e.g. --attach 4242:0.")


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="costmeter agent: %(message)s")
    try:
        options = _options(args)
    except (ConfigError, ListenRefused, ValueError) as err:
        say(str(err))
        return 2
    try:
        agent = Agent(options, on_message=say)
    except StoreError as err:
        say(str(err))
        return 3
    try:
        agent.open()
    except ValueError as err:  # a wrong --simulate SPEC
        say(str(err))
        agent.close()
        return 2
    except OSError as err:
        say(f"the agent cannot listen on {args.listen}: {err.strerror or err}.")
        agent.close()
        return 3
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        agent.start()
        print(f"costmeter agent listening on {agent.url}", flush=True)
        say(
            f"serving {len(agent.devices)} GPU(s) ({agent.gpu_mode}) and the host "
            f"{agent.hostname} every {options.interval_s:g} s; buffer {options.db_path} "
            f"({options.buffer_hours:g} h); "
            + ("a token is required." if options.token else "no token (loopback only).")
        )
        if options.tls is None and not is_loopback(options.listen[0]):
            say(
                "warning: without --tls-cert/--tls-key the token and the samples cross the "
                "network in clear text; use TLS or a tunnel (SSH, WireGuard) on untrusted networks."
            )
        while not stop.wait(0.5):
            pass
    finally:
        agent.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"stopped; {agent.buffer.written} samples buffered in {options.db_path}.")
    return 0
