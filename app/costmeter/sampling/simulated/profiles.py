"""Workload profiles: what a simulated process does to its GPU and CPU, second by second.

A profile's ``load`` is a pure function of three uniforms drawn for (seed, device, pid, second),
the seconds since the process started, and (for phased profiles) whether the current phase is a
busy one. It returns ``(gpu_util %, memory-controller util %, share of device memory held,
process CPU % of one core)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Load = tuple[float, float, float, float]
LoadFn = Callable[[float, float, float, int, bool], Load]

GIB = 1024**3

#: Phased profiles switch between busy and idle in windows of this many seconds; each window is
#: busy or idle at random, so phases last from one window to several minutes.
PHASE_WINDOW_S = 30

#: A leaking process grows from its starting share to ``LEAK_CAP`` of the board in this time.
LEAK_FILL_S = 2 * 3600
LEAK_START = 0.20
LEAK_CAP = 0.97


def _free(u0: float, u1: float, u2: float, elapsed: int, busy: bool) -> Load:
    return (0.0, 0.0, 0.0, 0.0)


def _idle(u0: float, u1: float, u2: float, elapsed: int, busy: bool) -> Load:
    # A notebook kernel that holds its tensors and does nothing; a blip now and then.
    gpu = 1.0 + 2.0 * u1 if u0 > 0.95 else 0.0
    return (gpu, 0.0, 0.30, 0.5 + 1.5 * u2)


def _train(u0: float, u1: float, u2: float, elapsed: int, busy: bool) -> Load:
    return (90.0 + 8.0 * u0, 40.0 + 20.0 * u1, 0.70 + 0.005 * u2, 95.0 + 15.0 * u2)


def _bursty(u0: float, u1: float, u2: float, elapsed: int, busy: bool) -> Load:
    if busy:
        return (85.0 + 14.0 * u0, 35.0 + 25.0 * u1, 0.55, 100.0 + 20.0 * u2)
    return (3.0 * u0, 2.0 * u1, 0.55, 4.0 + 8.0 * u2)


def _input_bound(u0: float, u1: float, u2: float, elapsed: int, busy: bool) -> Load:
    # Data loading and augmentation on the CPU starve the GPU.
    return (20.0 + 15.0 * u0, 8.0 + 10.0 * u1, 0.45, 300.0 + 100.0 * u2)


def _memory_leak(u0: float, u1: float, u2: float, elapsed: int, busy: bool) -> Load:
    held = min(LEAK_CAP, LEAK_START + (LEAK_CAP - LEAK_START) * elapsed / LEAK_FILL_S)
    return (60.0 + 20.0 * u0, 30.0 + 10.0 * u1, held, 90.0 + 20.0 * u2)


def _memory_bound(u0: float, u1: float, u2: float, elapsed: int, busy: bool) -> Load:
    # Embedding lookups and element-wise kernels: the memory controller is the bottleneck, the
    # SMs wait on it, and the board draws near its limit (see ``device.load_fraction``).
    return (45.0 + 15.0 * u0, 86.0 + 10.0 * u1, 0.60, 95.0 + 15.0 * u2)


def _light(u0: float, u1: float, u2: float, elapsed: int, busy: bool) -> Load:
    # Small-batch inference of a small model: a little work, a little memory, all the time.
    return (8.0 + 14.0 * u0, 3.0 + 5.0 * u1, 0.10, 30.0 + 20.0 * u2)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    summary: str
    load: LoadFn
    #: Whether the profile alternates busy and idle phases (see ``PHASE_WINDOW_S``).
    phased: bool
    #: Whether a device with this profile gets a process at all.
    has_process: bool
    cmdline: str
    #: Resident memory of the process on the host, in bytes.
    rss: int
    #: Disk reads the process causes on the host while running, bytes per second.
    disk_read_bps: float


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("free", "no process, utilisation 0", _free, False, False, "", 0, 0.0),
        Profile(
            "idle",
            "a process holds 30% of memory and computes nothing",
            _idle,
            False,
            True,
            "python -m ipykernel_launcher -f /tmp/kernel-sim.json",
            6 * GIB,
            0.0,
        ),
        Profile(
            "train",
            "steady training, utilisation 90-98%, memory 70%",
            _train,
            False,
            True,
            "python train.py --model resnet50 --batch-size 256",
            12 * GIB,
            40e6,
        ),
        Profile(
            "bursty",
            "busy and idle phases of tens of seconds to minutes",
            _bursty,
            True,
            True,
            "python serve.py --model llama-7b --port 8000",
            18 * GIB,
            2e6,
        ),
        Profile(
            "input-bound",
            "GPU 20-35% busy while the process keeps 3-4 CPU cores busy",
            _input_bound,
            False,
            True,
            "python train.py --model efficientnet_b0 --num-workers 3 --data /data/imagenet",
            24 * GIB,
            250e6,
        ),
        Profile(
            "memory-leak",
            "memory held grows steadily until the board is nearly full",
            _memory_leak,
            False,
            True,
            "python finetune.py --model bert-large --cache-activations",
            10 * GIB,
            10e6,
        ),
        Profile(
            "memory-bound",
            "memory controller 86-96% busy, SMs 45-60%, power near the limit",
            _memory_bound,
            False,
            True,
            "python train_dlrm.py --embedding-dim 256 --batch-size 65536",
            14 * GIB,
            20e6,
        ),
        Profile(
            "light",
            "small-batch inference: utilisation 8-22%, memory 10%",
            _light,
            False,
            True,
            "python serve.py --model resnet18 --batch-size 4",
            3 * GIB,
            1e6,
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (underscores accepted for hyphens); KeyError if unknown."""
    return PROFILES[name.strip().lower().replace("_", "-")]
