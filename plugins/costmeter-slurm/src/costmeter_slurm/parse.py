"""Reading what Slurm's commands print: squeue lines, sacct rows, ``scontrol -o`` records.

Every reader returns a :class:`JobInfo`, the same whichever command answered, so the state
mapping (``states.py``) has one input. Slurm prints times in the caller's local time without a
zone (``2024-04-03T20:32:21``); they are read as local time, like Slurm's own tools do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

#: The squeue ``-o`` format the backend asks for, in the order :func:`parse_squeue` reads.
#: The reason goes last: it is the one field that may hold free text.
SQUEUE_FORMAT = "%i|%T|%B|%N|%D|%S|%e|%l|%b|%r"
#: The sacct ``-o`` fields the backend asks for (``-X -n -P``).
SACCT_FIELDS = (
    "JobIDRaw",
    "State",
    "ExitCode",
    "Start",
    "End",
    "NodeList",
    "NNodes",
    "AllocTRES",
    "ReqTRES",
    "Timelimit",
    "Reason",
)

_NO_VALUE = {"", "N/A", "n/a", "Unknown", "None", "None assigned", "(null)", "INVALID"}
_KEY = re.compile(r"(?:^|\s)([A-Za-z][\w/:.]*)=")


@dataclass(frozen=True)
class JobInfo:
    """One job as Slurm describes it (fields it did not give are ``None`` or empty)."""

    job_id: str
    #: The state's name in capitals (``CANCELLED``, without sacct's ``by 1234``).
    state: str
    #: Who cancelled it, from sacct's ``CANCELLED by 1234`` (a uid), when it says.
    cancelled_by: str | None = None
    reason: str = ""
    #: The node running the batch script (``BatchHost``), else the first of ``nodes``.
    batch_host: str | None = None
    nodes: str = ""
    node_count: int | None = None
    started: float | None = None
    ended: float | None = None
    #: Slurm's time limit text (``1:00:00``, ``2-00:00:00``, ``UNLIMITED``).
    time_limit: str = ""
    gpus: int | None = None
    #: ``code`` for an exit status, ``-signal`` for a kill by signal (as :mod:`subprocess`).
    exit_code: int | None = None


def parse_time(text: str) -> float | None:
    text = text.strip()
    if text in _NO_VALUE:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


def parse_exit_code(text: str) -> int | None:
    """Slurm's ``code:signal`` (``3:0``, ``0:15``) as one number: ``3``, ``-15``."""
    text = text.strip()
    if not text or text in _NO_VALUE:
        return None
    code_text, _, signal_text = text.partition(":")
    try:
        code, signal = int(code_text), int(signal_text or "0")
    except ValueError:
        return None
    return -signal if signal else code


def parse_state(text: str) -> tuple[str, str | None]:
    """``"CANCELLED by 1234"`` -> ``("CANCELLED", "1234")``; ``"RUNNING"`` -> ``("RUNNING", None)``.

    sacct may end a name with ``+`` when it truncates; ``-P`` does not, but strip it anyway.
    """
    words = text.strip().split()
    if not words:
        return "", None
    state = words[0].rstrip("+").upper()
    by = words[2] if len(words) >= 3 and words[1] == "by" else None
    return state, by


def gpus_in_tres(text: str) -> int | None:
    """GPUs in a TRES list: ``billing=8,cpu=8,gres/gpu:a100=1,gres/gpu=1`` -> 1.

    The untyped ``gres/gpu=N`` is the total; without it the typed ones are added up.
    """
    total: int | None = None
    typed = 0
    seen_typed = False
    for item in text.split(","):
        name, _, value = item.strip().partition("=")
        if name == "gres/gpu":
            total = _int(value)
        elif name.startswith("gres/gpu:"):
            count = _int(value)
            if count is not None:
                typed += count
                seen_typed = True
    if total is not None:
        return total
    return typed if seen_typed else None


def gpus_in_gres(text: str) -> int | None:
    """GPUs in a gres text: ``gres:gpu:2``, ``gres/gpu:a100:2``, ``gpu:2(IDX:0-1)``, ``gpu``.

    Several kinds may be listed, separated by commas; non-GPU ones are ignored. ``None`` when
    no GPU is named.
    """
    total: int | None = None
    for item in _split_outside_parens(text):
        item = re.sub(r"\(.*\)$", "", item.strip())
        for prefix in ("gres:", "gres/"):
            if item.startswith(prefix):
                item = item[len(prefix) :]
        if item.startswith("gpu="):  # tres_per_node as "gres/gpu=2" in newer Slurm
            count = _int(item[4:])
        elif item == "gpu" or item.startswith("gpu:"):
            parts = item.split(":")
            count = _int(parts[-1]) if len(parts) > 1 else 1
            if count is None:  # "gpu:a100": a type and no count means one
                count = 1
        else:
            continue
        if count is not None:
            total = (total or 0) + count
    return total


