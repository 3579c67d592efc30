"""Costmeter's Ray backend: runs on a Ray cluster, with their GPUs, logs, cancel and samples."""

__version__ = "0.1.0"
