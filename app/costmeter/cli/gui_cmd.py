"""``costmeter gui``: open the desktop app (also what ``costmeter`` alone does)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from costmeter.cli.common import load_config_from, resolve_db
from costmeter.config import Config, default_config_path
from costmeter.core import ConfigError


def run(args: argparse.Namespace) -> int:
    # Imported by name so that the CLI layer holds no static import of Qt (see the layer rules).
    app = importlib.import_module("costmeter.gui.app")
    config: Config | None
    try:
        config = load_config_from(args)
    except ConfigError:
        config = None  # the window opens on the defaults and shows the mistake in its banner
    options = app.GuiOptions(
        db_path=resolve_db(args, config),
        config_path=Path(args.config).expanduser()
        if getattr(args, "config", None)
        else default_config_path(),
        simulate=getattr(args, "simulate", None),
        seed=getattr(args, "seed", 0),
        interval_s=getattr(args, "interval", None),
        screenshot=Path(args.screenshot).expanduser()
        if getattr(args, "screenshot", None)
        else None,
        quit_after=getattr(args, "quit_after", None),
        page=getattr(args, "page", None),
        theme=getattr(args, "theme", None),
        settings_path=Path(args.settings).expanduser() if getattr(args, "settings", None) else None,
    )
    return int(app.run(options))
