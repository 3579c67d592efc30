"""Costmeter: what your GPUs and CPUs are doing, what it costs, and what to change to pay less."""

__version__ = "0.1.0"
