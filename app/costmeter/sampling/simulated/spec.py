"""The ``--simulate SPEC`` mini-language: a GPU count, or a comma list of ``model[:profile]``."""

from __future__ import annotations

from dataclasses import dataclass

from costmeter.sampling.simulated.models import MODELS
from costmeter.sampling.simulated.profiles import PROFILES, get_profile

DEFAULT_PROFILE = "train"
MAX_DEVICES = 64

#: What a bare count cycles through: a mixed fleet showing every profile.
DEFAULT_MIX: tuple[tuple[str, str], ...] = (
    ("a100", "train"),
    ("h100", "idle"),
    ("rtx4090", "bursty"),
    ("t4", "input-bound"),
    ("l4", "memory-leak"),
    ("a10g", "free"),
    ("h100", "train"),
    ("a100", "memory-bound"),
    ("t4", "light"),
)


@dataclass(frozen=True, slots=True)
class SimDeviceSpec:
    model: str
    profile: str = DEFAULT_PROFILE


def _usage(problem: str) -> ValueError:
    return ValueError(
        f"Invalid --simulate value: {problem}. Give a GPU count (e.g. 4) or a comma list of "
        f"model[:profile] (e.g. a100:idle,h100:train). Models: {', '.join(MODELS)}. "
        f"Profiles: {', '.join(PROFILES)} (default {DEFAULT_PROFILE})."
    )


def parse_spec(spec: str) -> list[SimDeviceSpec]:
    """Parse SPEC; raise ValueError naming the valid models and profiles when it is wrong."""
    text = spec.strip()
    if not text:
        raise _usage("it is empty")
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= MAX_DEVICES:
            raise _usage(f"the GPU count must be between 1 and {MAX_DEVICES}, not {count}")
        return [SimDeviceSpec(*DEFAULT_MIX[i % len(DEFAULT_MIX)]) for i in range(count)]
    out: list[SimDeviceSpec] = []
    for raw in text.split(","):
        item = raw.strip()
        model, _, profile = item.partition(":")
        model = model.strip().lower()
        if model not in MODELS:
            raise _usage(f"unknown GPU model '{model or item}'")
        try:
            name = get_profile(profile).name if profile.strip() else DEFAULT_PROFILE
        except KeyError:
            raise _usage(f"unknown profile '{profile.strip()}'") from None
        out.append(SimDeviceSpec(model, name))
    if len(out) > MAX_DEVICES:
        raise _usage(f"at most {MAX_DEVICES} GPUs can be simulated, not {len(out)}")
    return out
