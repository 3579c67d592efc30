"""The batch script and the sbatch command line for one run.

The script exports the run's environment (the spec's, then Costmeter's on top) and ``exec``s
the command, so the command itself is the job's batch process: its exit code is the job's,
and ``scancel --signal`` reaches it. ``CUDA_VISIBLE_DEVICES`` is never exported: Slurm picks
the GPUs and sets it for the job.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from costmeter.plugin_api import RUN_ID_ENV, BackendError, RunSpec
from costmeter_slurm.options import SlurmOptions

#: Variables Slurm sets for the job's GPUs; ours would contradict its placement.
SLURM_PLACED = frozenset({"CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES"})
SCRIPT_NAME = "slurm-job.sh"
OUTPUT_PATTERN = "slurm-%j.out"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def run_environment(spec: RunSpec, env: Mapping[str, str]) -> dict[str, str]:
    merged = {**dict(spec.env), **dict(env)}
    for name in SLURM_PLACED:
        merged.pop(name, None)
    bad = sorted(name for name in merged if not _NAME.match(name))
    if bad:
        raise BackendError(
            "A Slurm batch script cannot export the variable name(s) "
            + ", ".join(repr(b) for b in bad)
            + "; use names of letters, digits and underscores."
        )
    return merged


def batch_script(spec: RunSpec, env: Mapping[str, str]) -> str:
    run_id = env.get(RUN_ID_ENV, "")
    lines = [
        "#!/bin/sh",
        f"# Costmeter run {run_id}: written by costmeter-slurm, run by Slurm as the batch job."
        if run_id
        else "# Written by costmeter-slurm, run by Slurm as the batch job.",
    ]
    for name, value in sorted(run_environment(spec, env).items()):
        lines.append(f"export {name}={shlex.quote(value)}")
    lines.append(f"exec {shlex.join(spec.argv)}")
    return "\n".join(lines) + "\n"


def job_name(spec: RunSpec, env: Mapping[str, str]) -> str:
    if spec.name:
        return spec.name
    run_id = env.get(RUN_ID_ENV)
    return f"costmeter-{run_id}" if run_id else "costmeter"


def time_text(seconds: float) -> str:
    """``--time`` from seconds: whole minutes, rounded up (Slurm counts minutes), at least 1."""
    return str(max(1, math.ceil(seconds / 60.0)))


def sbatch_argv(
    options: SlurmOptions,
    spec: RunSpec,
    env: Mapping[str, str],
    run_dir: Path,
    script: Path,
) -> list[str]:
    argv = [
        options.sbatch,
        "--parsable",
        f"--job-name={job_name(spec, env)}",
        f"--output={run_dir / OUTPUT_PATTERN}",
        f"--cpus-per-task={max(1, math.ceil(spec.cpus))}",
    ]
    if spec.cwd:
        argv.append(f"--chdir={spec.cwd}")
    if spec.gpus:
        kind = f"gpu:{options.gpu_type}" if options.gpu_type else "gpu"
        argv.append(f"--gres={kind}:{spec.gpus}")
    if spec.time_limit_s is not None:
        argv.append(f"--time={time_text(spec.time_limit_s)}")
    elif options.time_limit:
        argv.append(f"--time={options.time_limit}")
    if options.partition:
        argv.append(f"--partition={options.partition}")
    if options.account:
        argv.append(f"--account={options.account}")
    argv.extend(options.extra_args)
    argv.append(str(script))
    return argv


def parse_job_id(output: str) -> str:
    """``sbatch --parsable`` prints ``JOBID`` or ``JOBID;CLUSTER``."""
    for line in output.splitlines():
        first = line.strip().split(";")[0]
        if first.isdigit():
            return first
    raise BackendError(f"sbatch did not print a job id: {output.strip()!r}.")
