"""What needs no cluster: options, messages, and a light entry-point module."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from costmeter_ray.backend import RayBackend
from costmeter_ray.messages import status_from
from costmeter_ray.testing import free_port

from costmeter.plugin_api import BackendConfig, BackendError, Capability, RunState


class FakeSampler:
    def sample(self, pids: object, gpus: object = None) -> dict[str, object]:
        return {}

    def close(self) -> None:
        pass


def test_the_entry_point_module_does_not_import_ray() -> None:
    code = "import sys, costmeter_ray.backend; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_capabilities_and_node_samples_only_with_a_sampler(tmp_path: Path) -> None:
    plain = RayBackend(BackendConfig(state_dir=tmp_path))
    assert plain.metadata.api_version == "1.1"
    assert plain.metadata.capabilities == {
        Capability.GPUS,
        Capability.PLACES_GPUS,
        Capability.CANCEL,
        Capability.LOGS,
        Capability.MULTI_NODE,
    }
    sampled = RayBackend(BackendConfig(state_dir=tmp_path, node_sampler=FakeSampler))
    assert Capability.NODE_SAMPLES in sampled.metadata.capabilities


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"address": 6379}, "address must be a non-empty string"),
        ({"num_gpus": -1}, "num_gpus must be a number"),
        ({"address": "10.0.0.5:6379", "num_cpus": 2}, "leave them out when address is set"),
    ],
)
def test_bad_options_are_refused_with_a_sentence(
    options: dict[str, object], words: str, tmp_path: Path
) -> None:
    with pytest.raises(BackendError, match=words):
        RayBackend(BackendConfig(options, tmp_path))


def test_an_unreachable_address_fails_fast_with_what_to_check(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    backend = RayBackend(BackendConfig({"address": address, "connect_timeout_s": 2}, tmp_path))
    begun = time.monotonic()
    with pytest.raises(BackendError) as err:
        backend.resources()
    assert time.monotonic() - begun < 5
    assert f"Cannot reach the Ray cluster at {address}" in str(err.value)
    assert f"ray status --address {address}" in str(err.value)


def test_an_address_without_a_port_is_explained(tmp_path: Path) -> None:
    backend = RayBackend(BackendConfig({"address": "headnode"}, tmp_path))
    with pytest.raises(BackendError, match="is not host:port"):
        backend.resources()


def test_statuses_from_records_use_the_local_backends_words() -> None:
    base = {"node": "n1", "gpus": [1], "started": 10.0, "pid": 5}
    running = status_from({**base, "ended": None, "pids": [5, 6]})
    assert (running.state, running.pids, running.gpu_indices, running.node) == (
        RunState.RUNNING,
        (5, 6),
        (1,),
        "n1",
    )
    failed = status_from({**base, "ended": 11.0, "exit_code": 3})
    assert (failed.state, failed.message) == (RunState.FAILED, "Exited with code 3.")
    killed = status_from({**base, "ended": 11.0, "exit_code": -9})
    assert killed.message == "Killed by signal 9 (SIGKILL) from outside Costmeter."
    forced = status_from(
        {**base, "ended": 11.0, "exit_code": -9, "cancel_requested": True, "forced": True}
    )
    assert forced.state is RunState.CANCELLED and "killed with SIGKILL" in forced.message
    lost = status_from({**base, "ended": 11.0, "exit_code": None, "log": "/x/output.log"})
    assert lost.state is RunState.LOST and "/x/output.log on n1" in lost.message
    never = status_from({**base, "started": None, "ended": 11.0, "message": "command not found"})
    assert (never.state, never.message) == (RunState.FAILED, "command not found")
