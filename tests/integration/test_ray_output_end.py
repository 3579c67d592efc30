"""The Ray backend: a run's last output line reaches the caller before its end does, without
a cluster (Costmeter's worker and the plugin together, so the test lives here rather than in
the plugin, whose tests may import only the public API).

The Ray test suite once lost a run's last line ("done"): the worker that streams a run's output
reads the log one last time once ``status`` says the run finished, and ``read_logs`` answered
that read from its ``log_poll_s`` rate limit (nothing new, not complete) when the previous read
was recent, so the worker took the empty answer for the end of the output. Here the backend's
``status`` and ``read_logs`` and the node's ``NodeAgent`` are the real ones; only the transport
is direct calls instead of Ray, and the run actor's start and end report are done by hand, as
``RunActor`` does them. ``log_poll_s`` is long so that the old ordering loses the line every
time rather than now and then.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("costmeter_ray")
from costmeter_ray.backend import RayBackend, _Run
from costmeter_ray.node import LOG_FILE, NodeAgent, make_private_dir, open_private_log

from costmeter.plugin_api import (
    BackendConfig,
    Capability,
    Placement,
    RunHandle,
    RunSpec,
    RunState,
)
from costmeter.runs.events import EventKind, RunEvent
from costmeter.runs.queue import RunQueue

NS = "test-ns"
NODE_ID = "node-1"
LAST = "done: the last line"


class DirectRayBackend(RayBackend):
    """The real RayBackend, its calls to the node's agent made in-process, and submit doing
    what ``RunActor`` does on a node: start the command with its output in the node's log,
    tell the agent, wait, report the end."""

    def __init__(self, config: BackendConfig, agent: NodeAgent) -> None:
        super().__init__(config)
        self.agent = agent
        self.popens: list[subprocess.Popen[bytes]] = []

    def _connect(self) -> None:
        pass

    def _call(self, node_id: str, ns: str, method: str, *args: Any) -> Any:
        assert (node_id, ns) == (NODE_ID, NS)
        return getattr(self.agent, method)(*args)

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        key = f"run{len(self.popens)}"
        node_dir = self.agent.root / key
        make_private_dir(node_dir)
        with open_private_log(node_dir / LOG_FILE) as log:
            popen = subprocess.Popen(list(spec.argv), stdout=log, stderr=subprocess.STDOUT)
        self.popens.append(popen)
        record = {"key": key, "node": "n", "node_id": NODE_ID, "gpus": [], "pid": popen.pid,
                  "pgid": popen.pid, "log": str(node_dir / LOG_FILE), "started": time.time(),
                  "ended": None}  # fmt: skip
        self.agent.started(key, record, {})

        def report_end() -> None:
            code = popen.wait()
            self.agent.finished(key, code, time.time())

        threading.Thread(target=report_end, daemon=True).start()
        with self._lock:
            self._runs[key] = _Run(node_id=NODE_ID, node="n")
        return RunHandle("ray", key, {"namespace": NS, "address": "", "gpus": "0", "cpus": "1"})


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[DirectRayBackend]:
    agent = NodeAgent(NS, {"node_dir": str(tmp_path / "node"), "idle_exit_s": 3600})
    made = DirectRayBackend(
        BackendConfig({"namespace": NS, "log_poll_s": 30.0}, tmp_path / "state"), agent
    )
    yield made
    agent._stop.set()
    for popen in made.popens:
        popen.kill()
        popen.wait()


def wait_finished(backend: RayBackend, handle: RunHandle) -> None:
    deadline = time.monotonic() + 20
    while not backend.status(handle).state.finished:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_read_right_after_the_end_returns_the_rest(
    backend: DirectRayBackend, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = (
        f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\nprint({LAST!r})"
    )
    handle = backend.submit(RunSpec((sys.executable, "-c", code)), Placement(), {}, tmp_path)
    first = backend.read_logs(handle, 0)  # the rate limit starts now
    assert (first.text, first.complete) == ("", False)
    go.touch()
    wait_finished(backend, handle)
    chunk = backend.read_logs(handle, first.next_offset)  # well within log_poll_s
    assert (chunk.text, chunk.complete) == (LAST + "\n", True)


def test_the_last_line_of_every_run_reaches_the_caller(
    backend: DirectRayBackend, tmp_path: Path
) -> None:
    """The worker's whole path (poll, stream, final read), as ``costmeter run`` uses it."""
    assert Capability.LOGS in backend.metadata.capabilities
    queue = RunQueue(backend, stream_logs=True, poll_s=0.05)
    out: dict[int, str] = {}
    lock = threading.Lock()

    def listen(event: RunEvent) -> None:
        if event.kind is EventKind.OUTPUT:
            with lock:
                out[event.run.key] = out.get(event.run.key, "") + event.text

    queue.subscribe(listen)
    code = f"import time\nprint('first', flush=True)\ntime.sleep(0.1)\nprint({LAST!r})"
    runs = 5
    for i in range(runs):
        queue.submit(RunSpec((sys.executable, "-c", code)), run_dir=tmp_path / f"r{i}")
        assert queue.wait(timeout=30)
    assert [queue.info(k).state for k in range(1, runs + 1)] == [RunState.SUCCEEDED] * runs
    assert [out.get(k, "") for k in range(1, runs + 1)] == [f"first\n{LAST}\n"] * runs


def test_the_node_keeps_run_logs_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run_dir = tmp_path / "node" / NS / "k"
        make_private_dir(run_dir)
        with open_private_log(run_dir / LOG_FILE) as log:
            log.write(b"secret\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((run_dir / LOG_FILE).stat().st_mode) == 0o600
    assert {stat.S_IMODE(d.stat().st_mode) for d in (run_dir, run_dir.parent)} == {0o700}
