"""What needs no cluster: options, the batch script, sbatch's arguments, state words, logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from costmeter_slurm.backend import SlurmBackend, _decode
from costmeter_slurm.options import read_options
from costmeter_slurm.parse import JobInfo, format_time_limit, gpus_in_gres, parse_exit_code
from costmeter_slurm.script import batch_script, parse_job_id, sbatch_argv
from costmeter_slurm.states import run_state

from costmeter.plugin_api import (
    PROGRESS_ENV,
    RUN_ID_ENV,
    BackendConfig,
    BackendError,
    Capability,
    RunSpec,
    RunState,
)


def test_the_entry_point_is_registered_and_light() -> None:
    code = (
        "import sys; from importlib.metadata import entry_points; "
        "ep = [e for e in entry_points(group='costmeter.backends') if e.name == 'slurm'][0]; "
        "cls = ep.load(); print(cls.API_VERSION, 'subprocess' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "1.2", out.stderr


def test_capabilities(tmp_path: Path) -> None:
    meta = SlurmBackend(BackendConfig({"partition": "gpu"}, tmp_path)).metadata
    assert meta.capabilities == {
        Capability.GPUS,
        Capability.PLACES_GPUS,
        Capability.CANCEL,
        Capability.LOGS,
        Capability.MULTI_NODE,
    }
    assert meta.name == "slurm" and "partition gpu" in meta.description


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"queue": "gpu"}, "has no option queue"),
        ({"partition": 3}, "partition must be text"),
        ({"poll_interval_s": "soon"}, "poll_interval_s must be a number"),
        ({"command_timeout_s": 0}, "at least 1.0"),
        ({"extra_args": [1, 2]}, "extra_args must be a list of strings"),
        ({"extra_args": "--qos='x"}, "extra_args cannot be read"),
        ({"time_limit": -5}, "more than 0 minutes"),
    ],
)
def test_bad_options_are_refused_with_a_sentence(options: dict[str, object], words: str) -> None:
    with pytest.raises(BackendError, match=words):
        read_options(options)


def test_options_from_the_command_line_are_text() -> None:
    opts = read_options(
        {"poll_interval_s": "0.5", "extra_args": "--qos=high --mem=4G", "time_limit": 30}
    )
    assert (opts.poll_interval_s, opts.extra_args, opts.time_limit) == (
        0.5,
        ("--qos=high", "--mem=4G"),
        "30",
    )


def test_sbatch_arguments(tmp_path: Path) -> None:
    opts = read_options(
        {
            "partition": "gpu",
            "account": "vision",
            "time_limit": "2:00:00",
            "gpu_type": "a100",
            "extra_args": ["--qos=high"],
            "sbatch": "/opt/slurm/bin/sbatch",
        }
    )
    spec = RunSpec(argv=("train",), gpus=2, cpus=2.5, cwd="/data", name="lr-0.1")
    argv = sbatch_argv(opts, spec, {}, tmp_path, tmp_path / "slurm-job.sh")
    assert argv == [
        "/opt/slurm/bin/sbatch",
        "--parsable",
        "--job-name=lr-0.1",
        f"--output={tmp_path}/slurm-%j.out",
        "--cpus-per-task=3",
        "--chdir=/data",
        "--gres=gpu:a100:2",
        "--time=2:00:00",
        "--partition=gpu",
        "--account=vision",
        "--qos=high",
        str(tmp_path / "slurm-job.sh"),
    ]
    # A run's own limit wins, in whole minutes rounded up; no GPUs means no --gres.
    timed = RunSpec(argv=("x",), time_limit_s=61)
    argv = sbatch_argv(read_options({}), timed, {RUN_ID_ENV: "12"}, tmp_path, tmp_path / "s")
    assert "--time=2" in argv and "--job-name=costmeter-12" in argv
    assert not any(a.startswith("--gres") for a in argv)


def test_the_batch_script_exports_the_env_and_execs_the_command(tmp_path: Path) -> None:
    """Run the script with sh: quoting survives, Costmeter's env wins, no CUDA_VISIBLE_DEVICES."""
    show = (
        "import json, os, sys; print(json.dumps([sys.argv[1:], {k: v for k, v in "
        "os.environ.items() if k.startswith(('T_', 'COSTMETER', 'CUDA'))}]))"
    )
    spec = RunSpec(
        argv=(sys.executable, "-c", show, "a b", "it's", "$HOME", "`x`"),
        env={
            "T_QUOTE": 'it\'s "x" $y',
            "T_NL": "a\nb",
            RUN_ID_ENV: "spec",
            "CUDA_VISIBLE_DEVICES": "5",
        },
    )
    env = {RUN_ID_ENV: "9", PROGRESS_ENV: "/tmp/p", "CUDA_VISIBLE_DEVICES": "3"}
    script = tmp_path / "job.sh"
    script.write_text(batch_script(spec, env))
    clean = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=clean)
    assert out.returncode == 0, out.stderr
    argv, seen = json.loads(out.stdout)
    assert argv == ["a b", "it's", "$HOME", "`x`"]
    assert seen == {
        RUN_ID_ENV: "9",
        PROGRESS_ENV: "/tmp/p",
        "T_NL": "a\nb",
        "T_QUOTE": 'it\'s "x" $y',
    }
    with pytest.raises(BackendError, match="cannot export"):
        batch_script(RunSpec(argv=("x",), env={"BAD-NAME": "1"}), {})


