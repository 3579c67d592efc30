"""A broken backend shows as failed with a sentence; the others, `local` first, go on working."""

from __future__ import annotations

import importlib.metadata as md
import itertools
import textwrap
from pathlib import Path

import pytest

from costmeter.plugin_api import (
    API_VERSION,
    ENTRY_POINT_GROUP,
    BackendConfig,
    Placement,
    RunSpec,
)
from costmeter.plugin_testing import wait_finished
from costmeter.runs.registry import (
    FAILED,
    OK,
    BackendCallError,
    PluginLoadError,
    Registry,
)

_ids = itertools.count()

GOOD = """
from costmeter.plugin_api import *

class Good:
    API_VERSION = "1.0"

    def __init__(self, config):
        self.config = config

    @property
    def metadata(self):
        return BackendMetadata("good", "1", "1.0", capabilities=frozenset({Capability.CANCEL}))

    def resources(self):
        return Resources()

    def submit(self, spec, placement, env, run_dir):
        return RunHandle("good", "k1", {"n": "1"})

    def status(self, handle):
        return RunStatus(RunState.SUCCEEDED, exit_code=0)

    def cancel(self, handle, grace_s=10.0):
        return None

    def read_logs(self, handle, offset=0):
        return LogChunk("", offset, True)

    def close(self):
        pass
"""


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """Write a module to an importable directory; a fresh name each time (no import cache)."""
    name = f"fake_backend_{next(_ids)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _ep(name: str, target: str) -> md.EntryPoint:
    return md.EntryPoint(name, target, ENTRY_POINT_GROUP)


def _real_local() -> md.EntryPoint:
    (local,) = [ep for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "local"]
    return local


@pytest.fixture
def config(tmp_path: Path) -> BackendConfig:
    return BackendConfig(state_dir=tmp_path)


BROKEN = {
    "import_error": ("import no_such_dependency_for_costmeter\n", "Good"),
    "missing_api": (GOOD.replace('API_VERSION = "1.0"', "pass"), "Good"),
    "wrong_api": (GOOD.replace('API_VERSION = "1.0"', 'API_VERSION = "2.0"'), "Good"),
    "newer_minor": (GOOD.replace('API_VERSION = "1.0"', 'API_VERSION = "1.9"'), "Good"),
    "raising_init": (
        GOOD.replace("self.config = config", "raise RuntimeError('no cluster')"),
        "Good",
    ),
    "missing_attribute": (GOOD, "NotThere"),
    "missing_method": (GOOD.replace("def read_logs", "def read_logs_typo"), "Good"),
}
EXPECTED_ERRORS = {
    "import_error": "backend 'import_error' could not be imported from 'fake_backend_",
    "missing_api": "backend 'missing_api' does not declare API_VERSION",
    "wrong_api": "backend 'wrong_api' is written for plugin API 2.0, which this Costmeter "
    f"(plugin API {API_VERSION}) does not support",
    "newer_minor": "is written for plugin API 1.9",
    "raising_init": "backend 'raising_init' failed to start: RuntimeError: no cluster.",
    "missing_attribute": "AttributeError",
    "missing_method": "backend 'missing_method' lacks the method(s) read_logs",
}


def test_each_broken_backend_is_a_failed_row_and_local_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: BackendConfig
) -> None:
    eps = [_real_local()]
    for name, (source, attr) in BROKEN.items():
        eps.append(_ep(name, f"{_module(tmp_path, monkeypatch, source)}:{attr}"))
    registry = Registry(eps)
    rows = {row.name: row for row in registry.probe_all()}
    assert rows["local"].status == OK and rows["local"].error == ""
    for name, expected in EXPECTED_ERRORS.items():
        assert rows[name].status == FAILED, name
        assert expected in rows[name].error, (name, rows[name].error)
        assert "Traceback" not in rows[name].error
    assert rows["wrong_api"].api_version == "2.0"
    assert rows["import_error"].api_version is None

    for name in EXPECTED_ERRORS:
        with pytest.raises(PluginLoadError) as err:
            registry.get_backend(name, config)
        assert err.value.backend == name and err.value.operation == "load"
    backend = registry.get_backend("local", config)
    handle = backend.submit(RunSpec(argv=("true",)), Placement(), {}, tmp_path)
    assert wait_finished(backend, handle).exit_code == 0


def test_a_raising_submit_is_a_sentence_naming_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: BackendConfig
) -> None:
    source = GOOD.replace('return RunHandle("good", "k1", {"n": "1"})', "return 1 / 0")
    module = _module(tmp_path, monkeypatch, source)
    backend = Registry([_ep("boom", f"{module}:Good")]).get_backend("boom", config)
    with pytest.raises(BackendCallError) as err:
        backend.submit(RunSpec(argv=("x",)), Placement(), {}, tmp_path)
    assert str(err.value).startswith(
        "backend 'boom' failed in submit: ZeroDivisionError: division by zero"
    )
    assert err.value.cause == "ZeroDivisionError" and err.value.operation == "submit"
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "ZeroDivisionError" in err.value.details  # kept for a log, not shown


def test_a_backend_error_is_shown_as_the_backend_wrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: BackendConfig
) -> None:
    source = GOOD.replace(
        "return RunStatus(RunState.SUCCEEDED, exit_code=0)",
        "raise BackendError('the cluster at ray://head:10001 does not answer.')",
    )
    module = _module(tmp_path, monkeypatch, source)
    backend = Registry([_ep("ray", f"{module}:Good")]).get_backend("ray", config)
    handle = backend.submit(RunSpec(argv=("x",)), Placement(), {}, tmp_path)
    with pytest.raises(BackendCallError) as err:
        backend.status(handle)
    assert str(err.value) == "the cluster at ray://head:10001 does not answer."
    assert err.value.cause is None


