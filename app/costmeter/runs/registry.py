"""Run backends found through entry points, loaded behind a guard (see ``guard.py``).

``list_backends()`` reads names, versions and descriptions from the installed distributions'
metadata without importing any backend. ``get_backend(name, config)`` imports one, checks its
``API_VERSION``, builds it and wraps it in a :class:`GuardedBackend`, whose every call either
returns a value of the promised type or raises a :class:`PluginError` whose message is a
sentence: a backend's own :class:`BackendError` message as is, any other exception as
"backend 'x' failed in submit: ZeroDivisionError: ...". ``probe``/``probe_all`` do the same for
``costmeter plugins`` and turn every failure into a row instead of an exception.

Tests inject entry points: ``Registry([EntryPoint("x", "mod:Cls", ENTRY_POINT_GROUP)])``.
"""

from __future__ import annotations

import importlib.metadata as md
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from costmeter.plugin_api import (
    API_VERSION,
    ENTRY_POINT_GROUP,
    Backend,
    BackendConfig,
    BackendError,
    BackendMetadata,
    Capability,
    api_compatible,
)
from costmeter.runs.guard import (
    BackendCallError,
    BackendInfo,
    GuardedBackend,
    PluginError,
    PluginLoadError,
    UnknownBackendError,
)
from costmeter.runs.guard import describe_exception as _what

__all__ = [
    "FAILED",
    "OK",
    "BackendCallError",
    "BackendInfo",
    "GuardedBackend",
    "PluginError",
    "PluginLoadError",
    "PluginStatus",
    "Registry",
    "UnknownBackendError",
    "get_backend",
    "list_backends",
    "probe",
    "probe_all",
]

OK = "ok"
FAILED = "failed"
#: ``(backend name, state directory) -> BackendConfig``: a backend's configured options.
ConfigMaker = Callable[[str, Path], BackendConfig]
PROTOCOL_METHODS = ("resources", "submit", "status", "cancel", "read_logs", "close")


@dataclass(frozen=True)
class PluginStatus:
    """One row of ``costmeter plugins``."""

    info: BackendInfo
    status: str
    #: What the backend declares in ``API_VERSION``; ``None`` when it could not be read.
    api_version: str | None = None
    capabilities: frozenset[Capability] = frozenset()
    error: str = ""

    @property
    def name(self) -> str:
        return self.info.name

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.info.name,
            "version": self.info.version,
            "api_version": self.api_version,
            "status": self.status,
            "capabilities": sorted(str(c) for c in self.capabilities),
            "error": self.error,
        }


def _info(ep: md.EntryPoint) -> BackendInfo:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return BackendInfo(ep.name, ep.value)
    meta = dist.metadata
    return BackendInfo(
        name=ep.name,
        target=ep.value,
        distribution=str(meta["Name"] or ""),
        version=str(dist.version or ""),
        description=str(meta["Summary"] or ""),
    )


class Registry:
    """The backends of one set of entry points: the installed ones unless given."""

    def __init__(self, entry_points: Iterable[md.EntryPoint] | None = None) -> None:
        self._given = None if entry_points is None else list(entry_points)

    def entry_points(self) -> list[md.EntryPoint]:
        if self._given is not None:
            return list(self._given)
        return sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)

    def list_backends(self) -> list[BackendInfo]:
        """Every registered backend, from metadata only (no plugin code runs)."""
        return [_info(ep) for ep in self.entry_points()]

    def names(self) -> list[str]:
        return sorted({ep.name for ep in self.entry_points()})

    def get_backend(self, name: str, config: BackendConfig) -> GuardedBackend:
        """Import, check and build backend ``name``; raises :class:`PluginLoadError`."""
        matches = [ep for ep in self.entry_points() if ep.name == name]
        if not matches:
            known = ", ".join(f"'{n}'" for n in self.names()) or "none"
            raise UnknownBackendError(
                f"there is no backend named '{name}'. Installed backends: {known}. "
                "See `costmeter plugins`.",
                backend=name,
                operation="load",
            )
        return _load(matches[0], config)

    def probe(self, name: str, config: BackendConfig | None = None) -> PluginStatus:
        matches = [ep for ep in self.entry_points() if ep.name == name]
        if not matches:
            return PluginStatus(BackendInfo(name, ""), FAILED, error="not installed.")
        return _probe(matches[0], config)

    def probe_all(
        self,
        config: BackendConfig | None = None,
        timeout_s: float = 15.0,
        *,
        make_config: ConfigMaker | None = None,
    ) -> list[PluginStatus]:
        """Load every backend once, each in its own thread with a time limit; never raises.

        Without ``config``, each backend gets ``make_config(name, state_dir)`` (its configured
        options) or empty options, with a temporary state directory."""
        rows: list[PluginStatus] = []
        seen: dict[str, BackendInfo] = {}
        for ep in self.entry_points():
            info = _info(ep)
            if ep.name in seen:
                rows.append(
                    PluginStatus(
                        info,
                        FAILED,
                        error=f"ignored: the name '{ep.name}' is already taken by the plugin "
                        f"{seen[ep.name].label()}.",
                    )
                )
                continue
            seen[ep.name] = info
            rows.append(_probe_with_timeout(ep, config, timeout_s, make_config))
        return rows


