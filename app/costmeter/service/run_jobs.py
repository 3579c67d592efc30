"""The processes of a scheduler's job on this machine, whatever process tree they hang from.

Slurm starts a job's tasks from ``slurmstepd``, not from the process its backend reports (the
batch script or ``srun``), so the run's PID and its children miss them. Every process of the
job carries the job id in its environment (``SLURM_JOB_ID``) or its cgroup path, which
:func:`costmeter.sampling.owner.read_owner` reads: :class:`JobProcesses` lists the processes of
one job, reading each new process once, so the monitor samples them with the run's own.
"""

from __future__ import annotations

import psutil

from costmeter.sampling.owner import read_owner


class JobProcesses:
    """Finds the live processes of job ``job`` on this machine; not thread-safe."""

    def __init__(self, job: str, proc_root: str = "/proc") -> None:
        self.job = job
        self.proc_root = proc_root
        #: PIDs read so far -> whether they are the job's. A PID that disappears is dropped.
        self._seen: dict[int, bool] = {}
        #: PIDs whose environment read empty (between fork and exec, or a kernel thread) ->
        #: reads so far; read again on the next scans, up to ``EMPTY_TRIES``.
        self._empty: dict[int, int] = {}

    def scan(self) -> set[int]:
        """The job's processes now (a PID is read once while it lives)."""
        pids = set(psutil.pids())
        for gone in set(self._seen) - pids:
            del self._seen[gone]
        for gone in set(self._empty) - pids:
            del self._empty[gone]
        for pid in pids - set(self._seen):
            owner = read_owner(pid, self.proc_root)
            if owner.job_id is None and "environ" not in owner.unreadable:
                tries = self._empty.get(pid, 0) + 1
                if tries < EMPTY_TRIES and _environ_empty(pid, self.proc_root):
                    self._empty[pid] = tries
                    continue
            self._empty.pop(pid, None)
            self._seen[pid] = owner.job_id == self.job
        return {pid for pid, mine in self._seen.items() if mine}


#: Scans that read an empty environment again before taking the process as no job's.
EMPTY_TRIES = 3


def _environ_empty(pid: int, proc_root: str) -> bool:
    try:
        with open(f"{proc_root}/{pid}/environ", "rb") as f:
            return not f.read(1)
    except OSError:
        return False
