"""The advice over one of the windows the desktop app offers, with what was looked at to find
it: what the Advice page and the Overview's "Savings available" tile show (Qt-free; the GUI's
``AdvicePoller`` runs ``compute`` on its reader thread)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from costmeter.config import Config
from costmeter.service.advice import AdviceResult, advise
from costmeter.store import Store

#: The windows the Advice page offers (label -> seconds); the first is not the default.
WINDOWS: dict[str, float] = {"1h": 3600.0, "24h": 86_400.0, "7d": 7 * 86_400.0}
DEFAULT_WINDOW = "24h"


@dataclass(frozen=True, slots=True)
class AdviceSnapshot:
    """The advice over a window, and what was looked at to find it."""

    result: AdviceResult
    #: The window's label ("24h") and length.
    window: str
    since_s: float
    #: When the rules ran (wall clock).
    at: float
    #: The stored history's first and last sample (None: the database holds no samples).
    data_range: tuple[float, float] | None
    #: GPUs and hosts the database knows (what the rules could look at).
    devices: int
    hosts: int
    #: The database it came from.
    db_path: Path | None = None

    @property
    def has_data(self) -> bool:
        return self.data_range is not None


def compute(store: Store, config: Config, window: str, now: float | None = None) -> AdviceSnapshot:
    """Run the rules over the last ``window`` (a key of ``WINDOWS``). Only reads."""
    since_s = WINDOWS[window]
    at = time.time() if now is None else now
    result = advise(store, config, since_s=since_s, now=now)
    return AdviceSnapshot(
        result=result,
        window=window,
        since_s=since_s,
        at=at,
        data_range=store.time_range(),
        devices=len(store.devices()),
        hosts=len(store.hosts()),
        db_path=store.path,
    )
