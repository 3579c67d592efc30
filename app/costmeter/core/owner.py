"""Who a process belongs to: the identifiers Costmeter keeps to say who pays for it.

Read once, when a process is first seen (``costmeter.sampling.owner``), stored with the process
row and sent by agents on the wire. Only these identifiers are ever kept, never a dump of a
process's environment. ``None`` means "not known"; ``unreadable`` says which sources could not be
read (another user's ``/proc/PID/environ`` without privilege), so a report can say why a process
is unattributed instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: The sources an owner is read from, as named in ``Owner.unreadable``.
SOURCES: tuple[str, ...] = ("uid", "environ", "cgroup")


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int | None = None
    #: The Unix user name of ``uid`` (or the name an exporter or importer reported).
    user: str | None = None
    #: Slurm: ``SLURM_JOB_ID`` (else the job in the cgroup path), ``SLURM_JOB_USER``,
    #: ``SLURM_JOB_ACCOUNT``, ``SLURM_JOB_PARTITION``, ``SLURM_ARRAY_JOB_ID``/``_TASK_ID``.
    job_id: str | None = None
    job_user: str | None = None
    account: str | None = None
    partition: str | None = None
    array_job_id: str | None = None
    array_task_id: str | None = None
    #: A container's full id (64 hex digits from Docker, containerd or CRI-O cgroup paths).
    container_id: str | None = None
    #: A Kubernetes pod's UID (from a ``kubepods`` cgroup path, ``_`` turned back into ``-``).
    pod_uid: str | None = None
    #: Names an exporter reports (dcgm-exporter's ``pod``, ``namespace``, ``container`` labels).
    pod: str | None = None
    namespace: str | None = None
    container: str | None = None
    #: ``COSTMETER_RUN_KEY`` from the environment: the Costmeter run the process belongs to.
    run_key: str | None = None
    #: Sources (from ``SOURCES``) that exist but could not be read.
    unreadable: frozenset[str] = frozenset()

    @property
    def known(self) -> bool:
        """False when nothing at all is known: such a process's use is "unattributed"."""
        return any(getattr(self, name) is not None for name in OWNER_FIELDS)


#: The identifier fields, in the order the store's columns and the wire keep them.
OWNER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Owner) if f.name != "unreadable")

#: Fields that hold integers; every other identifier is text.
INT_FIELDS: frozenset[str] = frozenset({"uid"})

UNKNOWN = Owner()
