"""Which processes belong to a local run, so that a run is over only when all of them are.

A run's top process may start others and exit: ``sh -c 'train &'``, a daemon that forks twice,
a child that calls ``setsid``. Three marks find them on Linux, by reading ``/proc``:

- the run's process group (its top process leads a session and group of its own);
- descendants of any process found, while their parent lives (a child seen once stays known
  by pid and start time after it is orphaned);
- the run's marker in ``/proc/PID/environ`` (:data:`MARK_ENV`, inherited by every process the
  run starts unless one execs with a cleaned environment), readable for our own uid or root:
  this finds ``setsid`` children and double-forked daemons.

Zombies do not count: they run nothing, and their parent (or init) reaps them. Elsewhere than
Linux only the process group and descendants are found (through psutil).

Every run's scan reads the whole process table, so with K runs going their threads share the
reading: a scan asked for while another is under way waits for the next one, which serves every
waiter (never one begun before the ask, so a scan never misses what happened before it). With
K = 8 short runs this halved the reads of ``/proc``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import psutil

#: Set by the local backend in every run's environment: a key unique to the run.
MARK_ENV = "COSTMETER_RUN_KEY"
PROC = Path("/proc")
#: The kernel's thread that starts the others: its children run no program, with no environment.
KTHREADD = 2
#: How long an environment that reads as empty is read again (an ``exec`` under way).
EXEC_WAIT_S = 0.1


class ProcStat(NamedTuple):
    """The fields of ``/proc/PID/stat`` tracking needs (a tuple: a table read makes one per
    process, and a frozen dataclass took twice as long to build)."""

    pid: int
    state: str
    ppid: int
    pgid: int
    #: Clock ticks after boot: with the pid, tells a reused pid apart.
    start: int

    @property
    def running(self) -> bool:
        return self.state not in ("Z", "X", "x")


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)
        if len(data) < 4096:
            return data
        parts = [data]  # an environment may be longer than one page
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """``/proc/PID/stat``, or None when the process is gone. (Plain ``os`` calls: a scan
    reads one per process, and pathlib's overhead doubled its cost.)"""
    return _read_stat(pid, proc)[0]


def _read_stat(pid: int, proc: Path) -> tuple[ProcStat | None, int]:
    try:
        raw = _read(f"{proc}/{pid}/stat")
    except OSError:
        return None, 0
    return _parse_stat(pid, raw)


def _parse_stat(pid: int, raw: bytes) -> tuple[ProcStat | None, int]:
    """The fields, and where the process's environment ends in its memory (field 51,
    ``env_end``; 0 where the kernel does not show it, another user's process): it moves with
    every ``exec``, which the pid and start time do not tell."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        st = ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None, 0
    try:
        return st, int(fields[48])
    except (IndexError, ValueError):
        return st, 0


def read_mark(pid: int, proc: Path = PROC) -> str | None:
    """The value of :data:`MARK_ENV` the process started with; None without one, or when its
    environment cannot be read (gone, or another user's)."""
    return _read_mark(pid, proc)[0]


def _read_mark(pid: int, proc: Path) -> tuple[str | None, bool]:
    """``read_mark``, and whether the answer holds for the rest of the process's life. An
    empty environment does not: a process in the middle of an ``exec`` (``setsid`` running
    ``sleep``) reads as one, with the marker back a moment later under the same pid and start
    time; taken as it read, that made a run's escapee invisible (its first look at /proc
    found the run over: ``test_cancel_kills_a_setsid_escapee`` failed 1 time in 100)."""
    try:
        env = _read(f"{proc}/{pid}/environ")
    except OSError:
        return None, True
    if not env:
        return None, False
    name = MARK_ENV.encode() + b"="
    if env.startswith(name):
        at = len(name)
    else:
        found = env.find(b"\0" + name)
        if found < 0:
            return None, True
        at = found + 1 + len(name)
    end = env.find(b"\0", at)
    return env[at : end if end >= 0 else len(env)].decode(errors="replace"), True


class _StatFiles:
    """``/proc/PID/stat`` of each process kept open between reads of the process table: a read
    at offset 0 of an open file gives the process's fields as they are now, and fails once it
    is gone (reaped), even when a new process has its pid; so each read is one ``pread``
    instead of a lookup, an open, a read and a close (about 40 % of a table's read). Only for
    the real /proc, at most ``MAX_OPEN`` files and an eighth of the process's limit on open
    files; used by one reader at a time."""

    MAX_OPEN = 256

    def __init__(self, proc: Path) -> None:
        self._proc = proc
        self._fds: dict[int, int] = {}
        import resource  # Unix only, as /proc is

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            self.MAX_OPEN = min(self.MAX_OPEN, soft // 8)

    def read(self, pid: int) -> tuple[ProcStat | None, int]:
        """``_read_stat`` through the kept file."""
        fd = self._fds.get(pid)
        if fd is not None:
            try:
                raw = os.pread(fd, 4096, 0)
            except OSError:  # that process is gone: its pid may be someone else's now
                raw = b""
            if raw:
                return _parse_stat(pid, raw)
            del self._fds[pid]
            os.close(fd)
        path = f"{self._proc}/{pid}/stat"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None, 0
        try:
            raw = os.read(fd, 4096)
        except OSError:
            os.close(fd)
            return None, 0
        if raw and len(self._fds) < self.MAX_OPEN:
            self._fds[pid] = fd
        else:
            os.close(fd)
        return _parse_stat(pid, raw)

    def keep_only(self, pids: set[int]) -> None:
        """Close the files of processes the last listing of /proc no longer had."""
        for pid in [p for p in self._fds if p not in pids]:
            os.close(self._fds.pop(pid))


class _MarkCache:
    """The marker of each process, read once per program it runs (pid, start time and where its
    environment ends, which each ``exec`` moves) and shared by every run's scans: the
    environment a program started with never changes. Keyed by the pid and start time alone,
    a child read between its ``fork`` and its ``exec`` kept its parent's environment (no
    marker) after the ``exec`` gave it the run's. An environment that reads as empty is read
    again for up to ``EXEC_WAIT_S`` (an ``exec`` under way, see ``_read_mark``), but for
    kernel threads (kthreadd's), which have none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[tuple[int, int, int], str | None] = {}

    def mark(self, st: ProcStat, proc: Path, env_end: int = 0) -> str | None:
        key = (st.pid, st.start, env_end)
        with self._lock:
            if key in self._marks:
                return self._marks[key]
        found, final = _read_mark(st.pid, proc)
        if not final and KTHREADD not in (st.pid, st.ppid):
            pause, waited = 0.001, 0.0
            while not final and waited < EXEC_WAIT_S:
                time.sleep(pause)
                waited += pause
                pause *= 2
                found, final = _read_mark(st.pid, proc)
        with self._lock:  # still empty: the process has no environment (``env -i``)
            self._marks[key] = found
        return found

    def keep_only(self, alive: dict[int, ProcStat], env_ends: dict[int, int]) -> None:
        """Forget the programs no longer running (their pids may come back as others)."""
        with self._lock:
            for pid, start, env_end in list(self._marks):
                st = alive.get(pid)
                if st is None or st.start != start or env_ends.get(pid) != env_end:
                    del self._marks[(pid, start, env_end)]


_caches: dict[Path, _MarkCache] = {}
_caches_lock = threading.Lock()


def _cache_for(proc: Path) -> _MarkCache:
    with _caches_lock:
        return _caches.setdefault(proc, _MarkCache())


@dataclass(frozen=True)
class _Table:
    """One read of the process table."""

    stats: dict[int, ProcStat]
    #: Running processes by the run marker they started with.
    by_mark: dict[str, frozenset[int]]
    #: The children of each process, by its pid.
    children: dict[int, list[int]]


def _read_table(proc: Path, files: _StatFiles | None = None) -> _Table:
    stats: dict[int, ProcStat] = {}
    env_ends: dict[int, int] = {}
    listed = [int(name) for name in os.listdir(proc) if name.isdigit()]
    for pid in listed:
        st, env_end = _read_stat(pid, proc) if files is None else files.read(pid)
        if st is not None:
            stats[st.pid] = st
            env_ends[st.pid] = env_end
    if files is not None:
        files.keep_only(set(listed))
    marks = _cache_for(proc)
    by_mark: dict[str, set[int]] = {}
    for st in stats.values():
        if st.running:  # a zombie's environment reads as empty
            mark = marks.mark(st, proc, env_ends[st.pid])
            if mark:
                by_mark.setdefault(mark, set()).add(st.pid)
    marks.keep_only(stats, env_ends)
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    return _Table(stats, {m: frozenset(p) for m, p in by_mark.items()}, children)


class _ProcTable:
    """Reads of the process table, shared by the scans that ask at the same time."""

    def __init__(self, proc: Path) -> None:
        self._proc = proc
        self._cond = threading.Condition()
        self._begun = 0  # reads started so far
        self._done = 0  # the generation of the latest finished read
        self._busy = False
        self._table = _Table({}, {}, {})
        self._table_at = 0.0  # when the read of ``_table`` began (monotonic)
        self._files = _StatFiles(proc) if proc == PROC else None  # one reader at a time

    def read(self, max_age_s: float = 0.0) -> _Table:
        """The table as a read begun after this call saw it (callers must not change it); with
        ``max_age_s``, the latest one when it began at most that long ago."""
        with self._cond:
            if self._done and time.monotonic() - self._table_at <= max_age_s:
                return self._table
            wanted = self._begun + 1
            while self._done < wanted:
                if not self._busy:
                    break
                self._cond.wait()
            else:
                return self._table
            self._busy = True
            self._begun += 1
            generation = self._begun
        begun_at = time.monotonic()
        table: _Table | None = None
        try:
            table = _read_table(self._proc, self._files)
            return table
        finally:
            with self._cond:
                self._busy = False
                if table is not None:
                    self._table, self._done, self._table_at = table, generation, begun_at
                self._cond.notify_all()


_tables: dict[Path, _ProcTable] = {}


def _table_for(proc: Path) -> _ProcTable:
    with _caches_lock:
        return _tables.setdefault(proc, _ProcTable(proc))


class RunProcesses:
    """The processes of one run (see the module doc). Thread-safe; each ``scan`` reads /proc.

    ``leader`` is the run's top process, which leads its own process group. Without
    ``by_group`` (the leader is gone, its number may be someone else's) only the marker and
    descendants count.
    """

    def __init__(self, leader: int, mark: str, *, by_group: bool = True, proc: Path = PROC) -> None:
        self.leader = leader
        #: The run's process group, or None when it is not to be trusted (see above).
        self.pgid: int | None = leader if by_group else None
        self.mark = mark
        self._proc = proc
        self._lock = threading.Lock()
        #: pid -> start of every process seen as the run's.
        self._known: dict[int, int] = {}
        self.linux = proc.is_dir()

    def forget(self) -> None:
        """Drop what was learnt about processes (the run is over; frees the memory)."""
        with self._lock:
            self._known.clear()

    def scan(self, max_age_s: float = 0.0) -> list[int]:
        """The run's processes that still run, in pid order, the leader first if it runs.

        ``max_age_s``: a read of /proc begun that long ago will do (a status poll, which only
        reports the PIDs); 0 (deciding whether the run is over) asks for a read begun now."""
        with self._lock:
            if not self.linux:
                return self._scan_psutil()
            return self._scan_proc(max_age_s)

    def _scan_proc(self, max_age_s: float) -> list[int]:
        table = _table_for(self._proc).read(max_age_s)
        stats = table.stats
        members = set(table.by_mark.get(self.mark, ())) if self.mark else set()
        pgid, known = self.pgid, self._known
        members.update(
            st.pid for st in stats.values() if st.pgid == pgid or known.get(st.pid) == st.start
        )
        children = table.children
        todo = list(members)
        while todo:  # descendants of every member, whatever group or session they chose
            for kid in children.get(todo.pop(), ()):
                if kid not in members:
                    members.add(kid)
                    todo.append(kid)
        self._known = {pid: stats[pid].start for pid in members}
        return _leader_first(self.leader, (p for p in members if stats[p].running))

    def _scan_psutil(self) -> list[int]:
        found: set[int] = set()
        for pid in [self.leader] if self.pgid is not None else []:
            try:
                top = psutil.Process(pid)
                if top.status() != psutil.STATUS_ZOMBIE:
                    found.add(pid)
                found.update(k.pid for k in top.children(recursive=True))
            except psutil.Error:
                pass
        for pid in list(self._known):
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    found.add(pid)
            except psutil.Error:
                continue
        self._known = dict.fromkeys(found, 0)
        return _leader_first(self.leader, found)


def _leader_first(leader: int, pids: Iterable[int]) -> list[int]:
    return sorted(pids, key=lambda p: (p != leader, p))
