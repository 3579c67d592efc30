"""Where simulated process IDs start (kept apart from the fake NVML, which imports pynvml)."""

#: Simulated PIDs start above Linux's largest pid_max (4194304), so they never name a real process.
PID_BASE = 5_000_000
