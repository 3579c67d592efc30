"""Host names as different sources spell them: ``gpu01`` (Slurm's node name, ``hostname -s``)
and ``gpu01.cluster.example`` (an agent's or exporter's FQDN) are the same machine."""

from __future__ import annotations

from collections.abc import Iterable


def short_name(name: str) -> str:
    """The first label, lower-cased: ``GPU01.cluster.example`` -> ``gpu01``."""
    return name.strip().split(".", 1)[0].casefold()


def same_host(a: str, b: str) -> bool:
    """Whether two names mean one machine: equal (case aside), or one is the other's short name.

    Two fully qualified names in different domains (``gpu01.a.example``, ``gpu01.b.example``)
    are different machines.
    """
    a, b = a.strip().casefold(), b.strip().casefold()
    if not a or not b:
        return False
    if a == b:
        return True
    if ("." in a and "." in b) or _is_address(a) or _is_address(b):
        return False
    return short_name(a) == short_name(b)


def _is_address(name: str) -> bool:
    """An IP address (``10.0.0.7``, ``fe80::1``): its first part names no machine."""
    return ":" in name or all(part.isdigit() for part in name.split("."))


def pick_host(node: str, names: Iterable[str]) -> str | None:
    """The one of ``names`` that ``node`` means: the same spelling first, else the only name
    that is the same machine (None when none is, or several are and none is spelt alike)."""
    candidates = [n for n in names if same_host(node, n)]
    exact = [n for n in candidates if n == node]
    if exact:
        return exact[0]
    folded = [n for n in candidates if n.casefold() == node.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    return candidates[0] if len(candidates) == 1 else None
