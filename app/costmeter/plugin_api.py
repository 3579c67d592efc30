"""The public API for run backends: the only Costmeter module a backend plugin imports.

A backend turns a :class:`RunSpec` into running processes somewhere (this machine, a Ray cluster)
and answers questions about them. Costmeter owns everything around that: the queue, GPU
placement on this machine, the database rows, attribution of samples and cost.

Register a backend in your distribution's ``pyproject.toml``::

    [project.entry-points."costmeter.backends"]
    mybackend = "my_package.backend:MyBackend"

The entry point's name is the backend's name. The target is a class (or any callable) that
takes a :class:`BackendConfig` and returns an object satisfying :class:`Backend`; it must carry
a ``API_VERSION`` attribute (a string like ``"1.0"``). Keep the module the entry point names
light: import heavy libraries inside ``submit`` or ``__init__``, so that ``costmeter plugins``
can list every backend quickly. Costmeter isolates backends: one that fails to import, declares
an API version this Costmeter does not support, or raises inside a call is shown as failed
with its error, and everything else goes on working.

Compatibility: ``API_VERSION`` is ``"MAJOR.MINOR"``. A plugin written for ``X.Y`` works with any
Costmeter whose API is ``X.Z`` with ``Z >= Y``. Minor versions only add optional things.

1.1 added :attr:`Capability.NODE_SAMPLES`, :attr:`BackendConfig.node_sampler` and the
:class:`NodeSampling` protocol: a multi-node backend may sample the machines its runs land on
with Costmeter's own samplers, run there, and hand the samples back through an optional
``node_samples(handle, since_ts)`` method.

1.2 added :attr:`RunStatus.job` and :attr:`RunStatus.allocated_gpus`: a batch scheduler's
backend (Slurm) names the job a run became, so that Costmeter charges the run what that job's
processes used on ``node`` (whatever sampled the node: an agent, a Prometheus source), and,
where no samples of the node exist, estimates the cost from the elapsed time and the GPUs the
scheduler allocated (labelled estimated).

1.3 added :attr:`RunSpec.nproc_per_node` (a data-parallel run: PyTorch's launcher starts that
many processes, one per GPU, as one run; a backend without :attr:`Capability.DATA_PARALLEL`
is not given such a run) and :attr:`RunSpec.output_dirs` (folders whose size Costmeter
measures while the run writes its checkpoints there; backends may ignore it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "API_VERSION",
    "ENTRY_POINT_GROUP",
    "PROGRESS_ENV",
    "RUN_ID_ENV",
    "Backend",
    "BackendConfig",
    "BackendError",
    "BackendMetadata",
    "Capability",
    "LogChunk",
    "NodeSampling",
    "Placement",
    "Resources",
    "RunHandle",
    "RunSpec",
    "RunState",
    "RunStatus",
    "api_compatible",
]

API_VERSION = "1.3"
ENTRY_POINT_GROUP = "costmeter.backends"
#: Set in every run's environment: the run's id in Costmeter's database.
RUN_ID_ENV = "COSTMETER_RUN_ID"
#: Set in every run's environment: where ``costmeter.progress.report`` writes (a file path).
PROGRESS_ENV = "COSTMETER_PROGRESS_FILE"


class BackendError(Exception):
    """Raise this with a sentence a user can act on; Costmeter shows ``str(err)`` as is.

    Any other exception from a backend is shown too, prefixed with the backend's name and the
    exception's type, because it is a bug in the backend rather than a user mistake.
    """


class Capability(enum.StrEnum):
    """What a backend can do beyond starting a command and reporting its end."""

    #: The backend can give runs GPUs (else a run asking for GPUs is refused before submit).
    GPUS = "gpus"
    #: The backend chooses GPUs itself (Ray); else Costmeter picks them and passes a Placement.
    PLACES_GPUS = "places-gpus"
    CANCEL = "cancel"
    LOGS = "logs"
    #: Runs may land on other machines than this one; ``RunStatus.node`` then says which.
    MULTI_NODE = "multi-node"
    #: (1.1) The backend samples the machines its runs execute on with the sampler
    #: ``BackendConfig.node_sampler`` makes, and has ``node_samples(handle, since_ts)``.
    NODE_SAMPLES = "node-samples"
    #: (1.3) The backend can start a data-parallel run (``RunSpec.nproc_per_node`` > 1).
    DATA_PARALLEL = "data-parallel"


class RunState(enum.StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Costmeter lost track of it (the backend went away, or Costmeter restarted mid-run).
    LOST = "lost"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.LOST})


@dataclass(frozen=True)
class RunSpec:
    """What to run. ``argv`` is executed directly, never through a shell."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    gpus: int = 0
    cpus: float = 1.0
    name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Seconds after which the run is cancelled; ``None`` for no limit.
    time_limit_s: float | None = None
    #: Money (in the configured currency) after which the run is cancelled; ``None`` for none.
    budget: float | None = None
    #: (1.3) Processes per node for a data-parallel run (``torch.distributed.run``); 1 for a
    #: plain run.
    nproc_per_node: int = 1
    #: (1.3) Folders the run writes its outputs to (checkpoints): Costmeter measures them.
    output_dirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise ValueError("A run needs a command: argv must be a non-empty list of strings.")
        if self.gpus < 0:
            raise ValueError(f"A run cannot ask for {self.gpus} GPUs.")
        if self.cpus <= 0:
            raise ValueError(f"A run needs more than {self.cpus} CPUs.")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError("The time limit must be more than zero seconds.")
        if self.budget is not None and self.budget <= 0:
            raise ValueError("The budget must be more than zero.")
        if self.nproc_per_node < 1:
            raise ValueError(f"A run needs at least one process, not {self.nproc_per_node}.")


