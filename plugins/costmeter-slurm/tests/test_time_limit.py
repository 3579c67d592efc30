"""A run past its time limit: Slurm ends it as TIMEOUT and Costmeter says so in words.

The run is submitted early by the ``time_limit_run`` fixture (see conftest.py): Slurm counts
time limits in whole minutes (``--time=1`` is the least) and checks them every 30 s, so it
ends 60 to 90 s after it starts (the test cluster has ``OverTimeLimit=0``, ``KillWait=2``).
"""

from __future__ import annotations

import pytest
from conftest import EarlyRun

from costmeter.plugin_api import RunState
from costmeter.plugin_testing import read_all_logs, wait_finished

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_run_past_its_time_limit_fails_with_the_limit_in_words(
    time_limit_run: EarlyRun,
) -> None:
    backend, handle = time_limit_run.backend, time_limit_run.handle
    status = wait_finished(backend, handle, timeout_s=150)
    assert status.state is RunState.FAILED, status
    assert status.message == "Hit its time limit (1 min).", status
    assert status.started is not None and status.ended is not None
    assert status.ended - status.started >= 60, status
    assert status.allocated_gpus is None or status.allocated_gpus == 0
    text = read_all_logs(backend, handle)
    assert "sleeping" in text and "woke" not in text