def _fail(ep: md.EntryPoint, message: str, exc: BaseException | None = None) -> PluginLoadError:
    cause = None if exc is None or isinstance(exc, BackendError) else type(exc).__name__
    err = PluginLoadError(message, backend=ep.name, operation="load", cause=cause)
    if exc is not None:
        err.details = "".join(traceback.format_exception(exc))
    return err


def _import(ep: md.EntryPoint) -> object:
    try:
        return ep.load()
    except (Exception, SystemExit) as exc:
        raise _fail(
            ep,
            f"backend '{ep.name}' could not be imported from '{ep.value}': {_what(exc)}.",
            exc,
        ) from None


def _declared_api(target: object) -> str | None:
    try:
        declared = getattr(target, "API_VERSION", None)
    except Exception:
        return None
    return declared if isinstance(declared, str) else None


def _build(ep: md.EntryPoint, target: object, config: BackendConfig) -> GuardedBackend:
    """Check the API version, call the constructor, check the object it gives."""
    name, info = ep.name, _info(ep)
    declared = _declared_api(target)
    if declared is None:
        raise _fail(
            ep,
            f"backend '{name}' does not declare API_VERSION, so Costmeter cannot tell whether "
            f"it fits this Costmeter's plugin API {API_VERSION}.",
        )
    if not api_compatible(declared):
        raise _fail(
            ep,
            f"backend '{name}' is written for plugin API {declared}, which this Costmeter "
            f"(plugin API {API_VERSION}) does not support. Install a version of the plugin "
            f"{info.label()} made for API {API_VERSION.split('.')[0]}.x.",
        )
    if not callable(target):
        raise _fail(ep, f"backend '{name}' points at '{ep.value}', which cannot be called.")
    try:
        backend = target(config)
    except BackendError as exc:
        raise _fail(ep, f"backend '{name}' cannot start: {exc}", exc) from None
    except Exception as exc:
        raise _fail(ep, f"backend '{name}' failed to start: {_what(exc)}.", exc) from None
    missing = [m for m in PROTOCOL_METHODS if not callable(getattr(backend, m, None))]
    if missing:
        raise _fail(
            ep, f"backend '{name}' lacks the method(s) {', '.join(missing)} of the plugin API."
        )
    try:
        metadata = backend.metadata
    except Exception as exc:
        raise _fail(ep, f"backend '{name}' failed in metadata: {_what(exc)}.", exc) from None
    if not isinstance(metadata, BackendMetadata):
        raise _fail(
            ep,
            f"backend '{name}' gives {type(metadata).__name__} as metadata instead of "
            "BackendMetadata.",
        )
    return GuardedBackend(name, cast(Backend, backend), metadata, info)


def _load(ep: md.EntryPoint, config: BackendConfig) -> GuardedBackend:
    return _build(ep, _import(ep), config)


def _probe(
    ep: md.EntryPoint, config: BackendConfig | None, make_config: ConfigMaker | None = None
) -> PluginStatus:
    info = _info(ep)
    try:
        target = _import(ep)
    except PluginLoadError as exc:
        return PluginStatus(info, FAILED, error=str(exc))
    declared = _declared_api(target)
    tmp = None
    if config is None:
        tmp = tempfile.TemporaryDirectory(prefix="costmeter-probe-")
        state = Path(tmp.name)
        try:
            config = make_config(ep.name, state) if make_config else BackendConfig(state_dir=state)
        except Exception as exc:
            tmp.cleanup()
            return PluginStatus(info, FAILED, declared, error=f"its options: {_what(exc)}")
    try:
        backend = _build(ep, target, config)
        backend.close()
        return PluginStatus(info, OK, declared, backend.capabilities)
    except PluginError as exc:
        return PluginStatus(info, FAILED, declared, error=str(exc))
    finally:
        if tmp is not None:
            tmp.cleanup()


def _probe_with_timeout(
    ep: md.EntryPoint,
    config: BackendConfig | None,
    timeout_s: float,
    make_config: ConfigMaker | None = None,
) -> PluginStatus:
    """A backend whose constructor hangs (a cluster that does not answer) must not hang us."""
    box: list[PluginStatus] = []

    def work() -> None:
        try:
            box.append(_probe(ep, config, make_config))
        except BaseException as exc:  # _probe catches; this is the last line of defence
            box.append(PluginStatus(_info(ep), FAILED, error=f"probe crashed: {_what(exc)}"))

    thread = threading.Thread(target=work, name=f"costmeter-probe-{ep.name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if box:
        return box[0]
    return PluginStatus(
        _info(ep), FAILED, error=f"did not finish loading within {timeout_s:g} s; left behind."
    )


_DEFAULT = Registry()


def list_backends() -> list[BackendInfo]:
    return _DEFAULT.list_backends()


def get_backend(name: str, config: BackendConfig) -> GuardedBackend:
    return _DEFAULT.get_backend(name, config)


def probe(name: str, config: BackendConfig | None = None) -> PluginStatus:
    return _DEFAULT.probe(name, config)


def probe_all(
    config: BackendConfig | None = None,
    timeout_s: float = 15.0,
    *,
    make_config: ConfigMaker | None = None,
) -> list[PluginStatus]:
    return _DEFAULT.probe_all(config, timeout_s, make_config=make_config)
