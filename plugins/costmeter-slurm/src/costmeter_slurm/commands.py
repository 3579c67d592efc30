"""Running Slurm's commands: one environment, one timeout, errors as sentences."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from costmeter.plugin_api import BackendError
from costmeter_slurm.options import SlurmOptions
from costmeter_slurm.script import SLURM_PLACED


class SlurmCommands:
    def __init__(self, options: SlurmOptions) -> None:
        self.options = options
        env = {k: v for k, v in os.environ.items() if k not in SLURM_PLACED}
        if options.slurm_conf:
            env["SLURM_CONF"] = options.slurm_conf
        self.env = env

    def run(self, name: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run Slurm's ``name`` command (its configured path) with ``args``; never raises on a
        non-zero exit (callers read Slurm's message), only when it cannot run at all."""
        program = self.options.command(name)
        return self.run_argv([program, *args], name)

    def run_argv(self, argv: Sequence[str], name: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                list(argv),
                env=self.env,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.options.command_timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise BackendError(
                f"Slurm's {name} command was not found ({argv[0]}): install Slurm's client "
                f'commands here, or set [backends.slurm] {name} = "/path/to/{name}".'
            ) from None
        except PermissionError:
            raise BackendError(f"Slurm's {name} command ({argv[0]}) cannot be run here.") from None
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"Slurm's {name} did not answer within {self.options.command_timeout_s:g} s; "
                "is slurmctld up? (set [backends.slurm] command_timeout_s to wait longer)"
            ) from None


def message_of(result: subprocess.CompletedProcess[str]) -> str:
    """Slurm's own words from a failed command (its ``name: error:`` prefix kept)."""
    text = (result.stderr or result.stdout or "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[-3:]) if lines else f"exit status {result.returncode}"
