"""``costmeter plugins``: every installed run backend, whether it loads, and what it can do.

A backend that fails to load is a row with its error, not a failed command: the exit status is
0 as long as the list could be made.
"""

from __future__ import annotations

import argparse
import json

from costmeter.cli.common import load_config_from, say
from costmeter.cli.table import render
from costmeter.config import Config
from costmeter.core.errors import ConfigError
from costmeter.runs.registry import PluginStatus, Registry
from costmeter.service.backends import backend_config

HEADERS = ("name", "version", "API version", "status", "capabilities", "error")


def rows(statuses: list[PluginStatus]) -> list[list[str]]:
    return [
        [
            s.name,
            s.info.version or "-",
            s.api_version or "-",
            s.status,
            ",".join(sorted(str(c) for c in s.capabilities)) or "-",
            s.error,
        ]
        for s in statuses
    ]


def run(args: argparse.Namespace, registry: Registry | None = None) -> int:
    try:
        config: Config | None = load_config_from(args)
    except ConfigError as exc:  # list the backends anyway, with no options
        say(f"{exc} The backends are probed without their options.")
        config = None
    statuses = (registry or Registry()).probe_all(
        make_config=lambda name, state: backend_config(name, config=config, state_dir=state)
    )
    if args.format == "json":
        print(json.dumps([s.as_dict() for s in statuses], indent=2))
        return 0
    if not statuses:
        print("No run backends are installed (not even 'local': reinstall costmeter).")
        return 0
    print(render(HEADERS, rows(statuses), numeric=set()))
    failed = sum(1 for s in statuses if s.status != "ok")
    if failed:
        print(f"\n{failed} backend(s) failed to load; the others work as usual.")
    return 0
