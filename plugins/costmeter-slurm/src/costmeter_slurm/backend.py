"""The ``slurm`` backend: each run is a Slurm batch job.

Options (``[backends.slurm]`` in Costmeter's config file, or ``--backend-option key=value``):

``partition``, ``account``
    ``--partition`` and ``--account`` of every job (Slurm's defaults without them).
``time_limit``
    ``--time`` for runs without a time limit of their own (Slurm's text: ``"30"`` minutes,
    ``"2:00:00"``, ``"1-00:00:00"``; a number is minutes). A run's ``--time-limit`` wins,
    rounded up to whole minutes (Slurm's unit; one minute at least).
``gpu_type``
    Asks for ``--gres=gpu:TYPE:N`` instead of ``--gres=gpu:N``.
``extra_args``
    More sbatch arguments, a list (``["--qos=high", "--mem=16G"]``) or one string.
``poll_interval_s``
    How long one ``squeue`` answer serves the status of every run (default 1 s): many runs
    polling make one squeue call, not one each.
``command_timeout_s``
    How long a Slurm command may take before the call fails (default 30 s).
``slurm_conf``
    ``SLURM_CONF`` for the commands, when the cluster is not the system's default.
``sbatch``, ``squeue``, ``sacct``, ``scontrol``, ``scancel``, ``sinfo``
    Paths of the commands, when they are not on ``PATH``.

Status comes from ``squeue`` while Slurm holds the job; once it has ended, from ``sacct``
(a site with slurmdbd), else from ``scontrol show job`` (kept ``MinJobAge`` seconds after the
end), else from ``sacct -c`` (the ``jobcomp/filetxt`` log). A handle rebuilt from the database
after a restart needs only its key, the job id.
"""

from __future__ import annotations

import codecs
import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from costmeter.plugin_api import (
    BackendConfig,
    BackendError,
    BackendMetadata,
    Capability,
    LogChunk,
    Placement,
    Resources,
    RunHandle,
    RunSpec,
    RunState,
    RunStatus,
)
from costmeter_slurm import __version__
from costmeter_slurm.commands import SlurmCommands, message_of
from costmeter_slurm.options import read_options
from costmeter_slurm.parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    JobInfo,
    first_record,
    gpu_indices,
    parse_listpids,
    parse_nodes,
    parse_sacct,
    parse_scontrol_job,
    parse_squeue,
)
from costmeter_slurm.script import SCRIPT_NAME, batch_script, parse_job_id, sbatch_argv
from costmeter_slurm.states import is_finished, run_state

#: Written in a run's directory when Costmeter cancels it, so a restarted Costmeter still
#: reports the job's end (a SIGTERM exit) as cancelled rather than failed.
CANCEL_MARK = ".costmeter-slurm-cancelled"
#: The most bytes one ``read_logs`` call returns.
LOG_CHUNK = 1 << 20
_ACCOUNTING_OFF = "accounting storage is disabled"
_GONE = ("Invalid job id", "already completing or completed", "does not exist")


@dataclass
class _Job:
    job_id: str
    output: Path | None
    run_dir: Path | None
    gpus_asked: int | None
    cancel_requested: bool = False
    final: RunStatus | None = None
    gpu_indices: tuple[int, ...] | None = None
    pids: tuple[int, ...] = ()
    pids_at: float = float("-inf")


