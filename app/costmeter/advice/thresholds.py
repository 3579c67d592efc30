"""Every threshold and window the rules use, as data: defaults here, overrides in ``[advice]``.

Each field's comment says where its default comes from (see docs/ADVICE.md for the longer why).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from costmeter.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Thresholds:
    # -- evidence ------------------------------------------------------------------------------
    #: Minutes of samples a target needs before any rule speaks (shorter is noise).
    min_evidence_minutes: float = 10.0
    #: Minutes of evidence that give full confidence (an hour covers a training epoch or two).
    full_confidence_minutes: float = 60.0

    # -- idle-gpu ------------------------------------------------------------------------------
    #: Utilisation under this is "doing nothing" (NVML counts any kernel; 5% = a stray blip).
    idle_util_pct: float = 5.0
    #: An idle stretch must last this long (the issue's 10 minutes: longer than a data reload).
    idle_minutes: float = 10.0
    #: Memory a process must hold to count as "held" (below it: a CUDA context, ~300 MiB).
    idle_held_mib: float = 512.0
    #: A GPU "did essentially nothing" when at most this share of its samples reach
    #: ``idle_util_pct`` (on the GenAI serving trace the idle pods sit at 0-4 %, the serving
    #: replicas at 20-50 %; see docs/ADVICE.md).
    idle_max_busy_share: float = 0.05

    # -- kept-allocation -----------------------------------------------------------------------
    #: The quiet stretch that runs up to the end of the window must last this long...
    kept_minutes: float = 60.0
    #: ...and be this many times longer than any pause before it (a lull between bursts is not
    #: the end of the work).
    kept_lull_factor: float = 2.0

    # -- bursty-load ---------------------------------------------------------------------------
    #: A GPU works in bursts when at most this share of its samples are busy (>= idle_util_pct)
    #: and it has a pause of at least ``idle_minutes``.
    burst_max_busy_share: float = 0.7
    #: Utilisation each GPU should run at when the load is re-spread (headroom for peaks).
    burst_target_util_pct: float = 70.0
    #: The fewest GPUs an autoscaled group keeps during lulls (a warm replica for latency).
    burst_floor_gpus: float = 1.0
    #: Minutes between two autoscaling decisions (each sized for the peak of its interval).
    burst_scale_minutes: float = 10.0

    # -- underused-gpu -------------------------------------------------------------------------
    #: p95 utilisation under this: even the busiest moments leave most of the GPU unused.
    underused_p95_pct: float = 40.0

    # -- overallocated -------------------------------------------------------------------------
    #: A GPU of a run whose mean utilisation is under this (and holds no memory) is unused.
    overallocated_util_pct: float = 5.0

    # -- memory-headroom -----------------------------------------------------------------------
    #: Peak memory under this share of capacity (the issue's 40%).
    headroom_peak_pct: float = 40.0
    #: A smaller GPU must hold peak x this (20% margin for fragmentation and spikes).
    headroom_fit_factor: float = 1.2

    # -- memory-pressure -----------------------------------------------------------------------
    #: Memory above this share of capacity is "full" (the allocator's cache fills the rest).
    pressure_mem_pct: float = 95.0
    #: Minutes above ``pressure_mem_pct`` needed (one sample could be a cache spike).
    pressure_minutes: float = 1.0

    # -- input-bound ---------------------------------------------------------------------------
    #: Mean GPU utilisation under this counts as starved (a fed GPU runs at 80%+).
    input_util_pct: float = 50.0
    #: Median CPU of the GPU's processes, in cores, at or above this: the CPU side is saturated
    #: (a fed training loop keeps about one core busy; workers decoding data keep several).
    input_cpu_cores: float = 2.0
    #: Utilisation a fed GPU reaches (the steady ``train`` profile runs at 90-98%): the savings
    #: assume the same work at this utilisation.
    input_fed_util_pct: float = 90.0

    # -- power-cap -----------------------------------------------------------------------------
    #: Memory-controller utilisation at or above this: the run waits on memory.
    powercap_mem_util_pct: float = 60.0
    #: ...while SM (kernel) utilisation is at most this: compute is not the limit.
    powercap_sm_max_pct: float = 70.0
    #: ...and mean power is at least this share of the limit (running "at full power").
    powercap_power_share: float = 0.85
    #: The suggested limit as a share of the current one (memory-bound kernels lose little
    #: speed down to ~70% of the limit on A100/H100; measure it, see ADVICE.md).
    powercap_target_share: float = 0.70
    #: Expected slowdown of a memory-bound run at the suggested limit (a share: 0.05 = 5%).
    powercap_expected_slowdown: float = 0.05

    # -- pack-sweep ----------------------------------------------------------------------------
    #: Every run of the sweep uses under this mean utilisation (the issue's 50%).
    pack_util_pct: float = 50.0
    #: ...and under this share of the GPU's memory at peak (so K of them fit).
    pack_mem_pct: float = 45.0
    #: A sweep needs at least this many runs to be packed.
    pack_min_runs: float = 2.0

    # -- checkpoints ---------------------------------------------------------------------------
    #: Checkpoints of one series to keep, the newest by their step/epoch numbers (2: the last
    #: one and the one before it, in case the last was written during a crash).
    checkpoint_keep: float = 2.0
    #: Superseded checkpoints must hold at least this much before the rule speaks (1 MiB: less
    #: is not worth a decision).
    checkpoint_min_mib: float = 1.0

    # -- cheaper-gpu ---------------------------------------------------------------------------
    #: Another model must do the same work for at least this share less (the estimate stands on
    #: datasheet figures, not a benchmark of this code: a smaller gap is within its error, and
    #: moving costs effort).
    cheaper_gpu_min_saving: float = 0.20

    # -- scaling -------------------------------------------------------------------------------
    #: The cheapest number of processes must cost at least this share less per unit of work
    #: than the dearest one (5%: two runs of the same command differ by about that much).
    scaling_min_saving: float = 0.05

    # -- budget-forecast -----------------------------------------------------------------------
    #: Warn when the forecast exceeds the budget by this share (0 = as soon as it exceeds it).
    budget_margin: float = 0.0

    def to_mapping(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_mapping(cls, m: Mapping[str, float]) -> Thresholds:
        """Defaults with ``m``'s values on top; an unknown key is a ConfigError naming it."""
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, float] = {}
        for key, value in m.items():
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"'{key}' is not an advice threshold.{hint}", key=f"advice.{key}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(
                    f"'{key}' must be a number of at least 0, got {value!r}.",
                    key=f"advice.{key}",
                )
            values[key] = float(value)
        return cls(**values)


DEFAULT_THRESHOLDS = Thresholds()
