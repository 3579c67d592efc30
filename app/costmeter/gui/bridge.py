"""The monitor (sampling loop -> store) on a worker thread, reporting to the GUI by signals.

The GUI thread never samples or writes: ``MonitorBridge.start()`` returns at once, the worker opens
the samplers and the writer and then ticks; every tick arrives on the GUI thread as ``ticked``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from costmeter.config import Config, RemoteHostConfig
from costmeter.core import CostmeterError, DeviceInfo, HostInfo, Tick

if TYPE_CHECKING:  # imported on the worker thread when sampling starts, after the first paint
    from costmeter.sampling.simulated import FakeNvml
    from costmeter.service.monitor import Monitor
    from costmeter.service.remote import HostStatus


@dataclass(frozen=True)
class Started:
    """What the monitor found when it opened."""

    host_info: HostInfo
    devices: tuple[DeviceInfo, ...]
    gpu_mode: str  # "nvml", "simulated" or "none"
    #: Seconds between samples, as the recorder runs (settings saved later apply on restart).
    interval_s: float
    #: Why there are no GPUs (the sampler's message), when gpu_mode is "none".
    no_gpu_reason: str | None = None
    notices: tuple[str, ...] = field(default=())


class MonitorBridge(QObject):
    started = Signal(object)  # Started
    ticked = Signal(object, object)  # Tick, tuple[DeviceInfo, ...]
    message = Signal(str)  # something the user should read (a metric went N/A, a GPU was lost)
    failed = Signal(str)  # the monitor could not start or stopped on an error
    stopped = Signal()

    def __init__(
        self,
        db_path: Path,
        config: Config,
        *,
        simulate: str | None = None,
        seed: int = 0,
        interval_s: float | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.db_path = db_path
        self.config = config
        self.simulate = simulate
        self.seed = seed
        self.interval_s = interval_s
        self._monitor: Monitor | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._opening: list[str] = []

    @property
    def fake(self) -> FakeNvml | None:
        """The simulated driver while simulated GPUs are sampled (tests inject faults into it)."""
        monitor = self._monitor
        return monitor.fake if monitor is not None else None

    @property
    def monitor(self) -> Monitor | None:
        """The live monitor once it has opened (its writer started), else None.

        For run services, which hand it the runs' PIDs and put them on simulated GPUs; call
        its methods from worker threads only.
        """
        monitor = self._monitor
        return monitor if monitor is not None and monitor.writer is not None else None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="costmeter-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sampling and flush everything to the database (waits for the worker)."""
        self._stop.set()
        monitor = self._monitor
        if monitor is not None:
            monitor.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _say(self, text: str) -> None:
        if self._monitor is not None and self._monitor.writer is None:
            self._opening.append(text)
        self.message.emit(text)

    # -- remote hosts ------------------------------------------------------------------------
    def apply_hosts(self, config: Config) -> bool:
        """Hand the configuration's enabled hosts to the running collector (after the Hosts
        page or Settings saved). False when the monitor cannot take them live: they are then
        collected from the next start."""
        self.config = config
        monitor = self._monitor
        if monitor is None:
            return False
        hosts = enabled_hosts(config)
        if monitor.remote is not None:
            monitor.remote.set_hosts(hosts)
            return True
        if not hosts or monitor.writer is None or monitor.host_info is None:
            return not hosts
        # The monitor started without remote hosts: start its collector now, as open() would.
        from costmeter.service.remote import RemoteCollector

        collector = RemoteCollector(
            monitor.writer,
            hosts,
            interval_s=monitor.interval_s,
            cpu_tdp_w=monitor.cpu_tdp_w,
            store_path=self.db_path,
            skip_hosts=(monitor.host_info.hostname,),
            on_tick=self._on_tick,
            on_message=self._say,
        )
        monitor.remote = collector  # Monitor.close stops it
        collector.start()
        return True

    def remote_statuses(self) -> list[HostStatus]:
        """The collector's in-memory ``HostStatus`` list (empty while it does not run)."""
        monitor = self._monitor
        if monitor is None:
            return []
        try:
            return list(monitor.remote_statuses())
        except Exception:  # a collector stopping under us: the table still has the states
            return []

    def _run(self) -> None:
        from costmeter.service.monitor import Monitor, MonitorOptions

        options = MonitorOptions(
            db_path=self.db_path,
            config=self.config,
            simulate=self.simulate,
            seed=self.seed,
            interval_s=self.interval_s,
            remote=enabled_hosts(self.config),
            sources=self.config.sources,
        )
        monitor = Monitor(options, on_message=self._say)
        self._monitor = monitor
        self._opening = []
        try:
            monitor.open()
        except CostmeterError as exc:
            monitor.close()
            self._monitor = None
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # an unexpected failure still becomes a sentence
            monitor.close()
            self._monitor = None
            self.failed.emit(f"sampling could not start: {exc}")
            return
        assert monitor.host_info is not None
        reason = self._opening[0] if monitor.gpu_mode == "none" and self._opening else None
        self.started.emit(
            Started(
                monitor.host_info,
                tuple(monitor.devices),
                monitor.gpu_mode,
                monitor.interval_s,
                reason,
            )
        )
        monitor.add_listener(self._on_tick)
        monitor.add_remote_listener(self._on_tick)  # remote hosts' ticks, from their threads
        try:
            if not self._stop.is_set():
                monitor.run_until(None)
        except Exception as exc:
            self.failed.emit(f"sampling stopped: {exc}")
        finally:
            monitor.close()
            self._monitor = None
            self.stopped.emit()

    def _on_tick(self, tick: Tick) -> None:
        monitor = self._monitor
        devices = tuple(monitor.devices) if monitor is not None else ()
        self.ticked.emit(tick, devices)


def enabled_hosts(config: Config) -> tuple[RemoteHostConfig, ...]:
    """The configured remote hosts the user wants recorded."""
    return tuple(h for h in config.hosts if h.enabled)
