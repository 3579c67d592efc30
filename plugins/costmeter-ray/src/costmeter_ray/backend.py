"""The ``ray`` backend: each run is a Ray actor that asks for the run's GPUs and CPUs.

Options (``[backends.ray]`` in Costmeter's config file):

``address``
    The cluster's GCS address (``"10.0.0.5:6379"``, or ``"auto"``). Without it Costmeter
    starts a Ray instance of its own (``ray.init``), which lives as long as Costmeter.
``namespace``
    The Ray namespace of the actors (default ``"costmeter"``).
``num_cpus``, ``num_gpus``
    What a Ray instance of Costmeter's own declares (without ``address`` only).
``log_poll_s``
    The least time between two reads of one run's log from its node (default 0.25 s);
    ``read_logs`` called sooner returns nothing new, without a call to the cluster. Once
    ``status`` has said the run finished, every read goes to the node: the caller is
    collecting the end of the output, and an empty answer would tell it there is none.
``node_dir``
    Where runs keep their files on each node (default ``$TMPDIR/costmeter-ray``).
``sample_interval_s``
    Seconds between node samples (default 1).
``connect_timeout_s``
    How long to wait for the cluster's address to answer (default 5).

Ray is imported on first use only, so listing backends stays fast. Actors are *detached*:
a run goes on when Costmeter exits, and a Costmeter that starts again finds it by its name
(the handle's key). Run actors exit as soon as their command ends, which returns their GPUs
to Ray; what remains (the record, the log, the node's samples) is kept by the node's agent
(``costmeter_ray.node``).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from costmeter_ray import __version__
from costmeter_ray.messages import (
    check_reachable,
    connect_error,
    count,
    first_line,
    num,
    status_from,
)

log = logging.getLogger("costmeter_ray")

DEFAULT_NAMESPACE = "costmeter"
#: Seconds a call to a node agent may take before Costmeter gives up on it.
CALL_TIMEOUT_S = 20.0
#: How long a run the node took for lost, whose run actor still lives, waits for the actor to
#: report its exit code before it counts as lost.
LATE_END_S = 30.0
#: Seconds a first ``where`` question may take before a run counts as waiting for resources.
PROBE_WAIT_S = 2.0


@dataclass
class _Run:
    """What this process knows about one run beyond its handle."""

    actor: Any = None
    probe: Any = None
    node_id: str | None = None
    node: str | None = None
    gpus: tuple[int, ...] = ()
    cancelled_before_start: bool = False
    #: Why the actor died before saying where it runs (its constructor failed), if it did.
    died: str = ""
    #: When its log was last read from the node (``log_poll_s`` spaces the reads).
    log_read_at: float = float("-inf")
    #: Whether a status has said it finished (its log is then always read, see log_poll_s).
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Connection:
    """The process's one connection to Ray, shared by every RayBackend in it."""

    lock = threading.Lock()
    address: str | None = None
    users = 0


