"""The ``--simulate SPEC`` mini-language: a GPU count, or a comma list of
``model[:profile][:mig=PROFILE+PROFILE*N...]`` (a GPU in MIG mode with those MIG devices; the
profile's process runs on the first one)."""

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
    #: MIG profile names of the GPU's MIG devices, in order; empty: MIG mode off.
    mig: tuple[str, ...] = ()


def _usage(problem: str) -> ValueError:
    return ValueError(
        f"Invalid --simulate value: {problem}. Give a GPU count (e.g. 4) or a comma list of "
        f"model[:profile] (e.g. a100:idle,h100:train), optionally with MIG devices "
        f"(h100:train:mig=3g.40gb+1g.10gb*2). Models: {', '.join(MODELS)}. "
        f"Profiles: {', '.join(PROFILES)} (default {DEFAULT_PROFILE})."
    )


def _parse_mig(model: str, text: str) -> tuple[str, ...]:
    """``mig=3g.40gb+1g.10gb*2`` -> ("3g.40gb", "1g.10gb", "1g.10gb"), checked against the
    model's profiles and its seven compute slices."""
    gpu = MODELS[model]
    offered = ", ".join(p.name for p in gpu.mig_profiles)
    if not gpu.mig_profiles:
        with_mig = ", ".join(k for k, m in MODELS.items() if m.mig_profiles)
        raise _usage(f"'{model}' has no MIG profiles (MIG is simulated on: {with_mig})")
    key, _, value = text.partition("=")
    if key.strip().lower() != "mig" or not value.strip():
        raise _usage(f"'{text}' is not mig=PROFILE+PROFILE*N (profiles of {model}: {offered})")
    out: list[str] = []
    for part in value.split("+"):
        name, star, times = part.strip().lower().partition("*")
        if gpu.mig_profile(name.strip()) is None:
            raise _usage(f"unknown MIG profile '{name.strip()}' for {model} (offered: {offered})")
        count = int(times) if star and times.strip().isdigit() else (1 if not star else 0)
        if count < 1:
            raise _usage(f"'{part.strip()}' needs a whole count of at least 1 after '*'")
        out.extend([name.strip()] * count)
    slices = sum(p.slices for p in (gpu.mig_profile(n) for n in out) if p is not None)
    if slices > 7:
        raise _usage(f"the MIG devices {'+'.join(out)} need {slices} of {model}'s 7 slices")
    return tuple(out)


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
        model, _, rest = item.partition(":")
        profile, _, mig_text = rest.partition(":")
        model = model.strip().lower()
        if model not in MODELS:
            raise _usage(f"unknown GPU model '{model or item}'")
        if profile.strip().lower().startswith("mig="):  # model:mig=... with the default profile
            profile, mig_text = "", profile
        try:
            name = get_profile(profile).name if profile.strip() else DEFAULT_PROFILE
        except KeyError:
            raise _usage(f"unknown profile '{profile.strip()}'") from None
        mig = _parse_mig(model, mig_text.strip()) if mig_text.strip() else ()
        out.append(SimDeviceSpec(model, name, mig))
    if len(out) > MAX_DEVICES:
        raise _usage(f"at most {MAX_DEVICES} GPUs can be simulated, not {len(out)}")
    return out