def gpu_indices(detail: str) -> tuple[int, ...]:
    """The GPU indices in ``scontrol show job -d`` text: ``GRES=gpu:2(IDX:0-1)`` -> (0, 1)."""
    found: list[int] = []
    for match in re.finditer(r"gpu[^\s(]*\(IDX:([0-9,\-]+)\)", detail):
        for part in match.group(1).split(","):
            low, _, high = part.partition("-")
            if not low.isdigit():
                continue
            if high.isdigit():
                found.extend(range(int(low), int(high) + 1))
            else:
                found.append(int(low))
    return tuple(sorted(set(found)))


def parse_squeue(output: str) -> dict[str, JobInfo]:
    """Lines of ``squeue -h -o SQUEUE_FORMAT`` by job id."""
    jobs: dict[str, JobInfo] = {}
    for line in output.splitlines():
        fields = line.split("|", 9)
        if len(fields) != 10:
            continue
        job_id, state, batch, nodes, count, start, end, limit, gres, reason = fields
        node_count = _int(count)
        per_node = gpus_in_gres(gres)
        gpus = None if per_node is None else per_node * max(node_count or 1, 1)
        jobs[job_id.strip()] = JobInfo(
            job_id=job_id.strip(),
            state=parse_state(state)[0],
            reason=_reason(reason),
            batch_host=_host(batch) or _first_node(nodes),
            nodes=_value(nodes),
            node_count=node_count,
            started=parse_time(start),
            ended=parse_time(end),
            time_limit=_value(limit),
            gpus=gpus,
        )
    return jobs


def parse_sacct(
    output: str, fields: Sequence[str] = SACCT_FIELDS, delimiter: str = "|"
) -> list[JobInfo]:
    """Rows of ``sacct -n -P -o FIELDS`` (with ``--delimiter`` when not ``|``).

    Step rows (``123.batch``) are skipped: the allocation's row speaks for the job.
    """
    jobs: list[JobInfo] = []
    for line in output.splitlines():
        values = line.split(delimiter)
        if len(values) < len(fields):
            continue
        row = dict(zip(fields, values, strict=False))
        job_id = row.get("JobIDRaw") or row.get("JobID") or ""
        if not job_id or "." in job_id:
            continue
        state, by = parse_state(row.get("State", ""))
        tres = row.get("AllocTRES", "")
        gpus = gpus_in_tres(tres) if tres else None
        if gpus is None and row.get("ReqTRES"):
            gpus = gpus_in_tres(row["ReqTRES"])
        jobs.append(
            JobInfo(
                job_id=job_id,
                state=state,
                cancelled_by=by,
                reason=_reason(row.get("Reason", "")),
                batch_host=_first_node(row.get("NodeList", "")),
                nodes=_value(row.get("NodeList", "")),
                node_count=_int(row.get("NNodes", "")),
                started=parse_time(row.get("Start", "")),
                ended=parse_time(row.get("End", "")),
                time_limit=_value(row.get("Timelimit", "")),
                gpus=gpus,
                exit_code=parse_exit_code(row.get("ExitCode", "")),
            )
        )
    return jobs


def parse_keyvalues(record: str) -> dict[str, str]:
    """One ``scontrol show ... -o`` record as a dict; a value runs to the next ``Key=``."""
    found: dict[str, str] = {}
    matches = list(_KEY.finditer(record))
    for here, after in zip(matches, [*matches[1:], None], strict=False):
        end = after.start() if after is not None else len(record)
        found.setdefault(here.group(1), record[here.end() : end].strip())
    return found


