"""Reading the Prometheus text exposition format, bounded, with clean errors.

``prometheus_client.parser`` does the parsing. In front of it the input is bounded (bytes,
lines, line length) so a huge or hostile /metrics page costs a known amount of work, and only
the metric names a caller asks for are handed to the parser (node_exporter serves thousands of
series that Costmeter does not read). Anything the parser cannot read becomes a
:class:`PromParseError` naming the line, never another exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from costmeter.core.errors import CostmeterError

#: Bounds on one page: far above any real exporter's output (dcgm-exporter with 8 GPUs serves
#: ~100 KB; node_exporter ~200 KB), low enough that parsing stays well under a second.
MAX_BYTES = 16 * 1024 * 1024
MAX_LINES = 100_000
MAX_LINE_BYTES = 64 * 1024
_NAME = re.compile(r"[^{\s]*")


class PromParseError(CostmeterError):
    """A /metrics page is not Prometheus text, or is too large to read."""


@dataclass(frozen=True, slots=True)
class PromSample:
    labels: Mapping[str, str]
    value: float


#: Metric (sample) name -> its samples, in page order. Values are finite (NaN/inf dropped).
Samples = dict[str, list[PromSample]]


def _name_of(line: str) -> str:
    """The metric name a sample line starts with (up to ``{`` or whitespace)."""
    match = _NAME.match(line)
    return match.group(0) if match else ""


def _comment_name(line: str) -> str | None:
    """For ``# HELP name ...`` / ``# TYPE name ...`` the name; None for other comments."""
    parts = line.split(None, 3)
    if len(parts) >= 3 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"):
        return parts[2]
    return None


@dataclass
class ParseStats:
    """What :func:`parse_metrics` left out of a page it read."""

    #: Lines of metrics that were asked for but longer than MAX_LINE_BYTES (skipped).
    long_lines: int = 0


def _select(text: str, keep: Callable[[str], bool] | None, stats: ParseStats) -> Iterator[str]:
    """The lines of the metrics asked for; a metric not read is never looked at further, so
    a huge label on it costs nothing, and an over-long line of one that is read is skipped
    (and counted) rather than refusing the page."""
    if text.count("\n") >= MAX_LINES:
        raise PromParseError(f"the metrics page has more than {MAX_LINES} lines.")
    for raw in text.split("\n"):
        line = raw.removesuffix("\r")
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            name = _comment_name(stripped[:1024])
            if name is None or (keep is not None and not keep(name)):
                continue
        elif keep is not None and not keep(_name_of(stripped)):
            continue
        if len(line) > MAX_LINE_BYTES:
            stats.long_lines += 1
            continue
        yield line


def decode_page(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise PromParseError(f"the metrics page is larger than {MAX_BYTES // (1024 * 1024)} MiB.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PromParseError(
            f"the metrics page is not UTF-8 text (byte {err.start} is not valid)."
        ) from err


def parse_metrics(
    data: bytes | str,
    *,
    keep: Callable[[str], bool] | None = None,
    stats: ParseStats | None = None,
) -> Samples:
    """Parse a /metrics page into samples by name; ``keep(name)`` selects the metrics read.

    ``stats``, if given, is told what was skipped. Raises :class:`PromParseError` for input
    that is too large or not in the text format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    text = decode_page(data) if isinstance(data, bytes) else data
    if len(text) > MAX_BYTES:
        raise PromParseError(f"the metrics page is larger than {MAX_BYTES // (1024 * 1024)} MiB.")
    if "\x00" in text:
        raise PromParseError("the metrics page holds a NUL character: it is not Prometheus text.")
    selected = "\n".join(_select(text, keep, stats if stats is not None else ParseStats()))
    out: Samples = {}
    try:
        for family in text_string_to_metric_families(selected):
            for sample in family.samples:
                value = float(sample.value)
                if not math.isfinite(value):
                    continue
                out.setdefault(sample.name, []).append(PromSample(dict(sample.labels), value))
    except Exception as err:  # the parser raises ValueError, but also others on odd input
        raise PromParseError(f"the metrics page is not Prometheus text: {_short(err)}") from err
    return out


def _short(err: Exception) -> str:
    text = str(err).replace("\n", " ") or type(err).__name__
    return (text[:160] + "...") if len(text) > 160 else text


def first_value(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels``."""
    for s in samples.get(name, ()):
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None
