"""The agent's endpoints: ``/metrics``, ``/v1/info`` and ``/v1/samples`` (see docs/AGENT.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST

from costmeter.core.model import DeviceInfo, HostInfo
from costmeter.sampling import wire
from costmeter.service.agent import metrics
from costmeter.service.agent.buffer import TickBuffer
from costmeter.service.agent.server import BadRequest, Response, Route

DEFAULT_LIMIT = 600
MAX_LIMIT = 3600
#: A page of samples stops before this many bytes of JSON (``more`` then says so).
MAX_PAGE_BYTES = 16 * 1024 * 1024
#: Parameters in one query (parse_qs stops there).
MAX_FIELDS = 8


class AgentState(Protocol):
    """What the endpoints read from the running agent."""

    version: str
    interval_s: float
    buffer: TickBuffer

    @property
    def host_info(self) -> HostInfo: ...

    @property
    def devices(self) -> tuple[DeviceInfo, ...]: ...

    @property
    def gpu_mode(self) -> str: ...

    def messages(self) -> tuple[str, ...]: ...

    def snapshot(self) -> metrics.Snapshot: ...


def _query(text: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters; BadRequest names at most a parameter this endpoint takes, never
    what the client sent (a malformed 8 KB query must not come back in the answer)."""
    takes = ", ".join(allowed) if allowed else "no parameters"
    try:
        parsed = parse_qs(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS
        )
    except ValueError:
        raise BadRequest(
            f"the query string is malformed: give at most {MAX_FIELDS} NAME=VALUE parameters "
            f"joined by &; this endpoint takes {takes}."
        ) from None
    out: dict[str, str] = {}
    for key, values in parsed.items():
        if key not in allowed:
            raise BadRequest(
                f"the query has a parameter this endpoint does not take (it takes {takes})."
            )
        if len(values) != 1:
            raise BadRequest(f"the parameter '{key}' is given more than once.")
        out[key] = values[0]
    return out


def parse_samples_query(text: str) -> tuple[float, int]:
    """``since`` (seconds since the epoch, default: everything) and ``limit`` (capped)."""
    query = _query(text, ("since", "limit"))
    since = -math.inf
    if "since" in query:
        try:
            since = float(query["since"])
        except ValueError:
            since = math.nan
        if not math.isfinite(since):
            raise BadRequest(
                "'since' must be a time in seconds since the epoch, e.g. 1700000000.5."
            )
    limit = DEFAULT_LIMIT
    if "limit" in query:
        raw = query["limit"]
        if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
            raise BadRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}.")
        limit = min(int(raw), MAX_LIMIT)
    return since, limit


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def make_routes(agent: AgentState) -> dict[str, Route]:
    registry = metrics.make_registry(agent.snapshot)

    def metrics_route(query: str) -> Response:
        return Response(200, metrics.render(registry), content_type=CONTENT_TYPE_LATEST)

    def info_route(query: str) -> Response:
        _query(query, ())
        oldest, newest, _ = agent.buffer.span()
        info = wire.AgentInfo(
            version=agent.version,
            host=agent.host_info,
            devices=agent.devices,
            interval_s=agent.interval_s,
            oldest=oldest,
            newest=newest,
            gpu_mode=agent.gpu_mode,
            messages=agent.messages(),
        )
        return Response(200, wire.dumps(wire.encode_info(info)))

    def samples_route(query: str) -> Response:
        since, limit = parse_samples_query(query)
        page = agent.buffer.page(since, limit, MAX_PAGE_BYTES)
        oldest, _, _ = agent.buffer.span()
        # The stored ticks are already JSON: spliced in as they are, never decoded here.
        body = b"".join(
            (
                b'{"format":',
                _dumps(wire.FORMAT),
                b',"host":',
                _dumps(wire.encode_host(agent.host_info)),
                b',"devices":',
                _dumps([wire.encode_device(d) for d in agent.devices]),
                b',"samples":[',
                b",".join(page.payloads),
                b'],"more":',
                _dumps(page.more),
                b',"next_since":',
                _dumps(page.last_ts),
                b',"oldest":',
                _dumps(oldest),
                b"}",
            )
        )
        return Response(200, body)

    routes: dict[str, Callable[[str], Response]] = {
        "/metrics": metrics_route,
        "/v1/info": info_route,
        "/v1/samples": samples_route,
    }
    return routes
