"""Saving what the host dialog asked for: the token first, then the ``[hosts.NAME]`` table.

Qt-free and run on a TaskRunner worker (a keyring may be slow, a file write may block). A token
goes to the OS keyring where one works, else to a file only the user can read; the sentence
returned says where, and the token itself is never shown again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from costmeter.config import Config, RemoteHostConfig
from costmeter.config_writer import add_host, remove_host, replace_host
from costmeter.service import tokens


@dataclass(frozen=True, slots=True)
class HostDraft:
    """The dialog's fields, checked."""

    name: str
    url: str
    kind: str
    #: A new token; None keeps the saved one (or none).
    token: str | None
    #: Forget the saved token (the host then has none unless ``token`` gives one).
    forget_token: bool
    enabled: bool
    #: The host being edited; None for a new one.
    original: RemoteHostConfig | None = None


def where_stored(host: RemoteHostConfig) -> str:
    """Where the token of ``host`` is kept, in words."""
    if host.token_file is not None:
        return f"in {shown_path(host.token_file)}, readable only by you"
    if host.token_keyring:
        return "in the OS keyring"
    return ""


def shown_path(path: Path) -> str:
    """``path`` with the home folder written as ~."""
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def save_draft(config_path: Path, draft: HostDraft) -> tuple[Config, str]:
    """Store the token and write the host's table; returns the saved configuration and a
    sentence for the page. Raises ConfigError (the file unchanged) when the table is refused."""
    orig = draft.original
    token_file = orig.token_file if orig is not None else None
    keyring = orig.token_keyring if orig is not None else False
    renamed = orig is not None and orig.name != draft.name
    if orig is not None and (draft.forget_token or draft.token):
        tokens.delete_token(orig)
        token_file, keyring = None, False
    elif orig is not None and renamed and keyring:  # the keyring entry is named after the host
        kept = tokens.resolve_token(orig)
        if kept:
            tokens.save_token(draft.name, kept, use_keyring=True)
        tokens.delete_token(dataclasses.replace(orig, token_file=None))
    new_file: Path | None = None
    if draft.token:
        new_file = tokens.save_token(draft.name, draft.token)
        token_file, keyring = new_file, new_file is None
    host = RemoteHostConfig(
        name=draft.name,
        url=draft.url.rstrip("/"),
        kind=draft.kind,
        token_file=token_file,
        token_keyring=keyring,
        enabled=draft.enabled,
    )
    try:
        if orig is None:
            config = add_host(config_path, host)
        else:
            config = replace_host(config_path, orig.name, host)
    except Exception:
        if new_file is not None and orig is None:
            new_file.unlink(missing_ok=True)  # no table names it: leave no stray secret
        raise
    what = "added" if orig is None else "saved"
    sentence = f"Host {draft.name} {what}."
    if draft.token:
        sentence += f" Its token is stored {where_stored(host)}."
    elif orig is not None and draft.forget_token:
        sentence += " Its token was forgotten."
    return config, sentence


def set_enabled(config_path: Path, host: RemoteHostConfig, enabled: bool) -> tuple[Config, str]:
    config = replace_host(config_path, host.name, dataclasses.replace(host, enabled=enabled))
    return config, f"Host {host.name} {'enabled' if enabled else 'disabled'}."


def remove(config_path: Path, host: RemoteHostConfig) -> tuple[Config, str]:
    """Remove the host's table, then its token (a refused save keeps both)."""
    config = remove_host(config_path, host.name)
    tokens.delete_token(host)
    return config, f"Host {host.name} removed; its samples stay in the database."