def test_sbatch_output_gives_the_job_id() -> None:
    assert parse_job_id("1234\n") == "1234"
    assert parse_job_id("1234;cluster2\n") == "1234"
    with pytest.raises(BackendError, match="did not print a job id"):
        parse_job_id("sbatch: error: something\n")


@pytest.mark.parametrize(
    ("state", "reason", "code", "expected"),
    [
        (
            "PENDING",
            "Resources",
            None,
            (
                RunState.QUEUED,
                "Waiting in the queue: Resources — the GPUs it asks for are all in use.",
            ),
        ),
        (
            "PENDING",
            "Priority",
            None,
            (
                RunState.QUEUED,
                "Waiting in the queue: Priority — jobs with a higher priority are ahead of it.",
            ),
        ),
        (
            "PENDING",
            "QOSMaxGRESPerUser",
            None,
            (
                RunState.QUEUED,
                "Waiting in the queue: QOSMaxGRESPerUser — a limit of its account or QOS holds it.",
            ),
        ),
        ("PENDING", "None", None, (RunState.QUEUED, "Waiting in the queue.")),
        ("CONFIGURING", "", None, (RunState.STARTING, "Its nodes are being set up.")),
        ("RUNNING", "", None, (RunState.RUNNING, "")),
        ("COMPLETING", "", None, (RunState.RUNNING, "")),
        ("SUSPENDED", "", None, (RunState.RUNNING, "Suspended by Slurm.")),
        ("COMPLETED", "", 0, (RunState.SUCCEEDED, "")),
        ("FAILED", "NonZeroExitCode", 3, (RunState.FAILED, "Exited with code 3.")),
        ("FAILED", "", -9, (RunState.FAILED, "Killed by signal 9 (SIGKILL).")),
        ("TIMEOUT", "TimeLimit", -15, (RunState.FAILED, "Hit its time limit (10 min).")),
        (
            "OUT_OF_MEMORY",
            "",
            None,
            (RunState.FAILED, "Ran out of memory: Slurm stopped it at its memory limit."),
        ),
        (
            "PREEMPTED",
            "",
            None,
            (RunState.FAILED, "Preempted: Slurm stopped it for a higher-priority job."),
        ),
        ("NODE_FAIL", "", None, (RunState.FAILED, "Its node gpu7 failed.")),
        ("CANCELLED", "", -15, (RunState.CANCELLED, "Cancelled in Slurm.")),
        (
            "REQUEUED",
            "BeginTime",
            None,
            (
                RunState.QUEUED,
                "Requeued; waiting in the queue: BeginTime — its start time has not come yet.",
            ),
        ),
    ],
)
def test_slurm_states_as_run_states(
    state: str, reason: str, code: int | None, expected: tuple[RunState, str]
) -> None:
    info = JobInfo(
        "1", state, reason=reason, batch_host="gpu7", time_limit="00:10:00", exit_code=code, gpus=2
    )
    assert run_state(info) == expected


def test_small_readers() -> None:
    assert (parse_exit_code("3:0"), parse_exit_code("0:15"), parse_exit_code("")) == (3, -15, None)
    assert gpus_in_gres("gres:gpu:2") == 2
    assert gpus_in_gres("gres/gpu:a100:2,gres/nic:1") == 2
    assert gpus_in_gres("gpu:2(IDX:0-1)") == 2
    assert gpus_in_gres("gres/gpu=3") == 3
    assert gpus_in_gres("N/A") is None
    assert format_time_limit("1-00:00:00") == "1 day"
    assert format_time_limit("1:30:00") == "1 h 30 min"
    assert format_time_limit("UNLIMITED") == ""


def test_log_decoding_keeps_a_cut_character_for_the_next_read() -> None:
    data = "héllo".encode()
    assert _decode(data[:2], final=False) == ("h", 1)  # the é's first byte waits
    assert _decode(data[1:], final=False) == ("éllo", len(data) - 1)
    assert _decode(data[:2], final=True) == ("h\ufffd", 2)
