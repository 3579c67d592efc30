"""The Prometheus HTTP query API, read through the project's one HTTP client (``http.Fetcher``).

Only the documented, portable endpoints are used: ``/api/v1/query_range`` and
``/api/v1/series`` (Prometheus, VictoriaMetrics, Thanos Query and Mimir all serve them; nothing
Prometheus-only such as ``/api/v1/status/buildinfo`` is needed). An answer with ``"status":
"error"`` becomes a :class:`RemoteError` whose sentence carries the server's ``errorType`` and
``error``; HTTP failures, timeouts and refusals are the Fetcher's RemoteErrors, as for hosts.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costmeter.service.remote.http import PROTOCOL, Fetcher, RemoteError, netloc

#: The largest answer read: about 2 million points of query_range JSON. The source sizes its
#: queries far below this (prom_source.POINTS_PER_QUERY); a bigger answer is refused.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: Prometheus refuses a query_range of more points than this per series.
MAX_POINTS_PER_SERIES = 11_000


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """One series of a query_range answer: its labels (``__name__`` included when the query
    kept it) and its finite (timestamp, value) points in time order."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


class PromApi:
    """Queries one server. ``url`` is its base (``http://HOST:9090``, or a path prefix such as
    Thanos' or Mimir's ``http://HOST/prometheus``)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        ca_file: Path | None = None,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.url = url.rstrip("/")
        self.where = netloc(url)
        self.max_bytes = max_bytes
        self._fetcher = Fetcher(token=token, timeout_s=timeout_s, ca_file=ca_file)

    def query_range(
        self, query: str, *, start: float, end: float, step: float
    ) -> list[RangeSeries]:
        """Every series of ``query`` evaluated from ``start`` to ``end`` every ``step`` s."""
        if step <= 0 or end < start:
            raise ValueError("query_range needs step > 0 and end >= start")
        if (end - start) / step + 1 > MAX_POINTS_PER_SERIES:
            raise ValueError(f"query_range of more than {MAX_POINTS_PER_SERIES} points")
        data = self._get(
            "query_range",
            {"query": query, "start": _ts(start), "end": _ts(end), "step": _ts(step)},
        )
        try:
            return matrix(data)
        except ValueError as err:
            raise self._bad("query_range", str(err)) from None

    def series(self, matchers: Sequence[str], *, start: float, end: float) -> list[dict[str, str]]:
        """The label sets of the series selected by any of ``matchers`` between the times."""
        params: list[tuple[str, str]] = [("match[]", m) for m in matchers]
        params += [("start", _ts(start)), ("end", _ts(end))]
        data = self._get("series", params)
        out = []
        for item in _list(data, self, "series"):
            if not isinstance(item, Mapping):
                raise self._bad("series", "a series is not an object")
            out.append({str(k): str(v) for k, v in item.items()})
        return out

    # -- internals ------------------------------------------------------------------------
    def _get(self, endpoint: str, params: Mapping[str, str] | Sequence[tuple[str, str]]) -> Any:
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        try:
            body = self._fetcher.get(url, max_bytes=self.max_bytes, accept="application/json")
        except RemoteError as err:
            refusal = _error_sentence(err.body) if err.body else None
            if refusal is None:
                raise
            raise RemoteError(
                f"{self.where} refused the {endpoint} query (HTTP {err.status}): {refusal}",
                err.kind,
                status=err.status,
            ) from None
        try:
            answer = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._bad(endpoint, "it is not JSON") from None
        if not isinstance(answer, Mapping):
            raise self._bad(endpoint, "it is not a JSON object")
        if answer.get("status") != "success":
            refusal = _error_sentence(body) or "no reason given"
            raise RemoteError(f"{self.where} refused the {endpoint} query: {refusal}", PROTOCOL)
        return answer.get("data")

    def _bad(self, endpoint: str, why: str) -> RemoteError:
        return RemoteError(
            f"{self.where} gave an answer to /api/v1/{endpoint} that is not the Prometheus "
            f"query API's ({why}); is {self.url} a Prometheus-compatible server?",
            PROTOCOL,
        )


def matrix(data: Any) -> list[RangeSeries]:
    """The series of a query_range answer's ``data``; ValueError saying what is wrong."""
    if not isinstance(data, Mapping) or data.get("resultType") != "matrix":
        raise ValueError("its data is not a matrix")
    result = data.get("result")
    if not isinstance(result, list):
        raise ValueError("its result is not a list")
    out = []
    for item in result:
        if not isinstance(item, Mapping):
            raise ValueError("a series is not an object")
        metric = item.get("metric", {})
        values = item.get("values", [])
        if not isinstance(metric, Mapping) or not isinstance(values, list):
            raise ValueError("a series has no metric or values")
        points = []
        for pair in values:
            try:
                ts, value = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError, KeyError):
                raise ValueError(f"{str(pair)[:60]} is no [time, value]") from None
            if math.isfinite(value) and math.isfinite(ts):
                points.append((ts, value))
        out.append(RangeSeries({str(k): str(v) for k, v in metric.items()}, tuple(points)))
    return out


def _list(value: Any, api: PromApi, endpoint: str) -> list[Any]:
    if not isinstance(value, list):
        raise api._bad(endpoint, "its data is not a list")
    return value


def _ts(value: float) -> str:
    """Seconds as the API takes them (a float with millisecond precision, no exponent)."""
    return f"{value:.3f}"


def _error_sentence(body: bytes) -> str | None:
    """``errorType: error`` of an error answer's JSON, or None when it is no such answer."""
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(answer, Mapping) or answer.get("status") != "error":
        return None
    kind = str(answer.get("errorType") or "error")[:60]
    text = str(answer.get("error") or "no reason given").replace("\n", " ")
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{kind}: {text.rstrip('.')}."
