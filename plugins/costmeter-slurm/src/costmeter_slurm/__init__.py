"""Costmeter's Slurm backend: runs as batch jobs, followed with squeue/sacct, stopped by scancel."""

__version__ = "0.1.0"
