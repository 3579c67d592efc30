"""A real single-node Slurm cluster for tests: Debian's ``slurm-wlm`` and ``munge``, on loopback.

``SlurmCluster(tmp_path, gpus=4)`` writes ``slurm.conf`` and ``gres.conf``, starts ``munged``
with a key and socket of its own, then ``slurmctld`` and ``slurmd`` in the foreground (``-D``)
as root, and waits until the node is idle. ``.env`` is the environment Slurm's commands need
(``SLURM_CONF``); leaving the block cancels what is still queued or running and stops every
daemon by its pid.

What this machine taught (slurm-wlm 22.05.8, munge 0.5.15):

- gres/gpu without ``File=`` is dropped by slurmd ("Removing file-less GPU") and the node goes
  INVAL. Each GPU is declared with ``File=`` pointing at a symlink to ``/dev/null`` in the
  cluster's directory (slurmd wants a character device). Slurm then sets
  ``CUDA_VISIBLE_DEVICES`` (and ``SLURM_JOB_GPUS``) for a ``--gres=gpu:N`` job, e.g. ``0,1``.
- With no slurmdbd, ``AccountingStorageType=accounting_storage/none`` makes plain ``sacct``
  answer "Slurm accounting storage is disabled"; ``JobCompType=jobcomp/filetxt`` lets
  ``sacct -c`` read finished jobs from the completion file, and ``scontrol show job`` keeps a
  finished job for ``MinJobAge`` seconds (300 here).
- munged refuses a socket in a directory others cannot enter (0755 needed), and a socket path
  has at most 107 bytes, so the runtime files (socket, spool, state) live in a short
  directory under /tmp; the config and the logs go to ``tmp_path``.

Two clusters side by side do not collide: ports are free loopback ports picked at start,
directories are private, and the cluster name is unique.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "scontrol", "scancel")
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_hostname() -> str:
    return socket.gethostname().split(".")[0]


class SlurmCluster:
    """A throwaway Slurm controller plus one node (this machine) with ``gpus`` generic GPUs."""

    def __init__(self, tmp_path: Path, gpus: int = 4, cpus: int | None = None) -> None:
        self.dir = Path(tmp_path) / "slurm"
        self.gpus = gpus
        self.cpus = cpus or os.cpu_count() or 1
        self.node = short_hostname()
        self.partition = "costmeter"
        self.cluster_name = "cm" + uuid.uuid4().hex[:10]
        self.conf_path = self.dir / "slurm.conf"
        self.env: dict[str, str] = {}
        self._run: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- availability -------------------------------------------------------------------------

    @staticmethod
    def available() -> str | None:
        """``None`` when a cluster can start here, else the reason it cannot (for skips)."""
        missing = [name for name in BINARIES if _which(name) is None]
        if missing:
            return (
                "Slurm and munge are not installed (missing: " + ", ".join(missing) + "); "
                "install Debian's slurm-wlm and munge"
            )
        if os.geteuid() != 0:
            return "a test Slurm cluster needs root (slurmd runs jobs as their users)"
        return None

    # -- start / stop ---------------------------------------------------------------------------

    def __enter__(self) -> SlurmCluster:
        reason = self.available()
        if reason is not None:
            raise RuntimeError(reason)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._run = Path(tempfile.mkdtemp(prefix="cmslurm-", dir="/tmp"))
        try:
            self._write_config()
            self.env = self._make_env()
            self._start_munged()
            self._start("slurmctld", [_bin("slurmctld"), "-D", "-f", str(self.conf_path)])
            self._start("slurmd", [_bin("slurmd"), "-D", "-f", str(self.conf_path)])
            self._wait_idle()
        except BaseException:
            self._stop_all()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_all()

    def _write_config(self) -> None:
        assert self._run is not None
        run = self._run
        os.chmod(run, 0o755)  # munged wants everyone able to reach its socket
        for sub in ("state", "spool", "gpus"):
            (run / sub).mkdir()
        key = run / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(128))
        for index in range(self.gpus):
            os.symlink("/dev/null", run / "gpus" / f"gpu{index}")
        ctld_port, slurmd_port = _free_port(), _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        self.ctld_port, self.slurmd_port = ctld_port, slurmd_port
        gres = f"Gres=gpu:{self.gpus}" if self.gpus else ""
        lines = [
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={run / 'munge.sock'}",
            f"StateSaveLocation={run / 'state'}",
            f"SlurmdSpoolDir={run / 'spool'}",
            f"SlurmctldPidFile={run / 'slurmctld.pid'}",
            f"SlurmdPidFile={run / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.dir / 'slurmd.log'}",
            "MailProg=/bin/true",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmdParameters=config_overrides",
            "GresTypes=gpu",
            "MpiDefault=none",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            # Start jobs as soon as they are submitted (Slurm's default waits up to 3 s).
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.dir / 'jobcomp.txt'}",
            "JobAcctGatherType=jobacct_gather/linux",
            "MinJobAge=300",
            "OverTimeLimit=0",
            "KillWait=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} {gres} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES "
            "MaxTime=INFINITE State=UP",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")
        gres_lines = []
        if self.gpus:
            last = self.gpus - 1
            files = run / "gpus" / (f"gpu[0-{last}]" if last else "gpu0")
            gres_lines.append(f"NodeName={self.node} Name=gpu File={files}")
        (self.dir / "gres.conf").write_text("\n".join(gres_lines) + "\n")

    def _make_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        env["SLURM_CONF"] = str(self.conf_path)
        return env

    def _start_munged(self) -> None:
        assert self._run is not None
        run = self._run
        self._start(
            "munged",
            [
                _bin("munged"),
                "-F",
                "-f",
                f"--socket={run / 'munge.sock'}",
                f"--key-file={run / 'munge.key'}",
                f"--pid-file={run / 'munged.pid'}",
                f"--seed-file={run / 'munged.seed'}",
                f"--log-file={self.dir / 'munged.log'}",
            ],
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (run / "munge.sock").exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("munged did not create its socket: " + self._tails())
            time.sleep(0.05)

    def _start(self, name: str, argv: list[str]) -> None:
        out = open(self.dir / f"{name}.out", "wb")  # noqa: SIM115 (kept for the process's life)
        try:
            self._procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        finally:
            out.close()

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with status {proc.returncode} at start: " + self._tails()
                )

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            result = self.command(["sinfo", "-h", "-o", "%T"], check=False)
            last = (result.stdout + result.stderr).strip()
            if last == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"the Slurm node is not idle after {START_TIMEOUT_S:.0f} s "
            f"(sinfo says {last!r}): " + self._tails()
        )

    def _tails(self) -> str:
        parts = []
        for log in ("munged.out", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.dir / log
            if path.exists():
                text = path.read_text(errors="replace").strip().splitlines()[-8:]
                parts.append(f"[{log}] " + " | ".join(text))
        return "; ".join(parts) or "(no logs)"

    def _cancel_jobs(self) -> None:
        """Cancel this cluster's jobs and wait for them to go, so no slurmstepd is left."""
        if "slurmctld" not in self._procs or self._procs["slurmctld"].poll() is not None:
            return
        self.command(["scancel", "--full", "--partition", self.partition], check=False)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            result = self.command(
                [
                    "squeue",
                    "-h",
                    "-t",
                    "PENDING,RUNNING,COMPLETING,SUSPENDED,CONFIGURING",
                    "-o",
                    "%i",
                ],
                check=False,
            )
            if result.returncode != 0 or not result.stdout.strip():
                return
            time.sleep(0.2)

    def _stop_all(self) -> None:
        try:
            self._cancel_jobs()
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                proc = self._procs.pop(name, None)
                if proc is not None:
                    _stop(proc)
            if self._run is not None:
                shutil.rmtree(self._run, ignore_errors=True)
                self._run = None

    # -- helpers for tests ----------------------------------------------------------------------

    def command(
        self, argv: list[str], check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command against this cluster."""
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    @property
    def options(self) -> Mapping[str, object]:
        """A ``[backends.slurm]`` table for this cluster."""
        return {"partition": self.partition, "slurm_conf": str(self.conf_path)}


def _bin(name: str) -> str:
    found = _which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