class SlurmBackend:
    API_VERSION = "1.2"

    def __init__(self, config: BackendConfig | None = None) -> None:
        config = config or BackendConfig()
        self.options = read_options(config.options)
        self.state_dir = Path(config.state_dir)
        self.commands = SlurmCommands(self.options)
        self._lock = threading.Lock()
        self._query_lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._queue: dict[str, JobInfo] = {}
        self._queue_ids: frozenset[str] = frozenset()
        self._queue_at = float("-inf")
        #: Whether plain sacct answers (None until asked): no slurmdbd makes it refuse.
        self._sacct_ok: bool | None = None
        host = socket.gethostname()
        self.hostname = host
        self._local_names = {host.lower(), host.split(".")[0].lower(), "localhost"}

    # -- metadata -------------------------------------------------------------------------------

    @property
    def metadata(self) -> BackendMetadata:
        where = f"partition {self.options.partition}" if self.options.partition else "Slurm"
        return BackendMetadata(
            name="slurm",
            version=__version__,
            api_version=self.API_VERSION,
            description=f"Submits runs as Slurm batch jobs ({where}).",
            capabilities=frozenset(
                {
                    Capability.GPUS,
                    Capability.PLACES_GPUS,
                    Capability.CANCEL,
                    Capability.LOGS,
                    Capability.MULTI_NODE,
                }
            ),
        )

    def resources(self) -> Resources:
        result = self.commands.run("scontrol", ["show", "node", "-o", "-d"])
        if result.returncode != 0:
            raise BackendError(f"Slurm did not list its nodes: {message_of(result)}")
        nodes = parse_nodes(result.stdout)
        if self.options.partition:
            listed = self.commands.run(
                "sinfo", ["-h", "-N", "-p", self.options.partition, "-o", "%N"]
            )
            if listed.returncode != 0:
                raise BackendError(
                    f"Slurm did not list the partition's nodes: {message_of(listed)}"
                )
            names = {line.strip() for line in listed.stdout.splitlines() if line.strip()}
            nodes = [node for node in nodes if node.name in names]
        usable = [node for node in nodes if node.usable]
        cpus = [n.cpus - (n.cpus_used or 0) for n in usable if n.cpus is not None]
        return Resources(
            gpus=sum(max(n.gpus - n.gpus_used, 0) for n in usable),
            cpus=float(sum(cpus)) if cpus else None,
            nodes=tuple(node.name for node in usable),
        )

    # -- submit ---------------------------------------------------------------------------------

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        """Placement is ignored: Slurm picks the GPUs (Capability.PLACES_GPUS)."""
        run_env = dict(env)
        run_dir = Path(run_dir)
        script = run_dir / SCRIPT_NAME
        try:
            script.write_text(batch_script(spec, run_env))
            script.chmod(0o700)
        except OSError as exc:
            raise BackendError(f"Cannot write the batch script {script}: {exc}.") from None
        argv = sbatch_argv(self.options, spec, run_env, run_dir, script)
        result = self.commands.run_argv(argv, "sbatch")
        if result.returncode != 0:
            raise BackendError(f"Slurm refused the job: {message_of(result)}")
        job_id = parse_job_id(result.stdout)
        output = run_dir / f"slurm-{job_id}.out"
        with self._lock:
            self._jobs[job_id] = _Job(job_id, output, run_dir, spec.gpus)
        data = {"output": str(output), "run_dir": str(run_dir), "gpus": str(spec.gpus)}
        return RunHandle("slurm", job_id, data)

    # -- status ---------------------------------------------------------------------------------

    def status(self, handle: RunHandle) -> RunStatus:
        job = self._job(handle)
        if job.final is not None:
            return job.final
        info = self._queued_info(job)
        if info is None or is_finished(info.state):
            detail = self._finished_info(job.job_id)
            if detail is None and info is None:
                gone = RunStatus(
                    RunState.LOST,
                    message=(
                        f"Slurm no longer knows job {job.job_id}: it ended more than MinJobAge "
                        "ago and no accounting (sacct) answers for it."
                    ),
                    job=job.job_id,
                )
                job.final = gone
                return gone
            if detail is None or (info is not None and not is_finished(detail.state)):
                detail = info
            assert detail is not None
            info = detail
        status = self._to_status(job, info)
        if status.state.finished:
            job.final = status
        return status

    def _job(self, handle: RunHandle) -> _Job:
        key = str(handle.key)
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                output = handle.data.get("output")
                run_dir = handle.data.get("run_dir")
                gpus = handle.data.get("gpus", "")
                job = _Job(
                    key,
                    Path(output) if output else None,
                    Path(run_dir) if run_dir else None,
                    int(gpus) if gpus.isdigit() else None,
                )
                job.cancel_requested = bool(job.run_dir and (job.run_dir / CANCEL_MARK).exists())
                self._jobs[key] = job
            return job

    def _queued_info(self, job: _Job, fresh: bool = False) -> JobInfo | None:
        """The job as squeue shows it (one squeue call serves every run for poll_interval_s)."""
        with self._query_lock:
            with self._lock:
                usable = (
                    not fresh
                    and job.job_id in self._queue_ids
                    and time.monotonic() - self._queue_at < self.options.poll_interval_s
                )
                info = self._queue.get(job.job_id) if usable else None
            # Slurm makes the output file when the job starts: a cached "pending" is stale then.
            if usable and info is not None and info.state in ("PENDING", "CONFIGURING"):
                usable = not (job.output is not None and job.output.exists())
            if not usable:
                self._refresh_queue()
            with self._lock:
                return self._queue.get(job.job_id)

    def _refresh_queue(self) -> None:
        with self._lock:
            ids = sorted(j.job_id for j in self._jobs.values() if j.final is None)
        if not ids:
            return
        result = self._squeue(ids)
        if result is None:  # one id Slurm forgot spoils the list: ask one by one
            found: dict[str, JobInfo] = {}
            for job_id in ids:
                single = self._squeue([job_id])
                if single is not None:
                    found.update(single)
        else:
            found = result
        with self._lock:
            self._queue = found
            self._queue_ids = frozenset(ids)
            self._queue_at = time.monotonic()

    def _squeue(self, ids: list[str]) -> dict[str, JobInfo] | None:
        args = ["-h", "-t", "all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT]
        result = self.commands.run("squeue", args)
        if result.returncode == 0:
            return parse_squeue(result.stdout)
        message = message_of(result)
        if "Invalid job id" in message:
            return {} if len(ids) == 1 else None
        raise BackendError(f"squeue failed: {message}")

    def _finished_info(self, job_id: str) -> JobInfo | None:
        """The job's end from sacct, else scontrol, else the jobcomp log (sacct -c)."""
        if self._sacct_ok is not False:
            info = self._sacct(job_id, completion_log=False)
            if info is not None and is_finished(info.state):
                return info
        result = self.commands.run("scontrol", ["show", "job", "-o", job_id])
        if result.returncode == 0:
            info = parse_scontrol_job(first_record(result.stdout))
            if info is not None:
                return info
        if self._sacct_ok is False:
            return self._sacct(job_id, completion_log=True)
        return None

    def _sacct(self, job_id: str, completion_log: bool) -> JobInfo | None:
        args = ["-X", "-n", "-P", "-j", job_id, "-o", ",".join(SACCT_FIELDS)]
        if completion_log:
            args.insert(0, "-c")
        result = self.commands.run("sacct", args)
        text = (result.stdout + result.stderr).lower()
        if not completion_log:
            if _ACCOUNTING_OFF in text:
                self._sacct_ok = False
                return None
            if result.returncode == 0:
                self._sacct_ok = True
        if result.returncode != 0:
            return None
        rows = [row for row in parse_sacct(result.stdout) if row.job_id == job_id]
        return rows[-1] if rows else None

    def _to_status(self, job: _Job, info: JobInfo) -> RunStatus:
        state, message = run_state(info, job.gpus_asked)
        if job.cancel_requested and state in (RunState.FAILED, RunState.CANCELLED):
            state, message = RunState.CANCELLED, "Cancelled (scancel)."
        # A job cancelled while pending has Start = End and no node: it never ran.
        began = state not in (RunState.QUEUED, RunState.STARTING) and info.batch_host is not None
        node = self._node_name(info.batch_host) if began else None
        local = node == self.hostname
        pids: tuple[int, ...] = ()
        indices: tuple[int, ...] = ()
        if state is RunState.RUNNING and local:
            pids = self._pids(job)
            indices = self._gpu_indices(job)
        elif local and job.gpu_indices:
            indices = job.gpu_indices
        exit_code = info.exit_code if state.finished else None
        if state is RunState.SUCCEEDED and exit_code is None:
            exit_code = 0
        return RunStatus(
            state=state,
            exit_code=exit_code,
            started=info.started if began else None,
            ended=info.ended if state.finished else None,
            pids=pids,
            node=node,
            gpu_indices=indices,
            message=message,
            job=job.job_id,
            allocated_gpus=info.gpus if began else None,
        )

    def _node_name(self, host: str | None) -> str | None:
        """Slurm's node name, or this machine's own name when the job runs here (so that
        Costmeter treats it as local and its samplers see the job's processes)."""
        if host is None:
            return None
        if host.lower() in self._local_names:
            return self.hostname
        return host

    def _pids(self, job: _Job) -> tuple[int, ...]:
        now = time.monotonic()
        if now - job.pids_at < self.options.poll_interval_s:
            return job.pids
        result = self.commands.run("scontrol", ["listpids", job.job_id])
        found = (
            [pid for pid, _step in parse_listpids(result.stdout)] if result.returncode == 0 else []
        )
        # An empty answer is not kept: the job's first process may not have started yet.
        job.pids, job.pids_at = _top_first(found), (now if found else float("-inf"))
        return job.pids

    def _gpu_indices(self, job: _Job) -> tuple[int, ...]:
        if job.gpu_indices is None:
            result = self.commands.run("scontrol", ["show", "job", "-d", "-o", job.job_id])
            job.gpu_indices = gpu_indices(result.stdout) if result.returncode == 0 else ()
        return job.gpu_indices

    # -- logs -----------------------------------------------------------------------------------

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        job = self._job(handle)
        finished = self.status(handle).state.finished
        path = job.output
        data = b""
        if path is not None:
            try:
                with open(path, "rb") as stream:
                    stream.seek(offset)
                    data = stream.read(LOG_CHUNK)
            except FileNotFoundError:
                data = b""
            except OSError as exc:
                raise BackendError(f"Cannot read the job's output {path}: {exc}.") from None
        at_end = len(data) < LOG_CHUNK
        text, used = _decode(data, final=finished and at_end)
        return LogChunk(text, offset + used, complete=finished and at_end and used == len(data))

    # -- cancel ---------------------------------------------------------------------------------

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        job = self._job(handle)
        job.cancel_requested = True
        if job.run_dir is not None and job.run_dir.is_dir():
            with contextlib.suppress(OSError):
                (job.run_dir / CANCEL_MARK).touch()
        if job.final is not None:
            return
        info = self._queued_info(job, fresh=True)
        if info is None or is_finished(info.state):
            return
        if info.state != "RUNNING":
            self._scancel([job.job_id])
            return
        self._scancel(["--full", "--signal=TERM", job.job_id])
        deadline = time.monotonic() + max(grace_s, 0.0)
        while time.monotonic() < deadline:
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))
            info = self._queued_info(job, fresh=True)
            if info is None or info.state != "RUNNING":
                break
        if info is not None and not is_finished(info.state):
            self._scancel([job.job_id])

    def _scancel(self, args: list[str]) -> None:
        result = self.commands.run("scancel", args)
        if result.returncode != 0:
            message = message_of(result)
            if not any(word in message for word in _GONE):
                raise BackendError(f"scancel failed: {message}")

    def close(self) -> None:
        """Nothing to release: the jobs belong to Slurm and go on."""


def _top_first(pids: list[int]) -> tuple[int, ...]:
    """The job's processes with those whose parent is not among them (the tops) first."""
    members = set(pids)
    tops = [pid for pid in pids if _ppid(pid) not in members]
    rest = [pid for pid in pids if pid not in tops]
    return tuple(sorted(tops) + sorted(rest))


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def _decode(data: bytes, final: bool) -> tuple[str, int]:
    """Decode UTF-8, holding back a character cut at the end unless this is the last read."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data, final=final)
    pending = len(decoder.getstate()[0])
    return text, len(data) - pending
