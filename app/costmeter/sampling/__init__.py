"""Sampling: NVML (real or simulated) for GPUs, psutil for the host, RAPL for CPU energy."""
