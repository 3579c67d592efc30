"""Helpers the subcommands share: where the database is, the configuration, printing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costmeter.config import Config, load_config
from costmeter.store import default_db_path

SIMULATED_DB_NAME = "costmeter-simulated.db"


def resolve_db(args: argparse.Namespace) -> Path:
    """``--db`` wins; otherwise simulated data goes to its own file so it never mixes with real
    history."""
    if getattr(args, "db", None):
        return Path(args.db).expanduser().resolve()
    default = default_db_path()
    if getattr(args, "simulate", None) is not None:
        return default.with_name(SIMULATED_DB_NAME)
    return default


def load_config_from(args: argparse.Namespace) -> Config:
    """Raises ConfigError (file, line, key) for a malformed file; ``main`` prints it."""
    path = getattr(args, "config", None)
    return load_config(Path(path).expanduser() if path else None)


def say(message: str) -> None:
    print(f"costmeter: {message}", file=sys.stderr, flush=True)
