"""Tokens: private files only, one word, kept in the keyring or a 0600 file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from costmeter.config import RemoteHostConfig
from costmeter.core.errors import ConfigError
from costmeter.service import tokens


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_token_file_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "t", "  abc123\n", 0o600)
    assert tokens.read_token_file(path) == "abc123"
    host = RemoteHostConfig(name="box", url="http://x", token_file=path)
    assert tokens.resolve_token(host) == "abc123"
    assert tokens.resolve_token(RemoteHostConfig(name="box", url="http://x")) is None


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_token_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path / "t", "abc", 0o644)
    with pytest.raises(ConfigError, match=r"read by other users \(mode 0644\).*chmod 600"):
        tokens.read_token_file(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "empty"), ("two words", "no spaces"), ("x" * 5000, "larger than")],
)
def test_bad_token_files(tmp_path: Path, content: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        tokens.read_token_file(_write(tmp_path / "t", content, 0o600))


def test_missing_and_non_regular_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        tokens.read_token_file(tmp_path / "nope")
    with pytest.raises(ConfigError, match="not a regular file"):
        tokens.read_token_file(tmp_path)


def test_save_token_to_a_private_file_and_delete_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "default_token_dir", lambda: tmp_path / "tokens")
    path = tokens.save_token("gpu box/1", "s3cret", use_keyring=False)
    assert path is not None and path.parent == tmp_path / "tokens"
    assert path.name == "gpu_box_1.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tokens.read_token_file(path) == "s3cret"
    tokens.save_token("gpu box/1", "other", use_keyring=False)  # replaced
    assert tokens.read_token_file(path) == "other"
    tokens.delete_token(RemoteHostConfig(name="gpu box/1", url="http://x", token_file=path))
    assert not path.exists()
    with pytest.raises(ConfigError, match="one word"):
        tokens.save_token("box", "a b", use_keyring=False)


def test_no_keyring_backend_here_falls_back_to_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "keyring_available", lambda: False)
    monkeypatch.setattr(tokens, "default_token_dir", lambda: tmp_path)
    assert tokens.save_token("box", "tok") == tmp_path / "box.token"


def test_a_keyring_token_that_is_missing_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    monkeypatch.setattr(keyring, "get_password", lambda service, user: None)
    host = RemoteHostConfig(name="box", url="http://x", token_keyring=True)
    with pytest.raises(ConfigError, match="no token for host box"):
        tokens.resolve_token(host)