@pytest.mark.parametrize(
    ("old", "new", "call", "message"),
    [
        (
            'return RunHandle("good", "k1", {"n": "1"})',
            'return {"key": "k1"}',
            "submit",
            "returned dict from submit instead of RunHandle",
        ),
        (
            'return RunHandle("good", "k1", {"n": "1"})',
            'return RunHandle("good", "k1", {"n": 1})',
            "submit",
            "key or data are not all strings",
        ),
        (
            "return RunStatus(RunState.SUCCEEDED, exit_code=0)",
            'return "succeeded"',
            "status",
            "returned str from status instead of RunStatus",
        ),
        ("return None", "return True", "cancel", "returned bool from cancel instead of NoneType"),
        (
            "return Resources()",
            "return {'gpus': 1}",
            "resources",
            "returned dict from resources instead of Resources",
        ),
    ],
)
def test_wrong_return_types_are_caught(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: BackendConfig,
    old: str,
    new: str,
    call: str,
    message: str,
) -> None:
    assert old in GOOD
    module = _module(tmp_path, monkeypatch, GOOD.replace(old, new))
    backend = Registry([_ep("odd", f"{module}:Good")]).get_backend("odd", config)
    from costmeter.plugin_api import RunHandle

    calls = {
        "submit": lambda: backend.submit(RunSpec(argv=("x",)), Placement(), {}, tmp_path),
        "status": lambda: backend.status(RunHandle("odd", "k1")),
        "cancel": lambda: backend.cancel(RunHandle("odd", "k1")),
        "resources": backend.resources,
    }
    with pytest.raises(BackendCallError, match=message):
        calls[call]()


def test_a_hanging_constructor_does_not_hang_the_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = GOOD.replace("self.config = config", "import time; time.sleep(1)")
    module = _module(tmp_path, monkeypatch, source)
    registry = Registry([_ep("slow", f"{module}:Good"), _real_local()])
    (slow, local) = registry.probe_all(timeout_s=0.2)
    assert slow.status == FAILED and "did not finish loading within 0.2 s" in slow.error
    assert local.status == OK


def test_log_chunks_are_checked_and_missing_capabilities_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: BackendConfig
) -> None:
    from costmeter.plugin_api import RunHandle

    plain = Registry([_ep("plain", f"{_module(tmp_path, monkeypatch, GOOD)}:Good")])
    with pytest.raises(BackendCallError, match="backend 'plain' does not keep run logs"):
        plain.get_backend("plain", config).read_logs(RunHandle("plain", "k1"))
    source = GOOD.replace("{Capability.CANCEL}", "{Capability.LOGS}").replace(
        'LogChunk("", offset, True)', 'LogChunk("", offset - 1, True)'
    )
    odd = Registry([_ep("odd", f"{_module(tmp_path, monkeypatch, source)}:Good")])
    backend = odd.get_backend("odd", config)
    with pytest.raises(BackendCallError, match="log chunk that goes backwards"):
        backend.read_logs(RunHandle("odd", "k1"), 10)
    with pytest.raises(BackendCallError, match="backend 'odd' cannot cancel runs"):
        backend.cancel(RunHandle("odd", "k1"))


NODE_SAMPLER = (
    GOOD.replace('API_VERSION = "1.0"', 'API_VERSION = "1.1"').replace(
        "{Capability.CANCEL}", "{Capability.CANCEL, Capability.NODE_SAMPLES}"
    )
    + """
    def node_samples(self, handle, since_ts=0.0):
        if handle.key == "boom":
            raise ZeroDivisionError("division by zero")
        if handle.key == "refused":
            raise BackendError("The node's sampler is not running.")
        if handle.key == "odd":
            return {"samples": []}
        if handle.key == "odd-item":
            return [1, 2]
        return [{"format": 1, "since": since_ts}]
"""
)


def test_node_samples_pass_through_the_guard_checked_and_isolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: BackendConfig
) -> None:
    from costmeter.plugin_api import Capability, RunHandle

    module = _module(tmp_path, monkeypatch, NODE_SAMPLER)
    backend = Registry([_ep("nodes", f"{module}:Good")]).get_backend("nodes", config)
    assert backend.has(Capability.NODE_SAMPLES)
    assert backend.node_samples(RunHandle("nodes", "k1"), 5) == [{"format": 1, "since": 5.0}]
    with pytest.raises(BackendCallError, match="failed in node_samples: ZeroDivisionError") as e:
        backend.node_samples(RunHandle("nodes", "boom"))
    assert e.value.operation == "node_samples" and e.value.cause == "ZeroDivisionError"
    with pytest.raises(BackendCallError, match=r"^The node's sampler is not running\.$"):
        backend.node_samples(RunHandle("nodes", "refused"))
    for key in ("odd", "odd-item"):
        with pytest.raises(BackendCallError, match="from node_samples instead of a list"):
            backend.node_samples(RunHandle("nodes", key))
    # Still usable after all that.
    assert backend.status(RunHandle("nodes", "k1")).exit_code == 0

    plain = Registry([_ep("plain", f"{_module(tmp_path, monkeypatch, GOOD)}:Good")])
    with pytest.raises(BackendCallError, match="does not sample the nodes it runs on"):
        plain.get_backend("plain", config).node_samples(RunHandle("plain", "k1"))
    no_method = NODE_SAMPLER.replace("def node_samples", "def node_samples_typo")
    broken = Registry([_ep("half", f"{_module(tmp_path, monkeypatch, no_method)}:Good")])
    with pytest.raises(BackendCallError, match="has no node_samples method"):
        broken.get_backend("half", config).node_samples(RunHandle("half", "k1"))
