"""Spreading a GPU energy counter that moves in steps over the time since it last moved.

dcgm-exporter reads DCGM every 30 s by default (``-c 30000``) while Costmeter scrapes every
second or two, so its energy counter arrives as 0, 0, 0, ... then a 30 s lump: every scrape
in between would get no energy and the one after the step all of it. :class:`EnergySpreader`
holds back the ticks of a target while none of its counters has moved, and when one moves
gives each held tick the counter value a steady draw would have reached at its time (linear
between the last two readings that moved). Totals stay exactly the counter's; only their
placement in time changes, by at most one exporter period.

Ticks are released at once while the counters move on every scrape. A counter that stays
still for more than ``max_hold_s`` (an idle exporter, a counter that is not supported) stops
the holding until it moves again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from costmeter.core.model import Tick

Reading = dict[str, Any]


class EnergySpreader:
    def __init__(self, max_hold_s: float = 120.0) -> None:
        self.max_hold_s = max_hold_s
        #: uuid -> (ts, counter) of the last reading where that counter moved (or first seen).
        self._anchor: dict[str, tuple[float, int]] = {}
        self._held: list[Reading] = []
        self._still = False

    @property
    def holding(self) -> int:
        return len(self._held)

    def push(self, reading: Reading) -> list[Reading]:
        """Take the newest reading; returns the readings that may be written now, in order."""
        tick: Tick = reading["tick"]
        counters = _counters(tick)
        if not counters:
            return [*self.flush(), reading]
        moved = {
            uuid: mj
            for uuid, mj in counters.items()
            if uuid not in self._anchor or self._anchor[uuid][1] != mj
        }
        if not self._anchor or (not moved and self._still):
            self._remember(tick.ts, counters)
            return [*self.flush(), reading]
        if not moved:
            if self._held and tick.ts - self._held[0]["tick"].ts > self.max_hold_s:
                self._still = True
                return [*self.flush(), reading]
            self._held.append(reading)
            return []
        out = [self._spread(h, tick.ts, moved) for h in self._held]
        self._held = []
        self._still = False
        self._remember(tick.ts, moved)
        return [*out, reading]

    def flush(self) -> list[Reading]:
        """The readings held back, unchanged (when the target stops or its counters vanish)."""
        out, self._held = self._held, []
        return out

    def _remember(self, ts: float, counters: dict[str, int]) -> None:
        for uuid, mj in counters.items():
            self._anchor[uuid] = (ts, mj)

    def _spread(self, reading: Reading, end_ts: float, moved: dict[str, int]) -> Reading:
        tick: Tick = reading["tick"]
        devices = []
        changed = False
        for d in tick.devices:
            anchor = self._anchor.get(d.uuid)
            end = moved.get(d.uuid)
            if d.energy_mj is None or anchor is None or end is None or end < anchor[1]:
                devices.append(d)
                continue
            start_ts, start = anchor
            if not start_ts < tick.ts < end_ts:
                devices.append(d)
                continue
            share = (tick.ts - start_ts) / (end_ts - start_ts)
            devices.append(dataclasses.replace(d, energy_mj=start + round((end - start) * share)))
            changed = True
        if not changed:
            return reading
        return {**reading, "tick": dataclasses.replace(tick, devices=tuple(devices))}


def _counters(tick: Tick) -> dict[str, int]:
    return {d.uuid: d.energy_mj for d in tick.devices if d.energy_mj is not None and not d.lost}
