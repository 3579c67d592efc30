"""The wall around a loaded backend: typed results or a sentence, never a raw traceback.

:class:`GuardedBackend` wraps what a plugin's constructor returned. A ``BackendError`` from the
plugin becomes a :class:`BackendCallError` with the plugin's message as is; any other exception
becomes one that names the backend, the call and the exception type; a result of the wrong type
is refused the same way. The traceback is kept in ``err.details`` for a log.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from costmeter.core import CostmeterError
from costmeter.plugin_api import (
    Backend,
    BackendError,
    BackendMetadata,
    Capability,
    LogChunk,
    Placement,
    Resources,
    RunHandle,
    RunSpec,
    RunStatus,
)

T = TypeVar("T")


class PluginError(CostmeterError):
    """A backend could not be used. ``str(err)`` is the sentence to show."""

    def __init__(
        self, message: str, *, backend: str, operation: str, cause: str | None = None
    ) -> None:
        super().__init__(message)
        self.backend = backend
        #: "load", or the method that failed ("submit", "status", ...).
        self.operation = operation
        #: The exception type for a bug in the backend; ``None`` for a BackendError or a refusal.
        self.cause = cause
        #: The backend's traceback, for a log or a "details" box; never printed by default.
        self.details = ""


class PluginLoadError(PluginError):
    """The backend could not be imported, is for another API version, or failed to start."""


class UnknownBackendError(PluginLoadError):
    """No installed distribution registers a backend by that name."""


class BackendCallError(PluginError):
    """A call into a loaded backend failed or returned the wrong type."""


@dataclass(frozen=True)
class BackendInfo:
    """What the distribution's metadata says about a backend; nothing is imported to get it."""

    name: str
    #: The entry point's target, "module:attribute".
    target: str
    distribution: str = ""
    version: str = ""
    description: str = ""

    def label(self) -> str:
        """How to name the plugin in a message: "'costmeter-ray' 1.2" or its target."""
        if self.distribution:
            return f"'{self.distribution}' {self.version}".rstrip()
        return f"'{self.target}'"


def describe_exception(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class GuardedBackend:
    """A loaded backend behind a wall: typed results or a :class:`PluginError`, nothing else.

    It satisfies :class:`costmeter.plugin_api.Backend` itself. It holds no state of its own
    beyond the backend, so it is as thread-safe as the backend is.
    """

    def __init__(
        self, name: str, backend: Backend, metadata: BackendMetadata, info: BackendInfo
    ) -> None:
        self.name = name
        self.info = info
        self._backend = backend
        self._metadata = metadata

    @property
    def metadata(self) -> BackendMetadata:
        return self._metadata

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._metadata.capabilities

    def has(self, capability: Capability) -> bool:
        return capability in self._metadata.capabilities

    def _call(self, operation: str, expected: type[T], call: Callable[[], object]) -> T:
        try:
            result = call()
        except BackendError as exc:
            err = BackendCallError(
                str(exc) or f"backend '{self.name}' refused to {operation} without saying why.",
                backend=self.name,
                operation=operation,
            )
            err.details = traceback.format_exc()
            raise err from None
        except Exception as exc:
            err = BackendCallError(
                f"backend '{self.name}' failed in {operation}: {describe_exception(exc)} "
                f"(a bug in the plugin {self.info.label()}; please report it to its authors).",
                backend=self.name,
                operation=operation,
                cause=type(exc).__name__,
            )
            err.details = traceback.format_exc()
            raise err from None
        if not isinstance(result, expected):
            raise BackendCallError(
                f"backend '{self.name}' returned {type(result).__name__} from {operation} "
                f"instead of {expected.__name__} (a bug in the plugin {self.info.label()}).",
                backend=self.name,
                operation=operation,
            )
        return result

    def _refuse(self, operation: str, message: str) -> BackendCallError:
        return BackendCallError(message, backend=self.name, operation=operation)

    def resources(self) -> Resources:
        return self._call("resources", Resources, lambda: self._backend.resources())

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        if spec.gpus and Capability.GPUS not in self.capabilities:
            raise self._refuse(
                "submit",
                f"backend '{self.name}' cannot give runs GPUs; this run asks for "
                f"{spec.gpus}. Choose another backend or ask for no GPUs.",
            )
        handle = self._call(
            "submit",
            RunHandle,
            lambda: self._backend.submit(spec, placement, dict(env), Path(run_dir)),
        )
        data = handle.data
        if not isinstance(handle.key, str) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise self._refuse(
                "submit",
                f"backend '{self.name}' returned a run handle whose key or data are not all "
                f"strings, so it cannot be stored (a bug in the plugin {self.info.label()}).",
            )
        # The registry name is how Costmeter finds the backend again, whatever the handle said.
        return replace(handle, backend=self.name, data=dict(data))

    def status(self, handle: RunHandle) -> RunStatus:
        return self._call("status", RunStatus, lambda: self._backend.status(handle))

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        if Capability.CANCEL not in self.capabilities:
            raise self._refuse("cancel", f"backend '{self.name}' cannot cancel runs.")
        self._call("cancel", type(None), lambda: self._backend.cancel(handle, grace_s))

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        if Capability.LOGS not in self.capabilities:
            raise self._refuse("read_logs", f"backend '{self.name}' does not keep run logs.")
        chunk = self._call("read_logs", LogChunk, lambda: self._backend.read_logs(handle, offset))
        if not isinstance(chunk.text, str) or not isinstance(chunk.next_offset, int):
            raise self._refuse(
                "read_logs",
                f"backend '{self.name}' returned a log chunk without text or offset "
                f"(a bug in the plugin {self.info.label()}).",
            )
        if chunk.next_offset < offset:
            raise self._refuse(
                "read_logs",
                f"backend '{self.name}' returned a log chunk that goes backwards "
                f"(a bug in the plugin {self.info.label()}).",
            )
        return chunk

    def node_samples(self, handle: RunHandle, since_ts: float = 0.0) -> list[dict[str, Any]]:
        """(API 1.1) The readings of the node ``handle``'s run is on taken after ``since_ts``,
        for a backend with ``Capability.NODE_SAMPLES``: a list of mappings, checked here for
        shape only (``costmeter.service.node_ingest`` checks their contents)."""
        if Capability.NODE_SAMPLES not in self.capabilities:
            raise self._refuse(
                "node_samples", f"backend '{self.name}' does not sample the nodes it runs on."
            )
        method = getattr(self._backend, "node_samples", None)
        if not callable(method):
            raise self._refuse(
                "node_samples",
                f"backend '{self.name}' declares node samples but has no node_samples method "
                f"(a bug in the plugin {self.info.label()}).",
            )
        got = self._call("node_samples", object, lambda: method(handle, float(since_ts)))
        if not isinstance(got, list | tuple) or not all(isinstance(r, Mapping) for r in got):
            raise self._refuse(
                "node_samples",
                f"backend '{self.name}' returned {type(got).__name__} from node_samples instead "
                f"of a list of readings (a bug in the plugin {self.info.label()}).",
            )
        return [dict(r) for r in got]

    def close(self) -> None:
        self._call("close", type(None), lambda: self._backend.close())
