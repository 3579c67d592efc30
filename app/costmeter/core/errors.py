"""Errors that carry a message meant for a person, not a traceback."""

from __future__ import annotations


class CostmeterError(Exception):
    """Base class: ``str(err)`` is a complete sentence a user can act on."""


class ConfigError(CostmeterError):
    """A configuration file is malformed; the message names the file, line and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        where = ""
        if path:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            if key:
                where += f", key '{key}'"
            where += ": "
        super().__init__(where + message)
        #: The message without the file, line and key (for a form that shows it beside the field).
        self.message = message
        self.path = path
        self.line = line
        self.key = key


class StoreError(CostmeterError):
    """The database could not be used."""


class StoreLockedError(StoreError):
    """Another recorder already writes this database."""


class SamplerUnavailable(CostmeterError):
    """A sampler cannot run on this machine (for example: no NVIDIA driver)."""
