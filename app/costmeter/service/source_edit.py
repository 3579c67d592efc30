"""Saving and testing what the source dialog asked for: a ``[sources.NAME]`` table.

Qt-free, run on a TaskRunner worker: the token file is checked (it must exist and be readable
by its owner only) and the table written through ``config_writer``, which keeps the rest of the
file as the user wrote it. "Test connection" asks the server which dcgm-exporter and
node_exporter series it holds for the last hour, as the source itself discovers its hosts.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from costmeter.config import Config, SourceConfig, check_selector
from costmeter.config_writer import add_source, remove_source, replace_source
from costmeter.core import bounds
from costmeter.core.errors import ConfigError, CostmeterError
from costmeter.core.units import parse_duration
from costmeter.service.remote import prom_series
from costmeter.service.remote.http import RemoteError, netloc
from costmeter.service.remote.prom_api import PromApi
from costmeter.service.tokens import read_token_file

#: How far back "Test connection" looks for series.
PROBE_WINDOW_S = 3600.0
PROBE_TIMEOUT_S = 5.0
DEFAULT_BACKFILL = "7d"


@dataclass(frozen=True, slots=True)
class SourceDraft:
    """The dialog's fields, as typed (checked by ``draft_problem`` and again on save)."""

    name: str
    url: str
    token_file: str
    match: str
    backfill: str
    enabled: bool
    #: The source being edited; None for a new one.
    original: SourceConfig | None = None


def backfill_problem(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        parse_duration(text, bounds.BACKFILL_S, "backfill")
    except ValueError as err:
        return str(err)
    return None


def match_problem(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        check_selector(text)
    except ValueError as err:
        return str(err)
    return None


def token_path_problem(text: str) -> str | None:
    """What is wrong with the typed path itself (the file is checked on save, off the GUI)."""
    if text.strip() and not Path(text.strip()).expanduser().is_absolute():
        return "give the token file's full path, such as /home/you/.config/prometheus.token."
    return None


def to_source(draft: SourceDraft) -> SourceConfig:
    """The table ``draft`` asks for; ValueError/ConfigError with a sentence when it is wrong."""
    for problem in (
        token_path_problem(draft.token_file),
        match_problem(draft.match),
        backfill_problem(draft.backfill),
    ):
        if problem:
            raise ConfigError(problem[:1].upper() + problem[1:])
    token_text = draft.token_file.strip()
    token_file = Path(token_text).expanduser() if token_text else None
    orig = draft.original
    return SourceConfig(
        name=draft.name.strip(),
        url=draft.url.strip().rstrip("/"),
        kind=orig.kind if orig is not None else "prometheus",
        token_file=token_file,
        # a token kept in the OS keyring stays there unless a token file replaces it
        token_keyring=orig.token_keyring if orig is not None and token_file is None else False,
        match=check_selector(draft.match) if draft.match.strip() else None,
        backfill_s=parse_duration(draft.backfill or DEFAULT_BACKFILL, bounds.BACKFILL_S),
        step_s=orig.step_s if orig is not None else 60.0,
        enabled=draft.enabled,
    )


def check_token_file(path: Path | None) -> str | None:
    """The token in ``path`` (None for no file); ConfigError saying what is wrong with the
    file: missing, not a file, readable by others (with the chmod that fixes it), bad token."""
    if path is None:
        return None
    return read_token_file(path)


def save_source(config_path: Path, draft: SourceDraft) -> tuple[Config, str]:
    """Write the draft's ``[sources.NAME]`` table; returns the saved configuration and a
    sentence. Raises ConfigError (the file unchanged) for a refused field or token file."""
    source = to_source(draft)
    check_token_file(source.token_file)
    if draft.original is None:
        config = add_source(config_path, source)
        what = "added"
    else:
        config = replace_source(config_path, draft.original.name, source)
        what = "saved"
    sentence = f"Source {source.name} {what}."
    if source.enabled:
        sentence += (
            " The recorder (costmeter record) reads it from its next start, back to "
            + _backfill_words(source.backfill_s)
            + "."
        )
    return config, sentence


def _backfill_words(seconds: float) -> str:
    if seconds <= 0:
        return "no earlier than now (follow only)"
    days = seconds / 86400
    if days >= 1 and days.is_integer():
        return f"{days:.0f} day{'s' if days != 1 else ''} ago at most"
    return f"{seconds / 3600:.3g} hours ago at most"


def set_source_enabled(
    config_path: Path, source: SourceConfig, enabled: bool
) -> tuple[Config, str]:
    config = replace_source(config_path, source.name, dataclasses.replace(source, enabled=enabled))
    return config, f"Source {source.name} {'enabled' if enabled else 'disabled'}."


def delete_source(config_path: Path, source: SourceConfig) -> tuple[Config, str]:
    """Remove the source's table (its token file is the user's own and is left alone)."""
    config = remove_source(config_path, source.name)
    return config, f"Source {source.name} removed; the history already read stays in the database."


def probe_source(
    url: str,
    token_file: Path | None,
    match: str | None,
    *,
    timeout_s: float = PROBE_TIMEOUT_S,
    now: float | None = None,
) -> str:
    """What the server holds, e.g. "reached prom:9090: 64 GPUs on 8 hosts (dcgm-exporter), 8
    node_exporter targets in the last hour". Raises CostmeterError with a sentence."""
    token = check_token_file(token_file)
    end = time.time() if now is None else now
    start = end - PROBE_WINDOW_S
    try:
        api = PromApi(url, token=token, timeout_s=timeout_s)
        gpu = api.series(
            [prom_series.selector(prom_series.names(prom_series.GPU_MARKERS), match)],
            start=start,
            end=end,
        )
        nodes = api.series(
            [prom_series.selector(prom_series.names(prom_series.NODE_MARKERS), match)],
            start=start,
            end=end,
        )
    except RemoteError as err:
        raise CostmeterError(str(err)) from err
    hosts = prom_series.targets(gpu, nodes)
    gpus = sum(h.gpu_count for h in hosts.values())
    gpu_hosts = sum(1 for h in hosts.values() if h.gpu_count)
    targets = sum(len(h.instances) for h in hosts.values())
    where = f"reached {netloc(url)}"
    matching = f" matching {match}" if match else ""
    if not hosts:
        raise CostmeterError(
            f"{where}, but it holds no dcgm-exporter (DCGM_FI_*) or node_exporter (node_*) "
            f"series{matching} from the last hour: nothing Costmeter could read."
        )
    return (
        f"{where}: {_count(gpus, 'GPU')} on {_count(gpu_hosts, 'host')} (dcgm-exporter), "
        f"{_count(targets, 'node_exporter target')}{matching} in the last hour."
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"
