"""Test helpers for backend authors: fixtures and a conformance suite.

Enable the fixtures in your plugin's ``tests/conftest.py``::

    pytest_plugins = ["costmeter.plugin_testing"]

and check your backend against what Costmeter expects of every backend::

    from costmeter.plugin_testing import BackendConformance

    class TestMyBackend(BackendConformance):
        def make_backend(self, config):
            return MyBackend(config)

The checks start real commands (``sys.executable -c ...``) and expect the run to see this
machine's files, so a multi-node backend should be tested on a one-node cluster. Each check is
also a plain function (``check_success(backend, workdir)``) for use outside the class.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from costmeter.plugin_api import (
    PROGRESS_ENV,
    RUN_ID_ENV,
    Backend,
    BackendConfig,
    BackendMetadata,
    Capability,
    Placement,
    RunHandle,
    RunSpec,
    RunState,
    RunStatus,
    api_compatible,
)

__all__ = [
    "BackendConformance",
    "backend_config",
    "check_backend",
    "check_cancel",
    "check_failure",
    "check_logs_stream",
    "check_metadata",
    "check_rebuilt_handle",
    "check_success",
    "costmeter_env",
    "make_spec",
    "python_spec",
    "read_all_logs",
    "run_dir",
    "submit",
    "wait_finished",
    "wait_for_log",
]

TIMEOUT_S = 30.0


def python_spec(code: str, **fields: object) -> RunSpec:
    """A RunSpec that runs ``code`` with this Python: ``python_spec("print(1)", gpus=0)``."""
    return RunSpec(argv=(sys.executable, "-c", code), **fields)  # type: ignore[arg-type]


def costmeter_env(run_dir: Path, run_id: str = "test-run") -> dict[str, str]:
    """The variables Costmeter passes to ``submit`` for every run."""
    return {RUN_ID_ENV: run_id, PROGRESS_ENV: str(run_dir / "progress.jsonl")}


def submit(
    backend: Backend, spec: RunSpec, run_dir: Path, env: dict[str, str] | None = None
) -> RunHandle:
    """Submit as Costmeter does: a fresh run directory, Costmeter's env, no GPUs placed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return backend.submit(spec, Placement(), env or costmeter_env(run_dir), run_dir)


def wait_finished(backend: Backend, handle: RunHandle, timeout_s: float = TIMEOUT_S) -> RunStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = backend.status(handle)
        assert isinstance(status, RunStatus), f"status() returned {type(status).__name__}"
        if status.state.finished:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"the run did not finish within {timeout_s} s: {status}")
        time.sleep(0.02)


def read_all_logs(backend: Backend, handle: RunHandle, timeout_s: float = TIMEOUT_S) -> str:
    """Stream the logs until the backend says they are complete."""
    deadline, offset, parts = time.monotonic() + timeout_s, 0, []
    while True:
        chunk = backend.read_logs(handle, offset)
        assert chunk.next_offset >= offset, "next_offset went backwards"
        parts.append(chunk.text)
        offset = chunk.next_offset
        if chunk.complete:
            return "".join(parts)
        if time.monotonic() > deadline:
            raise AssertionError(f"logs were not complete within {timeout_s} s: {parts!r}")
        time.sleep(0.02)


def wait_for_log(
    backend: Backend, handle: RunHandle, text: str, timeout_s: float = TIMEOUT_S
) -> tuple[str, int]:
    """Read logs until ``text`` shows up; returns what was read and the next offset."""
    deadline, offset, seen = time.monotonic() + timeout_s, 0, ""
    while text not in seen:
        chunk = backend.read_logs(handle, offset)
        seen, offset = seen + chunk.text, chunk.next_offset
        if chunk.complete and text not in seen:
            raise AssertionError(f"the run ended without writing {text!r}: {seen!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} did not appear within {timeout_s} s: {seen!r}")
        time.sleep(0.02)
    return seen, offset


# -- the checks --------------------------------------------------------------------------------


def check_metadata(backend: Backend) -> None:
    meta = backend.metadata
    assert isinstance(meta, BackendMetadata), f"metadata is a {type(meta).__name__}"
    assert meta.name, "metadata.name is empty"
    assert api_compatible(meta.api_version), f"API {meta.api_version} is not supported"
    assert all(isinstance(c, Capability) for c in meta.capabilities)
    assert isinstance(backend, Backend), "the object lacks methods of the Backend protocol"


def check_success(backend: Backend, workdir: Path) -> None:
    """Exit code 0, Costmeter's env wins over the spec's, and the output reaches the logs."""
    code = f"import os; print('run', os.environ[{RUN_ID_ENV!r}], os.environ['CONFORMANCE'])"
    spec = python_spec(code, env={RUN_ID_ENV: "from-spec", "CONFORMANCE": "yes"})
    handle = submit(backend, spec, workdir / "success")
    status = wait_finished(backend, handle)
    assert status.state is RunState.SUCCEEDED, status
    assert status.exit_code == 0, status
    if status.started is not None and status.ended is not None:
        assert status.ended >= status.started, status
    if Capability.LOGS in backend.metadata.capabilities:
        assert "run test-run yes" in read_all_logs(backend, handle)


