"""Bearer tokens for remote hosts: the OS keyring where there is one, else a private file.

A token never goes into the configuration file itself. ``[hosts.NAME]`` says where it is:
``token_file = PATH`` or ``token = "keyring"`` (service ``costmeter``, user NAME). A token file
readable by anyone but its owner is refused with the ``chmod`` that fixes it, by the agent and
by the recorder alike.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from pathlib import Path

import platformdirs

from costmeter.config import RemoteHostConfig
from costmeter.core.errors import ConfigError

KEYRING_SERVICE = "costmeter"
#: A token longer than this is not a token (and must not be read into memory whole).
MAX_TOKEN_BYTES = 4096
#: RFC 6750's b64token: what a bearer token may hold (and what an HTTP header can carry).
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ALLOWED = "the letters A-Z and a-z, the digits 0-9 and - . _ ~ + /, with = only at its end"
NEW_TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check_token(token: str, source: str) -> str:
    """``token`` if it is a valid bearer token, else ConfigError naming ``source`` and the first
    refused character by position (the token itself is never shown)."""
    if _TOKEN_CHARS.fullmatch(token):
        return token
    if not token:
        raise ConfigError(f"{source} is empty: a token is one line of text.")
    body_end = len(token.rstrip("="))
    for i, char in enumerate(token):
        if char == "=" and i < body_end:
            break
        if char != "=" and not _TOKEN_CHARS.fullmatch(char):
            break
    else:  # pragma: no cover - fullmatch would have accepted it
        raise ConfigError(f"{source} is not a valid token.")
    name = unicodedata.name(char, "a control character" if not char.isprintable() else "")
    shown = f"U+{ord(char):04X} {name}".strip()
    where = "before its end" if char == "=" else ""
    raise ConfigError(
        f"{source} holds a character a token may not hold: character {i + 1} of "
        f"{len(token)} ({shown}){' ' + where if where else ''}. A bearer token may hold only "
        f"{_ALLOWED} (RFC 6750); make a new one with {NEW_TOKEN_HINT}."
    )


def default_token_dir() -> Path:
    return Path(platformdirs.user_config_dir("costmeter")) / "tokens"


def check_token_file(path: Path) -> None:
    """Refuse a token file that others can read or write (POSIX permissions)."""
    try:
        st = path.stat()
    except FileNotFoundError as err:
        raise ConfigError(f"the token file {path} does not exist.") from err
    except OSError as err:
        raise ConfigError(f"the token file {path} could not be read: {err}.") from err
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"the token file {path} is not a regular file.")
    if os.name == "posix" and st.st_mode & 0o077:
        raise ConfigError(
            f"the token file {path} can be read by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); a token must be private. Run: chmod 600 {path}"
        )


def read_token_file(path: Path) -> str:
    """The token in ``path`` (a UTF-8 byte-order mark and surrounding whitespace removed: an
    editor may add them), after ``check_token_file``; ``check_token`` says what it holds wrong."""
    path = path.expanduser()
    check_token_file(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TOKEN_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"the token file {path} could not be read: {err}.") from err
    if len(raw) > MAX_TOKEN_BYTES:
        raise ConfigError(f"the token file {path} is larger than {MAX_TOKEN_BYTES} bytes.")
    try:
        token = raw.decode("utf-8-sig").strip().removeprefix("\ufeff").strip()
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"the token file {path} is not UTF-8 text (byte {err.start + 1} is not)."
        ) from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(
            f"the token file {path} must hold one token on one line (no spaces), and it is "
            + ("empty." if not token else "not.")
        )
    return check_token(token, f"the token file {path}")


def keyring_available() -> bool:
    """True when an OS keyring backend works here (none on a headless Linux machine)."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:
        return False
    try:
        return not isinstance(keyring.get_keyring(), fail.Keyring)
    except Exception:
        return False


def resolve_token(host: RemoteHostConfig) -> str | None:
    """The token for ``host``: from its file, from the keyring, or None when it has none."""
    if host.token_file is not None:
        return read_token_file(host.token_file)
    if host.token_keyring:
        try:
            import keyring

            token = keyring.get_password(KEYRING_SERVICE, host.name)
        except Exception as err:
            raise ConfigError(
                f"the token of host {host.name} is kept in the OS keyring, which could not be "
                f"read: {err}."
            ) from err
        if not token:
            raise ConfigError(
                f"the OS keyring has no token for host {host.name}; enter it again on the "
                "Hosts page."
            )
        return check_token(token.strip(), f"the OS keyring's token for host {host.name}")
    return None


def save_token(
    name: str, token: str, *, use_keyring: bool | None = None, token_dir: Path | None = None
) -> Path | None:
    """Keep ``token`` for host ``name``; returns the file it went to, or None for the keyring.

    ``use_keyring`` None means: the keyring when one works, else a file. A file is written as
    mode 0600 in a 0700 folder, replaced atomically.
    """
    token = token.strip().removeprefix("\ufeff").strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError("a token must be one word with no spaces.")
    check_token(token, "the token")
    if use_keyring is None:
        use_keyring = keyring_available()
    if use_keyring:
        import keyring

        try:
            keyring.set_password(KEYRING_SERVICE, name, token)
            return None
        except Exception as err:
            raise ConfigError(f"the OS keyring refused the token: {err}.") from err
    folder = token_dir if token_dir is not None else default_token_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / _file_name(name)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def delete_token(host: RemoteHostConfig) -> None:
    """Forget the token of ``host`` (its keyring entry, or its file when it is ours)."""
    if host.token_keyring:
        try:
            import keyring

            keyring.delete_password(KEYRING_SERVICE, host.name)
        except Exception:
            pass
    if host.token_file is not None and host.token_file.parent == default_token_dir():
        host.token_file.unlink(missing_ok=True)


def _file_name(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return (safe or "host") + ".token"