class RayBackend:
    API_VERSION = "1.1"

    def __init__(self, config: BackendConfig | None = None) -> None:
        config = config or BackendConfig()
        opts = config.options
        self.address = _opt_str(opts, "address")
        self.namespace = _opt_str(opts, "namespace") or DEFAULT_NAMESPACE
        self.num_cpus = _opt_number(opts, "num_cpus")
        self.num_gpus = _opt_number(opts, "num_gpus")
        self.log_poll_s = _opt_number(opts, "log_poll_s")
        if self.log_poll_s is None:
            self.log_poll_s = 0.25
        self.sample_interval_s = _opt_number(opts, "sample_interval_s") or 1.0
        self.connect_timeout_s = _opt_number(opts, "connect_timeout_s") or 5.0
        self.node_dir = _opt_str(opts, "node_dir")
        if self.address is not None and (self.num_cpus is not None or self.num_gpus is not None):
            raise BackendError(
                "[backends.ray] num_cpus and num_gpus are for a Ray instance of Costmeter's own; "
                "leave them out when address is set (the cluster declares its resources)."
            )
        self.state_dir = Path(config.state_dir)
        self.node_sampler = getattr(config, "node_sampler", None)
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._connected = False
        self._closed = False
        self._free_cache: tuple[float, dict[str, float]] = (0.0, {})
        self._reported: set[str] = set()

    # -- metadata ---------------------------------------------------------------------------

    @property
    def metadata(self) -> BackendMetadata:
        caps = {
            Capability.GPUS,
            Capability.PLACES_GPUS,
            Capability.CANCEL,
            Capability.LOGS,
            Capability.MULTI_NODE,
        }
        if self.node_sampler is not None:
            caps.add(Capability.NODE_SAMPLES)
        where = self.address or "a Ray instance of Costmeter's own"
        return BackendMetadata(
            name="ray",
            version=__version__,
            api_version=self.API_VERSION,
            description=f"Runs commands as Ray actors on {where}.",
            capabilities=frozenset(caps),
        )

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._connected:
            return
        if self._closed:
            raise BackendError("This Ray backend was closed; make a new one.")
        address = self.address
        if address is not None and address != "auto" and "://" not in address:
            check_reachable(address, self.connect_timeout_s)
        with _Connection.lock:
            want = self.address or "(local)"
            import ray

            if ray.is_initialized():
                if _Connection.address not in (None, want):
                    raise BackendError(
                        f"This Costmeter process is already connected to the Ray cluster at "
                        f"{_Connection.address}; one process can use one Ray cluster at a time."
                    )
            else:
                self._init_ray(ray)
                _Connection.address = want
            _Connection.users += 1
            self._connected = True

    def _init_ray(self, ray: Any) -> None:
        address = self.address
        kwargs: dict[str, Any] = {
            "log_to_driver": False,
            "logging_level": "ERROR",
            "configure_logging": False,
        }
        if address is None:  # a new instance, even if a cluster runs on this machine
            kwargs.update(address="local", include_dashboard=False)
            if self.num_cpus is not None:
                kwargs["num_cpus"] = int(self.num_cpus)
            if self.num_gpus is not None:
                kwargs["num_gpus"] = int(self.num_gpus)
        else:
            kwargs["address"] = address
        # Ray retries a cluster that answers but refuses it (a wrong token) for 60 s by default.
        wait_env = "RAY_gcs_server_port_wait_time_s"
        set_wait = address is not None and wait_env not in os.environ
        if set_wait:
            os.environ[wait_env] = str(max(2, round(self.connect_timeout_s)))
        try:
            ray.init(**kwargs)
        except Exception as exc:
            raise connect_error(address, exc) from None
        finally:
            if set_wait:
                os.environ.pop(wait_env, None)

    def close(self) -> None:
        """Drop this backend's share of the connection; the last one shuts it down.

        Runs go on: their actors are detached (with a Ray instance of Costmeter's own, they
        end with it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connected, self._connected = self._connected, False
        if not connected:
            return
        with _Connection.lock:
            _Connection.users -= 1
            if _Connection.users <= 0:
                import ray

                with contextlib.suppress(Exception):
                    ray.shutdown()
                _Connection.address = None
                _Connection.users = 0

    # -- resources --------------------------------------------------------------------------

    def resources(self) -> Resources:
        self._connect()
        nodes = self._alive_nodes()
        gpus = sum(n.get("Resources", {}).get("GPU", 0.0) for n in nodes)
        cpus = sum(n.get("Resources", {}).get("CPU", 0.0) for n in nodes)
        names = tuple(sorted({str(n.get("NodeManagerHostname", "?")) for n in nodes}))
        return Resources(gpus=int(gpus), cpus=float(cpus), nodes=names)

    def _alive_nodes(self) -> list[dict[str, Any]]:
        import ray

        return [n for n in ray.nodes() if n.get("Alive")]

    def _check_fits(self, spec: RunSpec) -> None:
        """Refuse a run no node of the cluster could ever hold (it would wait forever)."""
        nodes = self._alive_nodes()
        where = self.address or "started by Costmeter"
        for what, need, unit in (("GPU", spec.gpus, "GPUs"), ("CPU", spec.cpus, "CPUs")):
            if not need:
                continue
            per_node = [float(n.get("Resources", {}).get(what, 0.0)) for n in nodes]
            most = max(per_node, default=0.0)
            if most >= need:
                continue
            total = sum(per_node)
            count = f"{num(total)} {unit} in all" if total else f"no {unit}"
            across = f" on {len(nodes)} nodes, at most {num(most)} on one" if len(nodes) > 1 else ""
            raise BackendError(
                f"This run asks for {num(need)} {unit}, but the Ray cluster ({where}) has "
                f"{count}{across}; a run cannot span nodes, so it would wait forever. Ask for "
                f"at most {num(most)}, or add a node with more {unit}."
            )

    # -- submit -----------------------------------------------------------------------------

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        self._connect()
        bad = [k for k, v in {**spec.env, **env}.items() if not isinstance(v, str)]
        if bad:
            raise BackendError(f"environment variable {bad[0]!r} must be a string.")
        self._check_fits(spec)
        from costmeter_ray.node import RunActor, run_actor_name

        key = uuid.uuid4().hex[:20]
        # Costmeter's variables win over the run's; CUDA_VISIBLE_DEVICES is Ray's to set.
        run_env = {**spec.env, **env}
        run_env.pop("CUDA_VISIBLE_DEVICES", None)
        remote = _remote_class(RunActor)
        try:
            actor = remote.options(
                name=run_actor_name(key),
                namespace=self.namespace,
                lifetime="detached",
                num_cpus=spec.cpus,
                num_gpus=spec.gpus,
                max_restarts=0,
                max_concurrency=2,
            ).remote(
                key,
                self.namespace,
                list(spec.argv),
                run_env,
                spec.cwd,
                os.getcwd(),
                self._agent_options(),
            )
            probe = actor.where.remote()
        except Exception as exc:
            raise BackendError(f"Ray refused the run: {type(exc).__name__}: {exc}") from None
        with self._lock:
            self._runs[key] = _Run(actor=actor, probe=probe)
        data = {
            "namespace": self.namespace,
            "address": self.address or "",
            "gpus": str(spec.gpus),
            "cpus": repr(spec.cpus),
            "submitted": repr(time.time()),
        }
        return RunHandle(backend="ray", key=key, data=data)

    def _agent_options(self) -> dict[str, Any]:
        return {
            "node_dir": self.node_dir,
            "node_sampler": self.node_sampler,
            "sample_interval_s": self.sample_interval_s,
        }

    # -- status -----------------------------------------------------------------------------

    def status(self, handle: RunHandle) -> RunStatus:
        status = self._status(handle)
        if status.state.finished:
            self._run(handle).finished = True
        return status

    def _status(self, handle: RunHandle) -> RunStatus:
        self._connect()
        run = self._run(handle)
        ns = handle.data.get("namespace", self.namespace)
        if run.node_id is None:
            with run.lock:
                waiting = self._locate(handle, run, ns)
            if waiting is not None:
                return waiting
        rec = self._record(handle, run, ns)
        if rec is None:
            if run.cancelled_before_start:
                return RunStatus(RunState.CANCELLED, message="Cancelled before it started.")
            if run.node_id is not None and self._actor(handle.key, ns) is not None:
                return RunStatus(
                    RunState.STARTING, node=run.node, gpu_indices=run.gpus, message="Starting."
                )
            if run.died:
                return RunStatus(
                    RunState.FAILED, message=f"Its Ray actor could not start: {run.died}"
                )
            return RunStatus(
                RunState.LOST,
                message="Its Ray actor is gone and no node of the cluster has a record of it "
                "(the node may have left the cluster, or the cluster was restarted).",
            )
        if self._end_not_yet_reported(handle, rec, ns):
            return status_from({**rec, "ended": None})
        return status_from(rec)

    def _end_not_yet_reported(self, handle: RunHandle, rec: dict[str, Any], ns: str) -> bool:
        """Whether the node's agent took the run for lost (its process gone a second with no end
        reported) while its run actor still lives: a busy machine can delay the actor's report
        of the exit code by more than that second, and the run is not over before it comes
        (or ``LATE_END_S`` passes, or the actor dies)."""
        ended = rec.get("ended")
        if ended is None or rec.get("exit_code") is not None or rec.get("end_known", True):
            return False
        if rec.get("started") is None or rec.get("cancel_requested"):
            return False
        if time.time() - float(ended) >= LATE_END_S:
            return False
        return self._actor(handle.key, ns) is not None

    def _run(self, handle: RunHandle) -> _Run:
        with self._lock:
            run = self._runs.get(handle.key)
            if run is None:
                run = self._runs[handle.key] = _Run()
                saved = self._load_state(handle.key)
                run.node_id = saved.get("node_id")
                run.node = saved.get("node")
                run.gpus = tuple(saved.get("gpus", ()))
                run.cancelled_before_start = bool(saved.get("cancelled_before_start"))
            return run

    def _locate(self, handle: RunHandle, run: _Run, ns: str) -> RunStatus | None:
        """Find the node the run is on; a status while it still waits for resources."""
        import ray

        if run.cancelled_before_start:
            return None
        if run.actor is None:
            run.actor = self._actor(handle.key, ns)
        if run.actor is not None:
            wait_s = 0.0
            if run.probe is None:  # a fresh question: give a live actor time to answer it
                run.probe = run.actor.where.remote()
                wait_s = PROBE_WAIT_S
            ready, _ = ray.wait([run.probe], timeout=wait_s)
            if not ready:
                return RunStatus(RunState.QUEUED, message=self._waiting_message(handle))
            try:
                where = ray.get(run.probe)
            except Exception as exc:  # it exited before answering (or failed): ask the nodes
                if not isinstance(exc, ray.exceptions.ActorDiedError) or "exit_actor" not in str(
                    exc
                ):
                    run.died = first_line(exc)
                run.actor = run.probe = None
            else:
                self._located(handle.key, run, where)
                return None
        found = self._scan_agents(handle.key, ns)
        if found is not None:
            self._located(handle.key, run, found)
        return None

    def _located(self, key: str, run: _Run, where: Mapping[str, Any]) -> None:
        run.node_id = str(where["node_id"])
        run.node = str(where.get("node") or "") or None
        run.gpus = tuple(int(g) for g in where.get("gpus", ()))
        self._save_state(key, run)

    def _waiting_message(self, handle: RunHandle) -> str:
        gpus = int(handle.data.get("gpus", "0") or 0)
        cpus = float(handle.data.get("cpus", "1") or 1)
        want = [count(gpus, "GPU")] if gpus else []
        want.append(count(cpus, "CPU"))
        free = self._free()
        have = f"{count(free.get('GPU', 0.0), 'GPU')} and {count(free.get('CPU', 0.0), 'CPU')}"
        return f"Waiting for {' and '.join(want)} on the Ray cluster ({have} free now)."

    def _free(self) -> dict[str, float]:
        import ray

        stamp, cached = self._free_cache
        if time.monotonic() - stamp > 1.0:
            with contextlib.suppress(Exception):
                cached = dict(ray.available_resources())
            self._free_cache = (time.monotonic(), cached)
        return cached

    def _actor(self, key: str, ns: str) -> Any:
        import ray

        from costmeter_ray.node import run_actor_name

        try:
            return ray.get_actor(run_actor_name(key), namespace=ns)
        except ValueError:
            return None

    def _agent(self, node_id: str, ns: str, create: bool = True) -> Any:
        import ray

        from costmeter_ray.node import agent_name, get_agent

        try:
            return ray.get_actor(agent_name(node_id), namespace=ns)
        except ValueError:
            pass
        if not create or not any(n.get("NodeID") == node_id for n in self._alive_nodes()):
            return None
        return get_agent(node_id, ns, self._agent_options())

    def _call(self, node_id: str, ns: str, method: str, *args: Any) -> Any:
        """Call the node's agent, making a new one if it exited; None if the node is gone."""
        import ray

        for attempt in range(3):
            agent = self._agent(node_id, ns)
            if agent is None:
                return None
            try:
                return ray.get(getattr(agent, method).remote(*args), timeout=CALL_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                raise BackendError(
                    f"The Costmeter agent on Ray node {node_id[:12]} did not answer within "
                    f"{CALL_TIMEOUT_S:.0f} s; the node may be overloaded."
                ) from None
            except ray.exceptions.RayActorError:
                if attempt == 2:
                    return None
                time.sleep(0.2)  # it exited (idle) as we asked: ask a new one
        return None

    def _record(self, handle: RunHandle, run: _Run, ns: str) -> dict[str, Any] | None:
        if run.node_id is None:
            return None
        rec = self._call(run.node_id, ns, "record", handle.key)
        return rec if isinstance(rec, dict) else None

    def _scan_agents(self, key: str, ns: str) -> dict[str, Any] | None:
        """Ask every node's agent about a run whose node is not known here."""
        import ray

        from costmeter_ray.node import agent_name

        for node in self._alive_nodes():
            node_id = str(node.get("NodeID"))
            try:
                agent = ray.get_actor(agent_name(node_id), namespace=ns)
                got: Any = ray.get(agent.record.remote(key), timeout=CALL_TIMEOUT_S)
            except Exception:
                continue
            rec = got if isinstance(got, dict) else None
            if rec:
                return {"node_id": node_id, "node": rec.get("node"), "gpus": rec.get("gpus", ())}
        return None

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        """SIGTERM to the run's process group, SIGKILL after ``grace_s`` (done on its node);
        a run still waiting for resources is taken off Ray's queue."""
        self._connect()
        import ray

        run = self._run(handle)
        ns = handle.data.get("namespace", self.namespace)
        with run.lock:
            if run.node_id is None and self._locate(handle, run, ns) is not None:
                # Still waiting for resources: take it off Ray's queue. Should it start in
                # this very moment, its command dies with the actor (PR_SET_PDEATHSIG).
                with contextlib.suppress(Exception):
                    ray.kill(run.actor, no_restart=True)
                run.cancelled_before_start = True
                run.actor = run.probe = None
                self._save_state(handle.key, run)
                return
        if run.node_id is None:
            return  # gone already
        self._call(run.node_id, ns, "cancel", handle.key, float(grace_s))

    # -- logs -------------------------------------------------------------------------------

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        """Bytes of the run's log on its node from ``offset`` (offsets count bytes)."""
        self._connect()
        run = self._run(handle)
        now = time.monotonic()
        if not run.finished and now - run.log_read_at < (self.log_poll_s or 0.0):
            return LogChunk("", offset)
        run.log_read_at = now
        status = self.status(handle)
        ns = handle.data.get("namespace", self.namespace)
        if run.node_id is None:
            return LogChunk("", offset, complete=status.state.finished)
        got = self._call(run.node_id, ns, "read_log", handle.key, offset)
        if got is None:
            if status.state.finished:
                return LogChunk("", offset, complete=True)
            raise BackendError(f"The run's log on {run.node or 'its node'} cannot be reached.")
        if "error" in got:
            if got["error"] == "unknown":
                return LogChunk("", offset, complete=status.state.finished)
            raise BackendError(str(got["error"]))
        data: bytes = got["data"]
        last = bool(got["finished"] and got["at_end"])
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = decoder.decode(data, final=last)
        held_back = len(decoder.getstate()[0])  # a character cut in half waits for the next call
        return LogChunk(text, offset + len(data) - held_back, complete=last)

    # -- node samples (plugin API 1.1) ------------------------------------------------------

    def node_samples(self, handle: RunHandle, since_ts: float = 0.0) -> list[dict[str, Any]]:
        """The samples of the node the run is on taken after ``since_ts`` (all runs of that
        node share them), as Costmeter's node sampler made them; empty without one."""
        if self.node_sampler is None:
            return []
        self._connect()
        run = self._run(handle)
        ns = handle.data.get("namespace", self.namespace)
        if run.node_id is None:
            self.status(handle)
        if run.node_id is None:
            return []
        got = self._call(run.node_id, ns, "samples", float(since_ts))
        if not got:
            return []
        error = str(got.get("error") or "")
        if error and error not in self._reported:
            self._reported.add(error)
            log.warning("Costmeter's sampler on Ray node %s: %s", run.node, error)
        return list(got.get("samples", ()))

    # -- state kept across restarts ---------------------------------------------------------

    def _state_path(self, key: str) -> Path:
        return self.state_dir / "runs" / f"{key}.json"

    def _save_state(self, key: str, run: _Run) -> None:
        data = {
            "node_id": run.node_id,
            "node": run.node,
            "gpus": list(run.gpus),
            "cancelled_before_start": run.cancelled_before_start,
        }
        path = self._state_path(key)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))

    def _load_state(self, key: str) -> dict[str, Any]:
        try:
            data = json.loads(self._state_path(key).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


# -- helpers ---------------------------------------------------------------------------------

_remote_classes: dict[type, Any] = {}


def _remote_class(cls: type) -> Any:
    import ray

    if cls not in _remote_classes:
        _remote_classes[cls] = ray.remote(cls)
    return _remote_classes[cls]


def _opt_str(opts: Mapping[str, object], name: str) -> str | None:
    value = opts.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BackendError(f"[backends.ray] {name} must be a non-empty string.")
    return value.strip()


def _opt_number(opts: Mapping[str, object], name: str) -> float | None:
    value = opts.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BackendError(f"[backends.ray] {name} must be a number of zero or more.")
    return float(value)
