"""Measuring a run's output folders while it runs: bytes, files, growth (issue 16, "store less").

A folder is walked with ``os.scandir``, iteratively (no recursion, so no depth limit), never
following a symbolic link (a link is counted as a link, its target is someone else's), and at
most ``budget`` entries per pass: a tree of millions of files is measured over several passes
and its totals are published once a walk is complete, so one pass never stalls the thread.
Entries that cannot be read (permissions) and folders that vanish mid-walk are counted and said,
not raised. Sizes are apparent sizes (``st_size``), what deleting a file gives back.

``StorageWatch`` runs on a thread of the run service (never the GUI's): every ``interval_s``
it takes a pass over the folders of the live runs, and when a run ends the service asks for a
final, complete measurement. Each complete measurement becomes rows of ``run_storage`` and the
run's latest totals, through the store's named methods.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from costmeter.cost.storage import monthly_cost
from costmeter.store.run_storage import StoredSize
from costmeter.store.runs import RunStore

log = logging.getLogger(__name__)

#: Entries one pass may look at in one folder (a pass over 100k files takes ~0.1-0.3 s).
PASS_BUDGET = 100_000
#: A run's final measurement walks at most this many entries per folder (then says "partial").
FINAL_BUDGET = 5_000_000
DEFAULT_INTERVAL_S = 30.0


@dataclass(frozen=True, slots=True)
class DirUsage:
    """One complete (or, when ``partial``, cut short) walk of one folder."""

    path: str
    bytes: int
    files: int
    #: Entries that could not be read (a folder without permission, a stat that failed).
    unreadable: int = 0
    #: Symbolic links met (not followed, their targets not counted).
    links: int = 0
    #: Folders that disappeared while being walked (a trainer deleting old checkpoints).
    vanished: int = 0
    #: The folder itself does not exist (yet): nothing written there.
    missing: bool = False
    #: The walk stopped at its entry budget: the figures are a lower bound.
    partial: bool = False

    def notes(self) -> list[str]:
        """What a reader should know about these figures, in words."""
        out = []
        if self.missing:
            out.append(f"{self.path} does not exist (yet)")
        if self.unreadable:
            out.append(f"{self.unreadable} entries in {self.path} could not be read")
        if self.links:
            out.append(f"{self.links} symbolic links in {self.path} were not followed")
        if self.vanished:
            out.append(f"{self.vanished} folders in {self.path} vanished while measured")
        if self.partial:
            out.append(f"{self.path} has more entries than one walk looks at: a lower bound")
        return out


@dataclass
class DirWalk:
    """A walk of one folder that can stop after a budget of entries and go on later."""

    root: str
    bytes: int = 0
    files: int = 0
    unreadable: int = 0
    links: int = 0
    vanished: int = 0
    missing: bool = False
    _stack: list[str] = field(default_factory=list)
    _started: bool = False

    @property
    def done(self) -> bool:
        return self._started and not self._stack

    def step(self, budget: int) -> bool:
        """Look at up to ``budget`` entries; True when the walk is complete."""
        if not self._started:
            self._started = True
            try:
                st = os.lstat(self.root)
            except FileNotFoundError:
                self.missing = True
                return True
            except OSError:
                self.unreadable += 1
                return True
            if stat.S_ISLNK(st.st_mode):  # the folder itself is a link: not followed
                self.links += 1
                return True
            if not stat.S_ISDIR(st.st_mode):
                self.bytes, self.files = st.st_size, 1
                return True
            self._stack.append(self.root)
        seen = 0
        while self._stack and seen < budget:
            folder = self._stack.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        seen += 1
                        self._count(entry)
            except FileNotFoundError:
                self.vanished += 1
            except (PermissionError, NotADirectoryError, OSError):
                self.unreadable += 1
        return not self._stack

    def _count(self, entry: os.DirEntry[str]) -> None:
        try:
            if entry.is_symlink():
                self.links += 1
            elif entry.is_dir(follow_symlinks=False):
                self._stack.append(entry.path)
            else:
                self.bytes += entry.stat(follow_symlinks=False).st_size
                self.files += 1
        except FileNotFoundError:
            pass  # deleted between the listing and the stat: no longer stored
        except OSError:
            self.unreadable += 1

    def result(self) -> DirUsage:
        return DirUsage(
            self.root,
            self.bytes,
            self.files,
            unreadable=self.unreadable,
            links=self.links,
            vanished=self.vanished,
            missing=self.missing,
            partial=not self.done,
        )


def measure_dir(path: str, budget: int = FINAL_BUDGET) -> DirUsage:
    """One walk of ``path`` to its end (or ``budget`` entries)."""
    walk = DirWalk(path)
    walk.step(budget)
    return walk.result()


@dataclass
class _Watched:
    dirs: tuple[str, ...]
    walks: dict[str, DirWalk] = field(default_factory=dict)
    last: dict[str, DirUsage] = field(default_factory=dict)


class StorageWatch:
    """Measures the output folders of the runs it is told about, on its own thread."""

    def __init__(
        self,
        store: RunStore,
        price_gb_month: Callable[[], float],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        budget: int = PASS_BUDGET,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.price_gb_month = price_gb_month
        self.interval_s = interval_s
        self.budget = budget
        self.clock = clock
        self._lock = threading.Lock()
        self._runs: dict[int, _Watched] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, run_id: int, dirs: Sequence[str]) -> None:
        """Measure ``dirs`` of ``run_id`` from now on (the thread starts with the first run)."""
        if not dirs:
            return
        with self._lock:
            self._runs.setdefault(run_id, _Watched(tuple(dict.fromkeys(dirs))))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="costmeter-run-storage", daemon=True
                )
                self._thread.start()

    def finish(self, run_id: int) -> list[DirUsage] | None:
        """The run ended: measure its folders to the end once more and stop watching it.
        Called on the run service's pricing thread (not the GUI's)."""
        with self._lock:
            watched = self._runs.pop(run_id, None)
        if watched is None:
            return None
        usages = [measure_dir(d) for d in watched.dirs]
        self._record(run_id, usages)
        return usages

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def pass_once(self) -> None:
        """One pass over every watched run (the thread's loop body; tests call it too)."""
        with self._lock:
            items = list(self._runs.items())
        for run_id, watched in items:
            complete = True
            for d in watched.dirs:
                walk = watched.walks.get(d)
                if walk is None or walk.done:
                    walk = watched.walks[d] = DirWalk(d)
                if walk.step(self.budget):
                    watched.last[d] = walk.result()
                else:
                    complete = False
            if complete and len(watched.last) == len(watched.dirs):
                with self._lock:
                    if run_id not in self._runs:  # finished meanwhile: its final walk counts
                        continue
                self._record(run_id, [watched.last[d] for d in watched.dirs])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.pass_once()
            except Exception:  # a bug here must not stop the next pass
                log.exception("The run output folders could not be measured.")

    def _record(self, run_id: int, usages: list[DirUsage]) -> None:
        total = sum(u.bytes for u in usages)
        try:
            self.store.add_storage(
                run_id,
                self.clock(),
                [StoredSize(u.path, u.bytes, u.files) for u in usages],
                storage_cost=monthly_cost(total, self.price_gb_month()),
            )
        except Exception:
            log.exception("The size of run %s's output could not be written.", run_id)
        for u in usages:
            for note in u.notes():
                log.info("Run %s: %s.", run_id, note)
