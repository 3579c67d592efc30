"""Pulling samples from remote hosts: Costmeter agents and Prometheus exporters."""
