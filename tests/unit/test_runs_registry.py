"""Backend discovery: metadata without imports, loading, the guard's checks, the example plugin."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import pytest

from costmeter import __version__
from costmeter.plugin_api import (
    API_VERSION,
    ENTRY_POINT_GROUP,
    Backend,
    BackendConfig,
    Capability,
    Placement,
    RunHandle,
    RunSpec,
    RunState,
)
from costmeter.plugin_testing import check_backend, wait_finished
from costmeter.runs import registry
from costmeter.runs.registry import (
    FAILED,
    OK,
    BackendCallError,
    GuardedBackend,
    Registry,
    UnknownBackendError,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SRC = ROOT / "plugins" / "costmeter-example" / "src"


@pytest.fixture
def config(tmp_path: Path) -> BackendConfig:
    return BackendConfig(state_dir=tmp_path)


def test_the_installed_local_backend_is_listed_from_metadata() -> None:
    (local,) = [b for b in registry.list_backends() if b.name == "local"]
    assert local.target == "costmeter.runs.local:LocalBackend"
    assert local.distribution == "costmeter" and local.version == __version__
    assert local.description.startswith("See what your GPUs and CPUs are doing")


def test_listing_imports_no_backend() -> None:
    code = (
        "import sys\nfrom costmeter.runs.registry import list_backends\n"
        "names = [b.name for b in list_backends()]\n"
        "print('local' in names, 'costmeter.runs.local' in sys.modules, 'psutil' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


def test_listing_never_touches_a_broken_module() -> None:
    reg = Registry([md.EntryPoint("broken", "no_such_module_x:Cls", ENTRY_POINT_GROUP)])
    (info,) = reg.list_backends()
    assert (info.name, info.target, info.version, info.distribution) == (
        "broken",
        "no_such_module_x:Cls",
        "",
        "",
    )


def test_get_backend_loads_and_guards_local(config: BackendConfig, tmp_path: Path) -> None:
    backend = registry.get_backend("local", config)
    assert isinstance(backend, GuardedBackend) and isinstance(backend, Backend)
    assert backend.name == "local" and backend.metadata.api_version == API_VERSION
    assert backend.capabilities == {
        Capability.GPUS,
        Capability.CANCEL,
        Capability.LOGS,
        Capability.DATA_PARALLEL,
    }
    handle = backend.submit(RunSpec(argv=("false",)), Placement(), {}, tmp_path)
    assert handle.backend == "local"
    status = wait_finished(backend, handle)
    assert (status.state, status.exit_code) == (RunState.FAILED, 1)


def test_the_guard_passes_local_errors_through_as_sentences(
    config: BackendConfig, tmp_path: Path
) -> None:
    backend = registry.get_backend("local", config)
    with pytest.raises(BackendCallError) as err:
        backend.submit(RunSpec(argv=("trian.py",)), Placement(), {}, tmp_path)
    assert str(err.value).startswith("command not found: 'trian.py'")
    assert err.value.backend == "local" and err.value.operation == "submit"


def test_probe_reports_local_as_ok() -> None:
    row = registry.probe("local")
    assert (row.status, row.api_version, row.error) == (OK, API_VERSION, "")
    assert row.as_dict() == {
        "name": "local",
        "version": __version__,
        "api_version": API_VERSION,
        "status": "ok",
        "capabilities": ["cancel", "data-parallel", "gpus", "logs"],
        "error": "",
    }


def test_an_unknown_name_lists_the_known_ones(config: BackendConfig) -> None:
    with pytest.raises(UnknownBackendError) as err:
        registry.get_backend("lcoal", config)
    assert "there is no backend named 'lcoal'" in str(err.value)
    assert "'local'" in str(err.value)
    assert registry.probe("lcoal").status == FAILED


def test_a_duplicate_name_is_ignored_with_a_reason() -> None:
    local = next(ep for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "local")
    twin = md.EntryPoint("local", "somewhere_else:Backend", ENTRY_POINT_GROUP)
    first, second = Registry([local, twin]).probe_all()
    assert first.status == OK
    assert second.status == FAILED and "already taken by the plugin 'costmeter'" in second.error


def test_the_guard_refuses_what_the_backend_cannot_do(
    config: BackendConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    ep = md.EntryPoint("example", "costmeter_example.backend:ExampleBackend", ENTRY_POINT_GROUP)
    backend = Registry([ep]).get_backend("example", config)
    with pytest.raises(BackendCallError, match="cannot give runs GPUs; this run asks for 2"):
        backend.submit(RunSpec(argv=("true",), gpus=2), Placement(), {}, tmp_path)


def test_the_example_plugin_loads_and_conforms_without_installing(
    config: BackendConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    ep = md.EntryPoint("example", "costmeter_example.backend:ExampleBackend", ENTRY_POINT_GROUP)
    reg = Registry([ep])
    (row,) = reg.probe_all()
    assert (row.status, row.api_version) == (OK, "1.0"), row.error
    assert row.capabilities == {Capability.CANCEL, Capability.LOGS}
    backend = reg.get_backend("example", config)
    check_backend(backend, tmp_path)  # through the guard, as Costmeter will call it


def test_handles_are_renamed_to_the_registered_name(
    config: BackendConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    ep = md.EntryPoint("mine", "costmeter_example.backend:ExampleBackend", ENTRY_POINT_GROUP)
    backend = Registry([ep]).get_backend("mine", config)
    handle = backend.submit(RunSpec(argv=("true",)), Placement(), {}, tmp_path)
    assert handle.backend == "mine"
    wait_finished(backend, handle)
    assert backend.status(RunHandle("mine", "nope")).state is RunState.LOST