@dataclass(frozen=True)
class Placement:
    """Where Costmeter placed a run: GPU indices on this machine (empty for none)."""

    gpu_indices: tuple[int, ...] = ()


class NodeSampling(Protocol):
    """(1.1) What ``BackendConfig.node_sampler()`` returns, on the machine that calls it.

    Build it on the node that runs work (the factory is picklable: ship it there), call
    ``sample`` every second or so, and return the dicts it gives, unchanged, from
    ``node_samples``. Costmeter alone reads them.
    """

    def sample(
        self, pids: Collection[int], gpus: Mapping[int, Sequence[int]] | None = None
    ) -> dict[str, Any]:
        """One reading of this machine: its GPUs, its host, and the processes ``pids`` (with
        their children). ``gpus`` maps a run's top pid to the GPU indices it was given."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendConfig:
    """What Costmeter passes to a backend's constructor."""

    #: The backend's section of the user's config file (``[backends.NAME]``), as parsed TOML.
    options: Mapping[str, object] = field(default_factory=dict)
    #: A directory the backend may keep files in (logs, state); it exists.
    state_dir: Path = Path(".")
    #: (1.1) A picklable factory of :class:`NodeSampling`, for backends with
    #: ``Capability.NODE_SAMPLES``; ``None`` when Costmeter does not want node samples.
    node_sampler: Callable[[], NodeSampling] | None = None


@dataclass(frozen=True)
class BackendMetadata:
    name: str
    version: str
    api_version: str
    description: str = ""
    capabilities: frozenset[Capability] = frozenset()


@dataclass(frozen=True)
class Resources:
    """What a backend can offer right now (``None`` where it cannot tell)."""

    gpus: int | None = None
    cpus: float | None = None
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunHandle:
    """A backend's reference to one submitted run. ``key`` is the backend's own identifier.

    Handles are stored in the database as ``key`` plus ``data`` (JSON-serialisable strings), so
    a backend must be able to answer ``status`` for a handle rebuilt from them.
    """

    backend: str
    key: str
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    #: Process ids of the run's processes (top process first), on ``node``.
    pids: tuple[int, ...] = ()
    #: The hostname the run executes on; ``None`` means this machine.
    node: str | None = None
    #: GPU indices on ``node`` the run was given, when the backend placed it.
    gpu_indices: tuple[int, ...] = ()
    #: A sentence for the user (why it failed, what it waits for); empty when there is nothing.
    message: str = ""
    #: (1.2) The scheduler's job id (Slurm's ``SLURM_JOB_ID``) when the run is a batch job;
    #: its processes on ``node`` carry it as their owner's job.
    job: str | None = None
    #: (1.2) GPUs the scheduler allocated to the job (what it is billed for), when it says.
    allocated_gpus: int | None = None


@dataclass(frozen=True)
class LogChunk:
    """Output from ``offset`` onwards. Call again with ``next_offset`` to stream.

    Offsets belong to the backend (the local backend counts bytes of its log file); callers
    start at 0 and only ever pass back a ``next_offset`` they were given.
    """

    text: str
    next_offset: int
    #: True once the run has finished and everything it wrote has been returned.
    complete: bool = False


@runtime_checkable
class Backend(Protocol):
    """A run backend. Costmeter calls it from worker threads, never from the GUI thread.

    Calls may come from several threads at once; a backend guards its own state.
    """

    @property
    def metadata(self) -> BackendMetadata: ...

    def resources(self) -> Resources: ...

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        """Start the run and return at once.

        ``env`` holds variables Costmeter adds (``CUDA_VISIBLE_DEVICES``, :data:`RUN_ID_ENV`,
        :data:`PROGRESS_ENV`); they take precedence over ``spec.env``. ``run_dir`` is an
        existing directory for this run's logs. Raise :class:`BackendError` when it cannot start.
        """
        ...

    def status(self, handle: RunHandle) -> RunStatus: ...

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        """Ask the run to stop (SIGTERM or equivalent); force it after ``grace_s`` seconds."""
        ...

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk: ...

    def close(self) -> None:
        """Release connections and threads. Runs already submitted may go on."""
        ...


def api_compatible(plugin_api: str, ours: str = API_VERSION) -> bool:
    """Whether a plugin written for ``plugin_api`` works with API ``ours`` (see module doc)."""
    try:
        p_major, p_minor = (int(x) for x in plugin_api.split("."))
        o_major, o_minor = (int(x) for x in ours.split("."))
    except (ValueError, AttributeError):
        return False
    return p_major == o_major and p_minor <= o_minor
