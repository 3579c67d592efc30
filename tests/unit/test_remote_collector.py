"""RemoteCollector's host threads: states, name clashes, live listeners, set_hosts.

The agent side here is a small HTTP server in the test that serves pages made with the real
wire encoder (the real agent process is exercised in tests/integration/test_remote_record.py).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from costmeter.config import RemoteHostConfig
from costmeter.core import DeviceInfo, DeviceSample, HostInfo, Tick
from costmeter.sampling import wire
from costmeter.service.remote import RemoteCollector
from costmeter.service.remote.status import HostStatus


class FakeSink:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.registered: list[HostInfo] = []
        self.lock = threading.Lock()

    def register(self, host: HostInfo, devices: object) -> None:
        with self.lock:
            self.registered.append(host)

    def submit(self, tick: Tick, *, wait: bool = False) -> None:
        with self.lock:
            self.ticks.append(tick)


def _server(
    name: str, t0: float, *, skew_s: float = 0.0, endless: bool = False
) -> tuple[http.server.ThreadingHTTPServer, str]:
    host = HostInfo(name, 4, "cpu", 1 << 34)
    device = DeviceInfo(name, 0, f"GPU-{name}", "NVIDIA A100-SXM4-80GB", 80 << 30)

    class Handler(http.server.BaseHTTPRequestHandler):
        created: ClassVar[float] = t0
        pages: ClassVar[int] = 0

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            now = time.time() + skew_s
            ticks = [
                Tick(ts, name, None, (DeviceSample(device.uuid, 0, ts, gpu_util=50.0,
                                                   energy_mj=int(ts * 1000)),))
                for ts in _range(self.created + skew_s, now)
            ]  # fmt: skip
            if url.path == "/v1/info":
                doc = wire.encode_info(
                    wire.AgentInfo("0", host, (device,), 0.2, t0, now, "simulated")
                )
            else:
                since = float(urllib.parse.parse_qs(url.query).get("since", ["0"])[0])
                ticks = [t for t in ticks if t.ts > since]
                if endless:  # a broken agent: "more" forever, with nothing in the pages
                    ticks = []
                doc = wire.encode_samples_page(
                    wire.SamplesPage(host, (device,), tuple(ticks), endless, None, t0)
                )
                type(self).pages += 1
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    PAGES[url] = lambda: Handler.pages
    return server, url


#: URL -> how many /v1/samples pages that test server has served.
PAGES: dict[str, Callable[[], int]] = {}


def _range(start: float, end: float) -> list[float]:
    out = []
    ts = start
    while ts <= end:
        out.append(round(ts, 3))
        ts += 0.2
    return out


@pytest.fixture
def agents() -> Iterator[Callable[..., str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def make(name: str, **kw: Any) -> str:
        server, url = _server(name, time.time() - 2.0, **kw)
        servers.append(server)
        return url

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_hosts_connect_backfill_and_reach_live_listeners(
    agents: Callable[..., str], tmp_path: Path
) -> None:
    sink = FakeSink()
    live: list[Tick] = []
    changes: list[HostStatus] = []
    dead = f"http://127.0.0.1:{_free_port()}"
    collector = RemoteCollector(
        sink,
        [RemoteHostConfig("", agents("a1")), RemoteHostConfig("renamed", agents("a2")),
         RemoteHostConfig("", dead)],
        interval_s=0.2,
        cpu_tdp_w=65.0,
        on_tick=live.append,
        on_status=changes.append,
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
    )  # fmt: skip
    collector.start()
    try:
        _wait(lambda: sum(s.state == "connected" for s in collector.statuses()) == 2)
        _wait(lambda: any(t.host == "renamed" for t in live))
        statuses = {s.name: s for s in collector.statuses()}
    finally:
        collector.stop()
    assert set(statuses) == {"a1", "renamed", dead.removeprefix("http://")}
    refused = statuses[dead.removeprefix("http://")]
    assert refused.state == "disconnected"
    assert refused.error is not None and "connection refused" in refused.error
    assert statuses["a1"].lag_s is not None and statuses["a1"].lag_s < 2.0
    # The buffer from 2 s before start was backfilled: about ten ticks per host at once.
    a1 = [t.ts for t in sink.ticks if t.host == "a1"]
    assert len(a1) >= 10 and a1 == sorted(a1) and len(set(a1)) == len(a1)
    # A [hosts.NAME] entry renames the agent's samples and its host record.
    assert {h.hostname for h in sink.registered} == {"a1", "renamed"}
    assert all(t.device_intervals for t in sink.ticks)
    assert any(c.state == "connected" for c in changes)


def test_two_agents_with_one_name_are_refused(agents: Callable[..., str]) -> None:
    sink = FakeSink()
    first, second = agents("same"), agents("same")
    collector = RemoteCollector(
        sink,
        [RemoteHostConfig("", first), RemoteHostConfig("", second)],
        interval_s=0.2,
        cpu_tdp_w=65.0,
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
    )
    collector.start()
    try:
        _wait(lambda: sorted(s.state for s in collector.statuses()) == ["connected", "error"])
        (bad,) = [s for s in collector.statuses() if s.state == "error"]
    finally:
        collector.stop()
    assert bad.error is not None and "already has" in bad.error and "--name" in bad.error


def test_set_hosts_starts_and_stops_hosts(agents: Callable[..., str]) -> None:
    sink = FakeSink()
    a, b = agents("h1"), agents("h2")
    collector = RemoteCollector(
        sink, [RemoteHostConfig("", a)], interval_s=0.2, cpu_tdp_w=65.0, skip_hosts=("h1",)
    )
    collector.start()
    try:
        _wait(lambda: [s.state for s in collector.statuses()] == ["error"])
        (own,) = collector.statuses()
        assert own.error is not None and "this machine's own" in own.error
        collector.set_hosts([RemoteHostConfig("", b)])
        _wait(lambda: [(s.name, s.state) for s in collector.statuses()] == [("h2", "connected")])
    finally:
        collector.stop()
    assert {t.host for t in sink.ticks} == {"h2"}


def test_a_clock_far_ahead_and_an_endless_backfill_are_handled(
    agents: Callable[..., str],
) -> None:
    sink = FakeSink()
    ahead = agents("ahead", skew_s=3600.0)
    endless = agents("endless", endless=True)
    collector = RemoteCollector(
        sink,
        [RemoteHostConfig("", ahead), RemoteHostConfig("", endless)],
        interval_s=0.2,
        cpu_tdp_w=65.0,
    )
    collector.start()
    try:
        _wait(lambda: {s.name: s.state for s in collector.statuses()}.get("ahead") == "error")
        _wait(lambda: {s.name: s.state for s in collector.statuses()}.get("endless") == "connected")
        before = PAGES[endless]()
        time.sleep(1.0)
        pages = PAGES[endless]() - before
        states = {s.name: s for s in collector.statuses()}
    finally:
        collector.stop()
    assert (
        states["ahead"].error is not None
        and "clock is more than 300 s ahead" in states["ahead"].error
    )
    assert not [t for t in sink.ticks if t.host == "ahead"]
    # An endless "more" with empty pages is polled at the normal pace, not in a tight loop.
    assert states["endless"].state == "connected"
    assert 1 <= pages <= 10
