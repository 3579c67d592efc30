"""Runs: the backend registry (entry points), the local backend, the queue and GPU placement."""
