"""GPU models the simulator knows, with their published specifications.

Figures are what ``nvidia-smi``/NVML report for the board (memory in MiB as NVML counts it,
default power limit, clocks), rounded where boards vary. Idle power and temperatures are typical
values for an idle board in a ventilated server; they are not guaranteed by the vendor.
"""

from __future__ import annotations

from dataclasses import dataclass

# NVML_DEVICE_ARCH_* values (part of the NVML C ABI; pynvml exposes the same numbers).
ARCH_PASCAL = 4
ARCH_VOLTA = 5
ARCH_TURING = 6
ARCH_AMPERE = 7
ARCH_ADA = 8
ARCH_HOPPER = 9

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MigProfile:
    """A MIG GPU-instance profile as ``nvidia-smi`` shows it on a real board."""

    name: str
    #: Compute slices of the GPU's seven.
    slices: int
    memory_mib: int
    sm_count: int
    #: What an idle instance of this profile shows as used (the instance's own overhead).
    idle_used_mib: int


@dataclass(frozen=True, slots=True)
class GpuModel:
    key: str
    #: The name NVML reports (``nvmlDeviceGetName``).
    name: str
    memory_mib: int
    power_limit_w: int
    idle_w: float
    #: An ``NVML_DEVICE_ARCH_*`` value.
    architecture: int
    compute_capability: tuple[int, int]
    max_sm_mhz: int
    idle_sm_mhz: int
    max_mem_mhz: int
    idle_mem_mhz: int
    idle_temp_c: int
    load_temp_c: int
    #: pynvml function names that raise ``NVMLError_NotSupported`` on this board.
    unsupported: frozenset[str] = frozenset()
    #: What the driver reserves (memory info v2 ``reserved``; part of v1 ``used``). None: no
    #: capture of this board, so the estimate ``memory_mib // 160`` is used.
    reserved_mib: int | None = None
    #: MIG profiles this board offers, by name; empty: no MIG.
    mig_profiles: tuple[MigProfile, ...] = ()

    @property
    def memory_total(self) -> int:
        return self.memory_mib * MIB

    @property
    def memory_reserved(self) -> int:
        mib = self.reserved_mib if self.reserved_mib is not None else self.memory_mib // 160
        return mib * MIB

    def mig_profile(self, name: str) -> MigProfile | None:
        return next((p for p in self.mig_profiles if p.name == name), None)


MODELS: dict[str, GpuModel] = {
    m.key: m
    for m in (
        GpuModel(
            key="a100",
            name="NVIDIA A100-SXM4-80GB",
            memory_mib=81920,
            power_limit_w=400,
            idle_w=60.0,
            architecture=ARCH_AMPERE,
            compute_capability=(8, 0),
            max_sm_mhz=1410,
            idle_sm_mhz=210,
            max_mem_mhz=1593,
            idle_mem_mhz=1593,
            idle_temp_c=32,
            load_temp_c=68,
        ),
        GpuModel(
            key="h100",
            name="NVIDIA H100 80GB HBM3",
            memory_mib=81559,
            power_limit_w=700,
            idle_w=70.0,
            architecture=ARCH_HOPPER,
            compute_capability=(9, 0),
            max_sm_mhz=1980,
            idle_sm_mhz=345,
            max_mem_mhz=2619,
            idle_mem_mhz=2619,
            idle_temp_c=30,
            load_temp_c=70,
            # nvidia_gpu_exporter's H100 captures (driver 590.48.01), see tests/data/nvml.
            reserved_mib=479,
            mig_profiles=(
                MigProfile("3g.40gb", 3, 40448, 60, 26),
                MigProfile("2g.20gb", 2, 20096, 32, 17),
                MigProfile("1g.10gb", 1, 9984, 16, 9),
            ),
        ),
        GpuModel(
            key="rtx4090",
            name="NVIDIA GeForce RTX 4090",
            memory_mib=24564,
            power_limit_w=450,
            idle_w=20.0,
            architecture=ARCH_ADA,
            compute_capability=(8, 9),
            max_sm_mhz=2520,
            idle_sm_mhz=210,
            max_mem_mhz=10501,
            idle_mem_mhz=405,
            idle_temp_c=35,
            load_temp_c=72,
        ),
        GpuModel(
            key="t4",
            name="Tesla T4",
            memory_mib=15360,
            power_limit_w=70,
            idle_w=10.0,
            architecture=ARCH_TURING,
            compute_capability=(7, 5),
            max_sm_mhz=1590,
            idle_sm_mhz=300,
            max_mem_mhz=5001,
            idle_mem_mhz=405,
            idle_temp_c=38,
            load_temp_c=76,
        ),
        GpuModel(
            key="l4",
            name="NVIDIA L4",
            memory_mib=23034,
            power_limit_w=72,
            idle_w=16.0,
            architecture=ARCH_ADA,
            compute_capability=(8, 9),
            max_sm_mhz=2040,
            idle_sm_mhz=210,
            max_mem_mhz=6251,
            idle_mem_mhz=405,
            idle_temp_c=35,
            load_temp_c=75,
        ),
        GpuModel(
            key="a10g",
            name="NVIDIA A10G",
            memory_mib=23028,
            power_limit_w=300,
            idle_w=25.0,
            architecture=ARCH_AMPERE,
            compute_capability=(8, 6),
            max_sm_mhz=1710,
            idle_sm_mhz=210,
            max_mem_mhz=6251,
            idle_mem_mhz=405,
            idle_temp_c=30,
            load_temp_c=70,
        ),
        # Pascal: NVML's total energy counter needs Volta or newer, so this board exercises
        # the "not supported" path without any fault injection.
        GpuModel(
            key="p4",
            name="Tesla P4",
            memory_mib=7680,
            power_limit_w=75,
            idle_w=7.0,
            architecture=ARCH_PASCAL,
            compute_capability=(6, 1),
            max_sm_mhz=1531,
            idle_sm_mhz=455,
            max_mem_mhz=3003,
            idle_mem_mhz=405,
            idle_temp_c=36,
            load_temp_c=80,
            unsupported=frozenset({"nvmlDeviceGetTotalEnergyConsumption"}),
        ),
    )
}
