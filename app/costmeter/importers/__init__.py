"""Reading GPU logs written elsewhere (nvidia-smi CSV, Costmeter's own CSV export) into samples.

Pure parsing: no SQLite, no Qt. ``costmeter.service.log_import`` integrates energy and writes
through ``costmeter.store.imports``.
"""

from costmeter.importers.model import DeviceMeta, GpuReading, ImportFormatError, RowError

__all__ = ["DeviceMeta", "GpuReading", "ImportFormatError", "RowError"]
