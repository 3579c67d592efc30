"""Helpers the subcommands share: where the database is, the configuration, printing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costmeter.config import Config, load_config
from costmeter.store import default_db_path
from costmeter.store.database import SIMULATED_DB_NAME


def resolve_db(args: argparse.Namespace, config: Config | None) -> Path:
    """The database file: ``--db`` wins, then the configuration's ``[storage] database``, then the
    default in the user data directory. Simulated data goes to its own file beside that one, so it
    never mixes with real history. ``config`` None (a configuration that failed to load) means the
    defaults."""
    if getattr(args, "db", None):
        return Path(args.db).expanduser().resolve()
    chosen = config.storage.database if config is not None else None
    base = chosen if chosen is not None else default_db_path()
    if getattr(args, "simulate", None) is not None:
        return base.with_name(SIMULATED_DB_NAME)
    return base


def load_config_from(args: argparse.Namespace) -> Config:
    """Raises ConfigError (file, line, key) for a malformed file; ``main`` prints it."""
    path = getattr(args, "config", None)
    return load_config(Path(path).expanduser() if path else None)


def say(message: str) -> None:
    print(f"costmeter: {message}", file=sys.stderr, flush=True)
