"""Sampling a machine that runs work for a multi-node backend (a Ray node), on that machine.

Costmeter hands a backend with ``Capability.NODE_SAMPLES`` the class :class:`NodeSampler` as
``BackendConfig.node_sampler``. The backend ships it to each node that runs work (it pickles by
reference: the node needs Costmeter installed) and calls it there, so the node is read by the
same samplers as this machine: :class:`~costmeter.sampling.nvml.NvmlSampler` and
:class:`~costmeter.sampling.host.HostSampler`.

``sample`` returns plain picklable data (``costmeter.core`` value types in a dict), which
travels back unchanged and is written by ``costmeter.service.node_ingest``. Energy intervals
are not computed here: the ingesting side keeps one energy tracker per node.

Environment variables read on the node:

- ``COSTMETER_SIMULATE``: a ``--simulate`` SPEC; the node then has simulated GPUs, and a run's
  process is put on the GPUs it was given (as ``costmeter run`` does on this machine), so
  attribution works without a GPU. ``COSTMETER_SEED`` seeds them (default 0).
- ``COSTMETER_NODE_NAME``: the name the node's samples carry instead of its hostname (for
  several nodes on one machine, or a machine that also runs Costmeter itself).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from costmeter.core.clock import Clock, SystemClock
from costmeter.core.errors import SamplerUnavailable
from costmeter.core.model import Tick
from costmeter.sampling.host import HostSampler
from costmeter.sampling.nvml import NvmlSampler

if TYPE_CHECKING:  # the simulator is imported only when asked for (never on the NVML path)
    from costmeter.sampling.simulated import FakeNvml

#: Bumped when the dict ``NodeSampler.sample`` returns changes shape.
FORMAT = 1
SIMULATE_ENV = "COSTMETER_SIMULATE"
SEED_ENV = "COSTMETER_SEED"
NODE_NAME_ENV = "COSTMETER_NODE_NAME"
#: A run's simulated workload when its GPU's spec names none.
DEFAULT_PROFILE = "train"


def node_name() -> str:
    """This machine's name in samples: ``COSTMETER_NODE_NAME`` or the hostname."""
    return os.environ.get(NODE_NAME_ENV, "").strip() or socket.gethostname()


class NodeSampler:
    """Reads the machine it is built on; ``sample(pids, gpus)`` gives one picklable reading.

    Built with no arguments by a backend (see the module doc); the keyword arguments are for
    tests. Safe to call from several threads (one lock around a reading).
    """

    def __init__(
        self,
        *,
        hostname: str | None = None,
        simulate: str | None = None,
        seed: int | None = None,
        process_scan_interval_s: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        self.hostname = hostname or node_name()
        clock = clock or SystemClock()
        if simulate is None:
            simulate = os.environ.get(SIMULATE_ENV, "").strip() or None
        if seed is None:
            seed = int(os.environ.get(SEED_ENV, "0") or 0)
        self._lock = threading.Lock()
        self._messages: list[str] = []
        self.fake: FakeNvml | None = None
        self._profiles: dict[int, str] = {}
        if simulate is not None:
            from costmeter.sampling.simulated import make_fake_nvml

            self.fake = make_fake_nvml(simulate, seed=seed, clock=clock)
            for dev in self.fake.devices:
                # The runs are the simulated GPUs' only workload, as with `costmeter run`.
                for proc in list(dev.processes):
                    self._profiles.setdefault(dev.index, proc.profile.name)
                    self.fake.detach_process(dev.index, proc.pid)
        self._gpu: NvmlSampler | None = NvmlSampler(self.fake, host=self.hostname, clock=clock)
        try:
            self._gpu.open()
        except SamplerUnavailable as exc:
            self._messages.append(f"{self.hostname}: {exc}")
            self._gpu = None
        self._host = HostSampler(
            clock=clock, hostname=self.hostname, process_scan_interval_s=process_scan_interval_s
        )
        self.host_info = self._host.info()
        #: Simulated only: the GPUs each run's top pid was put on.
        self._attached: dict[int, tuple[int, ...]] = {}

    @property
    def gpu_mode(self) -> str:
        if self._gpu is None:
            return "none"
        return "simulated" if self.fake is not None else "nvml"

    def sample(
        self, pids: Collection[int], gpus: Mapping[int, Sequence[int]] | None = None
    ) -> dict[str, Any]:
        """One reading: ``{"format", "host", "devices", "tick", "messages", "gpu_mode"}``.

        ``pids``: the runs' processes on this node (children are found by the host sampler).
        ``gpus``: a run's top pid -> the GPU indices it was given; used on simulated GPUs only.
        """
        with self._lock:
            if self.fake is not None:
                self._place(gpus or {})
            devices = self._gpu.sample() if self._gpu is not None else ()
            if self._gpu is not None:
                self._messages.extend(self._gpu.drain_messages())
            holders = {p.pid for d in devices for p in d.processes}
            host = self._host.sample(frozenset(set(pids) | holders))
            tick = Tick(ts=host.ts, host=self.hostname, host_sample=host, devices=devices)
            messages, self._messages = self._messages, []
            return {
                "format": FORMAT,
                "host": self.host_info,
                "devices": tuple(self._gpu.devices) if self._gpu is not None else (),
                "tick": tick,
                "messages": messages,
                "gpu_mode": self.gpu_mode,
            }

    def _place(self, gpus: Mapping[int, Sequence[int]]) -> None:
        """Put new runs on their simulated GPUs and take finished ones off."""
        fake = self.fake
        assert fake is not None
        count = len(fake.devices)
        for pid in list(self._attached):
            if pid not in gpus:
                for idx in self._attached.pop(pid):
                    fake.detach_process(idx, pid)
        for pid, indices in gpus.items():
            if pid in self._attached:
                continue
            placed = tuple(i for i in indices if 0 <= i < count)
            for idx in placed:
                profile = self._profiles.get(idx, DEFAULT_PROFILE)
                fake.attach_process(idx, pid, profile, name=_name_of(pid))
            self._attached[pid] = placed

    def close(self) -> None:
        with self._lock:
            if self._gpu is not None:
                self._gpu.close()
                self._gpu = None


def _name_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip() or "run"
    except OSError:
        return "run"
