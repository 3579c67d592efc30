"""Memory per GPU model, for "the cheapest GPU whose memory fits".

The price table has no memory column (prices change, memory does not): a row's memory is read
from its name when the name states it ("A100 80GB", "H200 141GB"), else from ``KNOWN`` (the
smaller variant where a model comes in two sizes, so a recommendation never overestimates).
"""

from __future__ import annotations

import re

_GB_IN_NAME = re.compile(r"(\d+(?:\.\d+)?)\s*GB\b", re.IGNORECASE)

#: (pattern, GB): first match wins; vendors' data sheets.
KNOWN: tuple[tuple[str, float], ...] = (
    (r"H200", 141.0),
    (r"H100\s*NVL", 94.0),
    (r"H100", 80.0),
    (r"A100", 40.0),
    (r"L40S?", 48.0),
    (r"A10G", 24.0),
    (r"\bA10\b", 24.0),
    (r"RTX\s*4090", 24.0),
    (r"\bL4\b", 24.0),
    (r"\bT4\b", 16.0),
    (r"V100", 16.0),
    (r"\bP4\b", 8.0),
)


def memory_gb_for(model: str) -> float | None:
    """GB of memory of the model called ``model`` (a price row's name); None when unknown."""
    found = _GB_IN_NAME.search(model)
    if found:
        return float(found.group(1))
    for pattern, gb in KNOWN:
        if re.search(pattern, model, re.IGNORECASE):
            return gb
    return None


#: Driver reserve measured on real boards (NVML memory info v2 ``reserved``), MiB, by model:
#: H100 80GB HBM3, driver 590.48.01: 479 MiB (the nvidia-smi captures in tests/data/nvml).
RESERVED_MIB: tuple[tuple[str, int], ...] = ((r"H100", 479),)

#: Share of the board assumed reserved for a model without a measurement: 1/160 (512 MiB on
#: 80 GiB; the H100's measured 479 MiB is 0.59 % of its 81,559 MiB), the project's NVML
#: simulator's figure (``sampling/simulated/models.py``). It only has to keep an empty board
#: from looking "held": ``idle_held_mib`` (512 MiB) sits on top of it.
RESERVED_SHARE = 1 / 160


def reserved_estimate(memory_total: int | None, model: str = "") -> int:
    """Bytes the driver is assumed to reserve on a ``model`` board of ``memory_total`` bytes."""
    for pattern, mib in RESERVED_MIB:
        if re.search(pattern, model, re.IGNORECASE):
            return mib * 1024 * 1024
    return int(memory_total * RESERVED_SHARE) if memory_total else 0
