"""A throwaway Ray cluster for tests: ``ray start --head`` in a temporary directory.

Use it only inside a network namespace of its own, so that every Ray connection stays on
loopback (Ray probes an outside address at start and connects over the machine's interface
otherwise)::

    unshare -n sh -c 'ip link set lo up && exec python -m pytest plugins/costmeter-ray/tests'

The ``ray_cluster`` fixture skips when the test process can see any network interface but
``lo``. Every process the cluster starts inherits a marker variable; ``stop`` kills each one
by PID (``gcs_server`` ignores SIGTERM for a long time, so it is SIGKILL), waits for them, and
raises if any is left.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import pytest

#: Every process of a test cluster has this variable in its environment.
MARK_ENV = "COSTMETER_RAY_TEST_MARK"


def only_loopback() -> bool:
    """Whether this process sees no network interface but loopback (a namespace of its own)."""
    return set(psutil.net_if_addrs()) <= {"lo"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRayCluster:
    """``ray start --head`` on 127.0.0.1 with logical GPUs and token auth, in a temp dir."""

    def __init__(
        self,
        *,
        num_cpus: int = 4,
        num_gpus: int = 2,
        env: Mapping[str, str] | None = None,
        mark: str | None = None,
    ) -> None:
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.mark = mark or os.environ.get(MARK_ENV) or secrets.token_hex(8)
        self.dir = Path(tempfile.mkdtemp(prefix="crt-", dir="/tmp"))  # short: socket paths
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = secrets.token_hex(16)
        #: What a client needs in its environment to talk to the cluster.
        self.client_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        tmp = self.dir / "tmp"
        tmp.mkdir()
        self.env = {
            **os.environ,
            **self.client_env,
            "HOME": str(self.dir),  # nothing is written to the real ~/.ray
            "TMPDIR": str(tmp),
            MARK_ENV: self.mark,
            "RAY_USAGE_STATS_ENABLED": "0",
            **(env or {}),
        }
        self._starter: subprocess.Popen[bytes] | None = None
        self.start_s = 0.0

    def start(self) -> LocalRayCluster:
        ray_cli = Path(sys.executable).with_name("ray")
        command = [
            str(ray_cli) if ray_cli.exists() else "ray",
            "start",
            "--head",
            f"--port={self.port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--num-cpus={self.num_cpus}",
            f"--num-gpus={self.num_gpus}",
            "--disable-usage-stats",
            f"--temp-dir={self.dir / 'ray'}",
        ]
        begun = time.monotonic()
        log = open(self.dir / "ray-start.log", "wb")  # noqa: SIM115 - closed below
        with log:
            self._starter = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = self._starter.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.stop(check=False)
                raise RuntimeError("`ray start` did not finish within 90 s.") from None
        self.start_s = time.monotonic() - begun
        if code != 0:
            out = (self.dir / "ray-start.log").read_text(errors="replace")
            self.stop(check=False)
            raise RuntimeError(f"`ray start` failed with exit code {code}:\n{out[-3000:]}")
        atexit.register(self.stop, check=False)
        return self

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: marked ones, and the children of those."""
        found: dict[int, psutil.Process] = {}
        me = psutil.Process()
        spared = {me.pid, *(p.pid for p in me.parents())}
        for proc in psutil.process_iter(["pid"]):
            if proc.pid in spared:
                continue
            try:
                if proc.environ().get(MARK_ENV) == self.mark:
                    found[proc.pid] = proc
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        for proc in list(found.values()):
            try:
                for kid in proc.children(recursive=True):
                    if kid.pid not in spared:
                        found.setdefault(kid.pid, kid)
            except psutil.Error:
                continue
        alive = []
        for proc in found.values():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                continue
        return alive

    def stop(self, check: bool = True, timeout_s: float = 30.0) -> None:
        """SIGKILL every process of the cluster, wait until they are gone, remove the dir."""
        deadline = time.monotonic() + timeout_s
        left: list[psutil.Process] = []
        while time.monotonic() < deadline:
            left = self.processes()
            if not left:
                break
            for proc in left:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
            psutil.wait_procs(left, timeout=2.0)
        if self._starter is not None and self._starter.poll() is None:
            self._starter.kill()
            self._starter.wait()
        _remove_tree(self.dir)
        if check and left:
            names = ", ".join(f"{p.pid} {_name(p)}" for p in left)
            raise AssertionError(f"Ray test cluster processes outlived stop(): {names}")


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# -- the pytest fixture ------------------------------------------------------------------------

_shared: LocalRayCluster | None = None
_users = 0
_lock = threading.Lock()

#: The cluster's environment: simulated GPUs on its node, for node samples.
CLUSTER_ENV = {
    "COSTMETER_SIMULATE": "a100,h100",
    "COSTMETER_SEED": "7",
    "COSTMETER_NODE_NAME": "ray-test-node",
}


def _acquire() -> LocalRayCluster:
    global _shared, _users
    with _lock:
        if _shared is None:
            extra = dict(CLUSTER_ENV)
            src = str(Path(__file__).resolve().parents[1])
            extra["PYTHONPATH"] = os.pathsep.join(
                p for p in (src, os.environ.get("PYTHONPATH", "")) if p
            )
            _shared = LocalRayCluster(env=extra).start()
        _users += 1
        return _shared


def _release() -> None:
    global _shared, _users
    with _lock:
        _users -= 1
        if _users > 0 or _shared is None:
            return
        cluster, _shared = _shared, None
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster.stop(check=True)


def require_loopback_only() -> None:
    """Skip the calling test unless this process is in a network namespace of its own."""
    if not only_loopback():
        pytest.skip(
            "Ray tests run only inside a network namespace of their own: "
            "unshare -n sh -c 'ip link set lo up && exec python -m pytest ...'"
        )


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """One cluster for the session (shared by every module that imports this fixture); the
    test process gets the client variables, and at the end every cluster process is killed."""
    require_loopback_only()
    cluster = _acquire()
    saved = {k: os.environ.get(k) for k in cluster.client_env}
    os.environ.update(cluster.client_env)
    try:
        yield cluster
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _release()
