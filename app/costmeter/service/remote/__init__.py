"""Pulling samples from remote hosts: Costmeter agents and Prometheus exporters."""

from costmeter.service.remote.collector import RemoteCollector
from costmeter.service.remote.status import HostStatus
from costmeter.service.remote.status_db import read_statuses

__all__ = ["HostStatus", "RemoteCollector", "read_statuses"]