def parse_scontrol_job(record: str) -> JobInfo | None:
    """``scontrol show job -o ID`` output (one line) as a JobInfo."""
    kv = parse_keyvalues(record.strip())
    if "JobId" not in kv:
        return None
    node_count = _int(kv.get("NumNodes", ""))
    gpus = gpus_in_tres(kv.get("TRES", ""))
    if gpus is None:
        per_node = gpus_in_gres(kv.get("TresPerNode", "") or kv.get("Gres", ""))
        if per_node is not None:
            gpus = per_node * max(node_count or 1, 1)
    if gpus is None and kv.get("TresPerJob"):
        gpus = gpus_in_gres(kv["TresPerJob"])
    return JobInfo(
        job_id=kv["JobId"],
        state=parse_state(kv.get("JobState", ""))[0],
        reason=_reason(kv.get("Reason", "")),
        batch_host=_host(kv.get("BatchHost", "")) or _first_node(kv.get("NodeList", "")),
        nodes=_value(kv.get("NodeList", "")),
        node_count=node_count,
        started=parse_time(kv.get("StartTime", "")),
        ended=parse_time(kv.get("EndTime", "")),
        time_limit=_value(kv.get("TimeLimit", "")),
        gpus=gpus,
        exit_code=parse_exit_code(kv.get("ExitCode", "")),
    )


def parse_listpids(output: str) -> list[tuple[int, str]]:
    """``scontrol listpids JOB`` lines as (pid, step id); the header and bad lines skipped."""
    pids: list[tuple[int, str]] = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            pids.append((int(parts[0]), parts[2]))
    return pids


@dataclass(frozen=True)
class NodeInfo:
    name: str
    state: str
    gpus: int
    gpus_used: int
    cpus: int | None
    cpus_used: int | None

    @property
    def usable(self) -> bool:
        bad = ("DOWN", "DRAIN", "FAIL", "NOT_RESPONDING", "INVAL", "FUTURE", "POWERED_DOWN")
        return not any(word in self.state.upper() for word in bad)


def parse_nodes(output: str) -> list[NodeInfo]:
    """``scontrol show node -o -d`` records: GPUs from ``Gres``/``GresUsed`` (else the TRES)."""
    nodes: list[NodeInfo] = []
    for line in output.splitlines():
        kv = parse_keyvalues(line.strip())
        if "NodeName" not in kv:
            continue
        gpus = gpus_in_gres(kv.get("Gres", ""))
        if gpus is None:
            gpus = gpus_in_tres(kv.get("CfgTRES", ""))
        used = gpus_in_gres(kv.get("GresUsed", ""))
        if used is None:
            used = gpus_in_tres(kv.get("AllocTRES", ""))
        nodes.append(
            NodeInfo(
                name=kv["NodeName"],
                state=kv.get("State", ""),
                gpus=gpus or 0,
                gpus_used=used or 0,
                cpus=_int(kv.get("CPUTot", "")),
                cpus_used=_int(kv.get("CPUAlloc", "")),
            )
        )
    return nodes


def format_time_limit(text: str) -> str:
    """Slurm's ``[days-]hours:minutes:seconds`` in words: ``1:30:00`` -> ``1 h 30 min``."""
    text = text.strip()
    if not text or text.upper() in {"UNLIMITED", "INFINITE", "PARTITION_LIMIT"}:
        return ""
    seconds = slurm_duration_s(text)
    if seconds is None:
        return text
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day" + ("s" if days != 1 else ""))
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs or not parts:
        parts.append(f"{secs} s")
    return " ".join(parts)


def slurm_duration_s(text: str) -> float | None:
    """Seconds in Slurm's duration text: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``."""
    text = text.strip()
    days = 0
    if "-" in text:
        day_text, _, text = text.partition("-")
        if not day_text.isdigit():
            return None
        days = int(day_text)
        pieces = text.split(":")
        while len(pieces) < 3:
            pieces.append("0")
    else:
        pieces = text.split(":")
        if len(pieces) == 1:  # minutes
            pieces = ["0", pieces[0], "0"]
        elif len(pieces) == 2:  # minutes:seconds
            pieces = ["0", *pieces]
    try:
        hours, minutes, seconds = (float(p) for p in pieces[:3])
    except ValueError:
        return None
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def first_record(output: str) -> str:
    for line in output.splitlines():
        if line.strip():
            return line
    return ""


def _split_outside_parens(text: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item for item in items if item.strip() and item.strip() not in _NO_VALUE]


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _value(text: str) -> str:
    text = text.strip()
    return "" if text in _NO_VALUE else text


def _host(text: str) -> str | None:
    return _value(text) or None


def _first_node(nodelist: str) -> str | None:
    """The first node of a hostlist: ``node[01-03],gpu5`` -> ``node01``."""
    text = _value(nodelist)
    if not text:
        return None
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", text)
    if match is None:
        return None
    prefix, ranges = match.group(1), match.group(2)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _reason(text: str) -> str:
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return "" if text in _NO_VALUE else text
