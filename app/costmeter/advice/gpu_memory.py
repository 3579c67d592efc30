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
