"""The running agent: a sampling loop feeding the buffer and ``/metrics``, and the HTTP server.

The samplers are the recorder's (NVML or simulated GPUs, psutil for the host). With simulated
GPUs the profiles' processes stay on their GPUs, as with ``costmeter record --simulate``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from costmeter import __version__
from costmeter.core import Clock, SamplerUnavailable, SystemClock, Tick
from costmeter.core.model import DeviceInfo, HostInfo, ProcessSample
from costmeter.sampling.host import HostSampler
from costmeter.sampling.loop import SamplingLoop
from costmeter.sampling.nvml import NvmlSampler
from costmeter.service.agent import metrics
from costmeter.service.agent.api import make_routes
from costmeter.service.agent.auth import BearerAuth
from costmeter.service.agent.buffer import TickBuffer
from costmeter.service.agent.server import AgentServer

if TYPE_CHECKING:  # the simulator is imported only when asked for (never on the NVML path)
    from costmeter.sampling.simulated import FakeNvml

log = logging.getLogger(__name__)
MAX_MESSAGES = 50


@dataclass
class AgentOptions:
    listen: tuple[str, int]
    db_path: Path
    interval_s: float
    buffer_hours: float
    name: str | None = None
    token: str | None = None
    tls: ssl.SSLContext | None = None
    simulate: str | None = None
    seed: int = 0
    process_scan_interval_s: float = 2.0
    request_timeout_s: float = 5.0
    max_connections: int = 512
    max_per_client: int = 32
    #: (pid, GPU index): running processes shown on simulated GPUs (``--attach``).
    attach: tuple[tuple[int, int], ...] = ()


class Agent:
    def __init__(self, options: AgentOptions, *, on_message: Callable[[str], None]) -> None:
        self.options = options
        self.version = __version__
        self.interval_s = options.interval_s
        self._say = on_message
        self._clock: Clock = SystemClock()
        self._messages: deque[str] = deque(maxlen=MAX_MESSAGES)
        self._latest: Tick | None = None
        self._gpu: NvmlSampler | None = None
        self._fake: FakeNvml | None = None
        self._loop: SamplingLoop | None = None
        self._server: AgentServer | None = None
        self._serving: threading.Thread | None = None
        self.hostname = options.name or socket.gethostname()
        self.buffer = TickBuffer(options.db_path, retention_s=options.buffer_hours * 3600.0)
        if self.buffer.notice:
            self._note(self.buffer.notice)

    # -- what the endpoints read ---------------------------------------------------------------
    @property
    def host_info(self) -> HostInfo:
        return self._host_info

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        gpu = self._gpu
        return tuple(gpu.devices) if gpu is not None else ()

    @property
    def gpu_mode(self) -> str:
        if self._gpu is None:
            return "none"
        return "simulated" if self._fake is not None else "nvml"

    def messages(self) -> tuple[str, ...]:
        return tuple(self._messages)

    def snapshot(self) -> metrics.Snapshot:
        oldest, _, count = self.buffer.span()
        return metrics.Snapshot(
            host=self.host_info,
            devices=self.devices,
            tick=self._latest,
            version=self.version,
            gpu_mode=self.gpu_mode,
            buffered=count,
            oldest=oldest,
        )

    # -- life ---------------------------------------------------------------------------------
    def open(self) -> None:
        """Start the samplers and bind the server (raises OSError when the port is taken)."""
        opts = self.options
        if opts.simulate is not None:
            from costmeter.sampling.simulated import make_fake_nvml

            self._fake = make_fake_nvml(
                opts.simulate, seed=opts.seed, clock=self._clock, machine=self.hostname
            )
            self._attach(self._fake, opts.attach)
        self._gpu = NvmlSampler(self._fake, host=self.hostname, clock=self._clock)
        try:
            self._gpu.open()
        except SamplerUnavailable as exc:
            self._note(str(exc))
            self._gpu = None
        self._host = HostSampler(
            clock=self._clock,
            hostname=self.hostname,
            process_scan_interval_s=opts.process_scan_interval_s,
            process_fallback=self._simulated_process if self._fake is not None else None,
        )
        self._host_info = self._host.info()
        self._server = AgentServer(
            opts.listen,
            make_routes(self),
            BearerAuth(opts.token),
            tls=opts.tls,
            request_timeout_s=opts.request_timeout_s,
            max_connections=opts.max_connections,
            max_per_client=opts.max_per_client,
        )

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def start(self) -> None:
        assert self._server is not None
        self.buffer.start()
        self._loop = SamplingLoop(
            self._tick, interval_s=self.interval_s, clock=self._clock, on_error=self._note
        )
        self._loop.start()
        self._serving = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="agent-http"
        )
        self._serving.daemon = True
        self._serving.start()

    def close(self) -> None:
        """Stop serving, stop sampling, write what the buffer holds."""
        if self._server is not None:
            if self._serving is not None:
                self._server.shutdown()
                self._serving.join(5.0)
            self._server.server_close()
        if self._loop is not None:
            self._loop.stop()
        self.buffer.close()
        if self._gpu is not None:
            self._gpu.close()

    # -- sampling -----------------------------------------------------------------------------
    def _tick(self) -> None:
        gpu = self._gpu
        devices = gpu.sample() if gpu is not None else ()
        if gpu is not None:
            for message in gpu.drain_messages():
                self._note(message)
        pids = frozenset(p.pid for d in devices for p in d.processes)
        host = self._host.sample(pids)
        tick = Tick(ts=host.ts, host=self.hostname, host_sample=host, devices=devices)
        self._latest = tick
        self.buffer.put(tick)

    @staticmethod
    def _attach(fake: FakeNvml, pairs: tuple[tuple[int, int], ...]) -> None:
        """Show running processes on simulated GPUs (as ``costmeter run --simulate`` shows a
        run), beside the GPU's own stand-in: the host sampler then reads them, owner included,
        from /proc as on a machine with GPUs. ValueError in words for a bad GPU or PID."""
        from costmeter.sampling.simulated.spec import DEFAULT_PROFILE

        for pid, index in pairs:
            if not 0 <= index < len(fake.devices):
                raise ValueError(
                    f"--attach {pid}:{index}: the simulated machine has GPUs 0 to "
                    f"{len(fake.devices) - 1}."
                )
            try:
                proc = psutil.Process(pid)
                name, cmdline, created = proc.name(), " ".join(proc.cmdline()), proc.create_time()
            except psutil.Error:
                raise ValueError(f"--attach {pid}:{index}: no running process {pid}.") from None
            stand_in = fake.devices[index].processes
            profile = stand_in[0].profile.name if stand_in else DEFAULT_PROFILE
            fake.attach_process(
                index, pid, profile, name=name, cmdline=cmdline, create_time=created
            )

    def _simulated_process(self, pid: int) -> ProcessSample | None:
        if self._fake is None:
            return None
        from costmeter.sampling.simulated import PID_BASE

        return self._fake.process_sample(pid) if pid >= PID_BASE else None

    def _note(self, message: str) -> None:
        self._messages.append(message[:1000])
        self._say(message)
