"""Who a process's cost goes to in each ``report --by`` dimension (user, job, container...),
and the ``[[attribution.rules]]`` that map users, accounts and namespaces to a project."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from costmeter.core.owner import Owner

DIMENSIONS: tuple[str, ...] = (
    "user",
    "job",
    "account",
    "container",
    "pod",
    "namespace",
    "run",
    "project",
    "host",
    "gpu-model",
)
TAG_PREFIX = "tag:"
#: The label of the CPU in the ``gpu-model`` dimension.
CPU_MODEL = "CPU"


# -- configuration: [[attribution.rules]] --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AttributionRule:
    """Processes of these users, accounts or namespaces (glob patterns) belong to ``project``."""

    project: str
    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()

    def matches(self, owner: Owner) -> bool:
        for patterns, values in (
            (self.users, (owner.user, owner.job_user)),
            (self.accounts, (owner.account,)),
            (self.namespaces, (owner.namespace,)),
        ):
            for value in values:
                if value is not None and any(fnmatch.fnmatchcase(value, p) for p in patterns):
                    return True
        return False


def project_of(
    owner: Owner, tags: Mapping[str, str] | None, rules: Sequence[AttributionRule]
) -> str | None:
    """A run's ``project`` tag, else the first matching rule's project, else None."""
    if tags and tags.get("project"):
        return tags["project"]
    return next((r.project for r in rules if r.matches(owner)), None)


# -- dimensions ---------------------------------------------------------------------------------
def check_dimension(text: str) -> str:
    """``text`` as a dimension ("user", "tag:team"), or a ValueError that lists them."""
    name = text.strip()
    if name.lower() in DIMENSIONS:
        return name.lower()
    if name.lower().startswith(TAG_PREFIX) and name[len(TAG_PREFIX) :].strip():
        return TAG_PREFIX + name[len(TAG_PREFIX) :].strip()
    raise ValueError(
        f"{text.strip()!r} is not a dimension; give one of {', '.join(DIMENSIONS)} or tag:KEY."
    )


def parse_by(text: str) -> tuple[str, ...]:
    """``"project,user"`` -> ``("project", "user")``: one or two distinct dimensions."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if not parts:
        raise ValueError(f"'' is not a dimension; give one of {', '.join(DIMENSIONS)} or tag:KEY.")
    if len(parts) > 2:
        raise ValueError(
            f"{text.strip()!r} is not one or two dimensions; give at most two, such as "
            "project,user."
        )
    dims = tuple(check_dimension(p) for p in parts)
    if len(set(dims)) != len(dims):
        raise ValueError(f"{text.strip()!r} is not two dimensions; give {dims[0]!r} once.")
    return dims


def _short_container(owner: Owner) -> str | None:
    if owner.container:
        return owner.container
    return owner.container_id[:12] if owner.container_id else None


def _job(owner: Owner) -> str | None:
    if owner.array_job_id and owner.array_task_id:
        return f"{owner.array_job_id}_{owner.array_task_id}"
    return owner.job_id


@dataclass(frozen=True, slots=True)
class Who:
    """Everything a key may be built from: a process (or a run) on one device."""

    owner: Owner
    run_id: int | None
    tags: Mapping[str, str]
    host: str
    model: str


def owner_key(
    who: Who, by: Sequence[str], rules: Sequence[AttributionRule]
) -> tuple[str | None, ...]:
    o = who.owner
    values: list[str | None] = []
    for dim in by:
        if dim == "user":
            values.append(o.user or o.job_user)
        elif dim == "job":
            values.append(_job(o))
        elif dim == "account":
            values.append(o.account)
        elif dim == "container":
            values.append(_short_container(o))
        elif dim == "pod":
            values.append(o.pod or o.pod_uid)
        elif dim == "namespace":
            values.append(o.namespace)
        elif dim == "run":
            values.append(None if who.run_id is None else str(who.run_id))
        elif dim == "project":
            values.append(project_of(o, who.tags, rules))
        elif dim == "host":
            values.append(who.host)
        elif dim == "gpu-model":
            values.append(who.model)
        elif dim.startswith(TAG_PREFIX):
            values.append(who.tags.get(dim[len(TAG_PREFIX) :]))
        else:
            raise ValueError(f"unknown dimension {dim!r}")
    return tuple(values)


def unreadable_why(owner: Owner) -> str:
    if owner.unreadable:
        return "owner unreadable: " + ", ".join(sorted(owner.unreadable))
    return "owner not recorded"
