"""What a run launcher shows besides the runs: the backends to choose from, and a run's log read
from an offset (at first only its tail). Qt-free; the desktop app calls these on worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from costmeter.config import Config
from costmeter.plugin_api import BackendConfig, Capability, LogChunk
from costmeter.runs.registry import OK, probe_all
from costmeter.service.backends import backend_config

#: At most this much of a log is shown when a run is first selected (its tail).
LOG_TAIL_CHARS = 512 * 1024
#: Chunks read per call at most (256 MiB with the local backend's 1 MiB chunks).
MAX_CHUNKS = 256


@dataclass(frozen=True)
class BackendChoice:
    """One backend for the launch dialog: loadable or not, and what it can do."""

    name: str
    ok: bool
    error: str = ""
    description: str = ""
    gpus: bool = True
    places_gpus: bool = False


@dataclass(frozen=True)
class LogRead:
    text: str
    next_offset: int
    complete: bool
    #: Output before ``text`` was skipped (only the tail of a long log is shown at first).
    skipped: bool = False


def backend_choices(config: Config, timeout_s: float = 15.0) -> list[BackendChoice]:
    """Every backend loaded once, each with its configured options (slow: off the GUI thread)."""

    def made(name: str, state_dir: Path) -> BackendConfig:
        return backend_config(name, config=config, state_dir=state_dir)

    out = []
    for status in probe_all(timeout_s=timeout_s, make_config=made):
        ok = status.status == OK
        caps = status.capabilities
        out.append(
            BackendChoice(
                name=status.name,
                ok=ok,
                error=status.error,
                description=status.info.description,
                gpus=Capability.GPUS in caps if ok else True,
                places_gpus=Capability.PLACES_GPUS in caps,
            )
        )
    return out


def read_log(read: Callable[[int], LogChunk], offset: int) -> LogRead:
    """The output from ``offset`` as far as it goes now, keeping at most its tail."""
    text, at, skipped = "", offset, False
    for _ in range(MAX_CHUNKS):
        chunk = read(at)
        text += chunk.text
        at = chunk.next_offset
        if len(text) > LOG_TAIL_CHARS:
            text, skipped = text[-LOG_TAIL_CHARS:], True
        if chunk.complete or not chunk.text:
            return LogRead(text, at, chunk.complete, skipped)
    return LogRead(text, at, False, skipped)
