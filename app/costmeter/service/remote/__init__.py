"""Pulling samples from remote hosts: Costmeter agents and Prometheus exporters."""

from costmeter.service.remote.collector import RemoteCollector
from costmeter.service.remote.status import HostStatus
from costmeter.service.remote.status_db import read_statuses
from costmeter.store.remote_status import RemoteHostRow, read_remote_hosts

__all__ = ["HostStatus", "RemoteCollector", "RemoteHostRow", "read_remote_hosts", "read_statuses"]
