"""The agent's connection limits, its refusal log, and where the limits come from."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from costmeter.cli.agent_cmd import _options
from costmeter.cli.main import build_parser
from costmeter.config import AgentConfig, Config, parse_config
from costmeter.config_writer import dump_config
from costmeter.core import ConfigError
from costmeter.service.agent.admission import BUSY, PER_CLIENT, Admission, client_key
from costmeter.service.agent.refusals import RefusalLog

WHERE = Path("/etc/costmeter/config.toml")


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same machine, another address
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("?", "?"),
    ],
)
def test_clients_are_counted_by_address_and_ipv6_by_64(host: str, key: str) -> None:
    assert client_key(host) == key


def test_the_per_address_limit_makes_room_from_the_same_address_only() -> None:
    adm: Admission[str] = Admission(max_connections=10, max_per_client=2)
    assert adm.admit("a1", "A") == (None, []) and adm.admit("a2", "A") == (None, [])
    assert adm.admit("b1", "B") == (None, [])
    # a third from A: A's oldest still-waiting connection makes room, B's is left alone
    assert adm.admit("a3", "A") == (None, [("a1", PER_CLIENT)])
    assert adm.open == 3
    adm.answering("a2")
    adm.answering("a3")  # both of A's are being answered: nothing to close
    assert adm.admit("a4", "A") == (PER_CLIENT, [])
    adm.release("a2")
    assert adm.admit("a4", "A") == (None, [])
    adm.release("a1")  # already evicted: idempotent
    assert adm.open == 3 and adm.clients() == 2


def test_connections_that_sent_nothing_make_room_first() -> None:
    """A burst of idle connections must not push out one whose request is already there."""
    adm: Admission[str] = Admission(max_connections=100, max_per_client=3)
    assert adm.admit("legit", "A", heard=True) == (None, [])  # its request waits to be read
    adm.admit("idle1", "A")
    adm.admit("slow", "A")
    adm.heard("slow")  # a slow loris: it has sent a byte
    assert adm.full("A") and not adm.full("B")
    assert adm.admit("idle2", "A") == (None, [("idle1", PER_CLIENT)])
    assert adm.admit("idle3", "A") == (None, [("idle2", PER_CLIENT)])
    adm.release("idle3")
    adm.admit("idle4", "A")
    # no silent one left but idle4: then the oldest that sent something
    assert adm.admit("idle5", "A") == (None, [("idle4", PER_CLIENT)])
    adm.heard("idle5")
    assert adm.admit("idle6", "A") == (None, [("legit", PER_CLIENT)])


def test_the_total_limit_makes_room_from_the_oldest_waiting_or_refuses() -> None:
    adm: Admission[str] = Admission(max_connections=3, max_per_client=3)
    for conn, key in (("x", "X"), ("y", "Y"), ("z", "Z")):
        assert adm.admit(conn, key) == (None, [])
    adm.answering("x")
    assert adm.admit("w", "W") == (None, [("y", BUSY)])  # x is being answered: y is oldest
    for conn in ("z", "w"):
        adm.answering(conn)
    assert adm.admit("v", "V") == (BUSY, [])
    assert adm.open == 3
    for conn in ("x", "z", "w"):
        adm.release(conn)
    assert adm.open == 0 and adm.clients() == 0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refusals_are_logged_at_once_then_summed_up_per_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    logger = logging.getLogger("test.refusals")
    refusals = RefusalLog(logger, every_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        refusals.note("auth", "10.0.0.1", "the token is not the one this agent was started with.")
        for _ in range(500):
            refusals.note("evicted", "10.0.0.2", "32 connections from its address were open")
            clock.now += 0.01
        refusals.note("timeout", "10.0.0.3", "the request took too long to arrive.")
        assert len(caplog.records) == 1  # 5 s later: still one line
        clock.now += 6.0
        refusals.flush()
        refusals.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("Refused 1 request (1 with a wrong or missing token)")
    assert "500 closed before their request ended to make room" in lines[1]
    assert "1 too slow to send their request" in lines[1] and "in the last 11 s" in lines[1]
    assert "the last from 10.0.0.3" in lines[1]
    assert refusals.total == {"auth": 1, "evicted": 500, "timeout": 1}


def test_agent_limits_in_the_config_and_written_back() -> None:
    config = parse_config(
        "[agent]\nmax_connections = 2000\nmax_per_client = 8\nrequest_timeout_s = 2.5\n", WHERE
    )
    assert config.agent == AgentConfig(2000, 8, 2.5)
    assert parse_config(dump_config(config, path=WHERE), WHERE).agent == config.agent
    assert "[agent]" not in dump_config(Config(), path=WHERE)  # defaults are not written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_connections = 0", "max_connections must be greater than 0"),
        ("max_connections = 1.5", "must be a whole number"),
        ("max_per_client = 1000000", "is too large"),
        ("request_timeout_s = nan", "must be a finite number"),
        ("request_timeout_s = 0.01", "is too small"),
        ("max_conections = 5", "did you mean 'max_connections'"),
    ],
)
def test_bad_agent_limits_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(f"# the agent\n[agent]\n{text}\n", WHERE)
    assert err.value.line == 3


def test_options_take_the_config_and_the_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[agent]\nmax_connections = 100\nrequest_timeout_s = 9\n")
    args = build_parser().parse_args(
        ["agent", "--config", str(config), "--max-per-client", "4", "--db", str(tmp_path / "b")]
    )
    options = _options(args)
    assert (options.max_connections, options.max_per_client) == (100, 4)
    assert options.request_timeout_s == 9.0
    none = str(tmp_path / "none.toml")  # no file: the defaults
    defaults = _options(build_parser().parse_args(["agent", "--config", none, "--db", "b"]))
    given = (defaults.max_connections, defaults.max_per_client, defaults.request_timeout_s)
    assert given == dataclasses.astuple(AgentConfig()) == (512, 32, 5.0)
