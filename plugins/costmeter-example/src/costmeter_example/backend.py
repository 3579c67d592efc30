"""An example run backend: each run is a subprocess, started behind an optional prefix.

Read it top to bottom; each step of the plugin API is here once:

1. ``API_VERSION`` on the class: which plugin API this was written for.
2. ``__init__(config)``: read options, raise ``BackendError`` with a sentence when they are bad.
3. ``submit``: start the run and return at once with a ``RunHandle`` whose ``data`` is strings.
4. ``status`` / ``read_logs`` / ``cancel``: answer for a handle, from any thread.

Only ``costmeter.plugin_api`` and the standard library are imported.
"""

from __future__ import annotations

import os
import subprocess
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
from costmeter_example import __version__


@dataclass
class _Run:
    proc: subprocess.Popen[bytes]
    started: float
    cancelled: bool = False


class ExampleBackend:
    API_VERSION = "1.0"  # the API this was written for, not costmeter's current one

    def __init__(self, config: BackendConfig) -> None:
        prefix = config.options.get("prefix", [])
        if not isinstance(prefix, list) or not all(isinstance(p, str) for p in prefix):
            raise BackendError(
                '[backends.example] prefix must be a list of strings, e.g. ["nice"].'
            )
        self._prefix: list[str] = prefix
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()  # Costmeter calls from several threads at once

    @property
    def metadata(self) -> BackendMetadata:
        return BackendMetadata(
            name="example",
            version=__version__,
            api_version=self.API_VERSION,
            description="Runs commands as subprocesses behind a configurable prefix.",
            capabilities=frozenset({Capability.CANCEL, Capability.LOGS}),
        )

    def resources(self) -> Resources:
        return Resources(cpus=float(os.cpu_count() or 1))

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        log = run_dir / "output.log"
        try:
            with open(log, "ab") as out:  # the child keeps its own copy of the file
                proc = subprocess.Popen(
                    [*self._prefix, *spec.argv],  # a list, never a shell string
                    cwd=spec.cwd,
                    env={**os.environ, **spec.env, **env},  # Costmeter's env wins
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        except FileNotFoundError as exc:
            raise BackendError(f"cannot start the run: {exc.filename!r} was not found.") from None
        except OSError as exc:
            raise BackendError(f"cannot start '{spec.argv[0]}': {exc.strerror}.") from None
        key = f"{proc.pid}-{time.time_ns()}"
        with self._lock:
            self._runs[key] = _Run(proc, time.time())
        return RunHandle(backend="example", key=key, data={"log": str(log)})

    def status(self, handle: RunHandle) -> RunStatus:
        with self._lock:
            run = self._runs.get(handle.key)
        if run is None:  # started by an earlier Costmeter process: this backend cannot know
            return RunStatus(RunState.LOST, message="The example backend forgets runs on restart.")
        code = run.proc.poll()  # also reaps the child, so no zombie stays behind
        started = run.started
        if code is None:
            return RunStatus(RunState.RUNNING, started=started, pids=(run.proc.pid,))
        if run.cancelled:
            state = RunState.CANCELLED
        else:
            state = RunState.SUCCEEDED if code == 0 else RunState.FAILED
        message = "" if code == 0 else f"Exited with code {code}."
        return RunStatus(state, exit_code=code, started=started, message=message)

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        with self._lock:
            run = self._runs.get(handle.key)
            if run is None or run.proc.poll() is not None:
                return
            run.cancelled = True
        proc = run.proc
        proc.terminate()  # SIGTERM: the run may save a checkpoint

        def force() -> None:
            if proc.poll() is None:
                proc.kill()  # SIGKILL; the next poll() reaps it

        timer = threading.Timer(grace_s, force)  # later, without blocking the caller
        timer.daemon = True
        timer.start()

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        finished = self.status(handle).state.finished  # ask first, so no output is missed
        try:
            with open(handle.data["log"], "rb") as f:
                f.seek(offset)
                data = f.read()
        except (KeyError, OSError) as exc:
            raise BackendError(f"the run's log cannot be read: {exc}.") from None
        # Offsets count bytes; this simple version may split a multi-byte character.
        text = data.decode("utf-8", errors="replace")
        return LogChunk(text, offset + len(data), complete=finished)

    def close(self) -> None:
        """Nothing to release; the runs go on."""
