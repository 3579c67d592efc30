"""Start a real ``costmeter agent`` subprocess for tests and read the URL it prints.

    agent = start_agent(tmp_path, "--simulate", "2", "--interval", "0.2")
    try:
        ... agent.url ...
    finally:
        agent.stop()

Defaults added unless given: ``--listen 127.0.0.1:0`` and ``--db tmp_path/agent-buffer.db``
(so a second agent started on the same ``tmp_path`` serves what the first one buffered).
The agent's stderr goes to ``agent.stderr_path`` (read it with ``agent.stderr()``).

Importing it: ``tests/`` is on ``sys.path`` for tests/gui (it has an ``__init__.py``), not for
tests/unit or tests/integration; there, first do
``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))``, then ``import agent_process``.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "costmeter agent listening on "


class AgentStartError(RuntimeError):
    pass


@dataclass
class AgentProcess:
    url: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    db: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait; SIGKILL if it does not stop in ``timeout``. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)


def agent_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "costmeter.cli.main", "agent", *args]


def start_agent(tmp_path: Path, *args: str, timeout: float = 30.0) -> AgentProcess:
    """Start an agent and wait for its URL line; raises AgentStartError with its stderr."""
    argv = list(args)
    if "--listen" not in argv:
        argv += ["--listen", "127.0.0.1:0"]
    db = tmp_path / "agent-buffer.db"
    if "--db" in argv:
        db = Path(argv[argv.index("--db") + 1])
    else:
        argv += ["--db", str(db)]
    tmp_path.mkdir(parents=True, exist_ok=True)
    stderr_path = tmp_path / f"agent-{time.monotonic_ns()}.stderr"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            agent_command(*argv), stdout=subprocess.PIPE, stderr=err, env=env, cwd=tmp_path
        )
    assert proc.stdout is not None
    agent = AgentProcess("", proc, stderr_path, db)
    line = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                agent.stop()
                raise AgentStartError(f"the agent printed no URL in {timeout} s: {agent.stderr()}")
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                agent.stop()
                raise AgentStartError(
                    f"the agent exited ({proc.returncode}) before listening: {agent.stderr()}"
                )
            line += chunk
    text = line.decode().strip()
    if not text.startswith(PREFIX):
        agent.stop()
        raise AgentStartError(f"unexpected first line {text!r}: {agent.stderr()}")
    agent.url = text[len(PREFIX) :]
    return agent


def run_agent(
    tmp_path: Path, *args: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run an agent that is expected to refuse to start; returns its exit code and output."""
    return subprocess.run(
        agent_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