def check_failure(backend: Backend, workdir: Path) -> None:
    handle = submit(backend, python_spec("import sys; sys.exit(3)"), workdir / "failure")
    status = wait_finished(backend, handle)
    assert status.state is RunState.FAILED, status
    assert status.exit_code == 3, status


def check_logs_stream(backend: Backend, workdir: Path) -> None:
    """Output written while the run goes on can be read before it ends, without repeats."""
    if Capability.LOGS not in backend.metadata.capabilities:
        return
    go = workdir / "logs" / "go"
    code = (
        "import os, time\nprint('first', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\nprint('second')"
    )
    handle = submit(backend, python_spec(code), workdir / "logs")
    seen, offset = wait_for_log(backend, handle, "first")
    assert backend.status(handle).state is RunState.RUNNING, "the run ended too early"
    go.touch()
    rest = ""
    while True:
        chunk = backend.read_logs(handle, offset)
        rest, offset = rest + chunk.text, chunk.next_offset
        if chunk.complete:
            break
        time.sleep(0.02)
    assert (seen + rest).count("first") == 1 and "second" in rest, (seen, rest)


def check_cancel(backend: Backend, workdir: Path, grace_s: float = 0.5) -> None:
    if Capability.CANCEL not in backend.metadata.capabilities:
        return
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    handle = submit(backend, python_spec(code), workdir / "cancel")
    if Capability.LOGS in backend.metadata.capabilities:
        wait_for_log(backend, handle, "started")
    begun = time.monotonic()
    backend.cancel(handle, grace_s=grace_s)
    status = wait_finished(backend, handle, timeout_s=grace_s + 10)
    assert status.state is RunState.CANCELLED, status
    assert time.monotonic() - begun < grace_s + 10
    backend.cancel(handle, grace_s=grace_s)  # cancelling a finished run is harmless


def check_rebuilt_handle(backend: Backend, workdir: Path) -> None:
    """A handle made from its stored key and data gives the same answer."""
    handle = submit(backend, python_spec("import sys; sys.exit(5)"), workdir / "rebuilt")
    status = wait_finished(backend, handle)
    stored = json.loads(json.dumps({"key": handle.key, "data": dict(handle.data)}))
    rebuilt = RunHandle(handle.backend, stored["key"], stored["data"])
    again = backend.status(rebuilt)
    assert (again.state, again.exit_code) == (status.state, status.exit_code), (status, again)


def check_backend(backend: Backend, workdir: Path) -> None:
    """Every check in turn, for use outside pytest classes."""
    check_metadata(backend)
    check_success(backend, workdir)
    check_failure(backend, workdir)
    check_logs_stream(backend, workdir)
    check_cancel(backend, workdir)
    check_rebuilt_handle(backend, workdir)


class BackendConformance:
    """Subclass as ``TestSomething`` and define :meth:`make_backend`."""

    #: Seconds between SIGTERM and SIGKILL in the cancel check.
    grace_s = 0.5

    def make_backend(self, config: BackendConfig) -> Backend:
        raise NotImplementedError("define make_backend(config) in your test class")

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        state = tmp_path / "state"
        state.mkdir()
        made = self.make_backend(BackendConfig(state_dir=state))
        yield made
        made.close()

    def test_metadata(self, backend: Backend) -> None:
        check_metadata(backend)

    def test_success(self, backend: Backend, tmp_path: Path) -> None:
        check_success(backend, tmp_path)

    def test_failure_exit_code(self, backend: Backend, tmp_path: Path) -> None:
        check_failure(backend, tmp_path)

    def test_logs_stream(self, backend: Backend, tmp_path: Path) -> None:
        if Capability.LOGS not in backend.metadata.capabilities:
            pytest.skip("the backend does not declare Capability.LOGS")
        check_logs_stream(backend, tmp_path)

    def test_cancel(self, backend: Backend, tmp_path: Path) -> None:
        if Capability.CANCEL not in backend.metadata.capabilities:
            pytest.skip("the backend does not declare Capability.CANCEL")
        check_cancel(backend, tmp_path, self.grace_s)

    def test_rebuilt_handle(self, backend: Backend, tmp_path: Path) -> None:
        check_rebuilt_handle(backend, tmp_path)


# -- fixtures (active with pytest_plugins = ["costmeter.plugin_testing"]) ---------------------


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """An empty directory for one run, as Costmeter makes for each."""
    path = tmp_path / "run"
    path.mkdir()
    return path


@pytest.fixture
def backend_config(tmp_path: Path) -> BackendConfig:
    state = tmp_path / "backend-state"
    state.mkdir()
    return BackendConfig(state_dir=state)


@pytest.fixture
def make_spec() -> Callable[..., RunSpec]:
    """``make_spec("print(1)")`` runs Python code; ``make_spec(argv=("true",))`` a command."""

    def make(code: str | None = None, **fields: object) -> RunSpec:
        if code is not None:
            return python_spec(code, **fields)
        fields.setdefault("argv", (sys.executable, "-c", "pass"))
        return RunSpec(**fields)  # type: ignore[arg-type]

    return make
