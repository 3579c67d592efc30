"""Where the subcommands put the database: --db, then the configuration, then the default."""

from __future__ import annotations

import argparse
from pathlib import Path

from costmeter.cli.common import SIMULATED_DB_NAME, resolve_db
from costmeter.config import Config, StorageConfig
from costmeter.store import default_db_path


def args(db: str | None = None, simulate: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(db=db, simulate=simulate)


def test_db_flag_wins_over_the_configuration(tmp_path: Path) -> None:
    config = Config(storage=StorageConfig(database=tmp_path / "configured.db"))
    assert resolve_db(args(db=str(tmp_path / "flag.db")), config) == tmp_path / "flag.db"
    assert resolve_db(args(db=str(tmp_path / "f.db"), simulate="2"), config) == tmp_path / "f.db"


def test_the_configured_database_is_used_without_the_flag(tmp_path: Path) -> None:
    config = Config(storage=StorageConfig(database=tmp_path / "configured.db"))
    assert resolve_db(args(), config) == tmp_path / "configured.db"


def test_simulated_data_goes_beside_the_configured_database(tmp_path: Path) -> None:
    config = Config(storage=StorageConfig(database=tmp_path / "configured.db"))
    assert resolve_db(args(simulate="2"), config) == tmp_path / SIMULATED_DB_NAME


def test_without_a_configured_database_the_default_is_used() -> None:
    assert resolve_db(args(), Config()) == default_db_path()
    assert resolve_db(args(), None) == default_db_path()
    assert resolve_db(args(simulate="2"), None) == default_db_path().with_name(SIMULATED_DB_NAME)
