"""Talking to a Costmeter agent: ``/v1/info`` and pages of ``/v1/samples``.

The JSON is read by :mod:`costmeter.sampling.wire`, which checks every field; a malformed answer
is a :class:`~costmeter.service.remote.http.RemoteError` of kind ``protocol``.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from costmeter.sampling import wire
from costmeter.service.remote.http import PROTOCOL, Fetcher, RemoteError, netloc

#: What one answer may weigh: a page of 3600 ticks of 8 GPUs with processes is ~10 MB.
MAX_PAGE_BYTES = 64 * 1024 * 1024
MAX_INFO_BYTES = 4 * 1024 * 1024
#: Ticks per page while following live (one poll normally brings one or two).
LIVE_LIMIT = 600
#: Ticks per page while backfilling (the agent's cap).
BACKFILL_LIMIT = 3600


class AgentClient:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        ca_file: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.where = netloc(self.url)
        self._fetcher = Fetcher(token=token, timeout_s=timeout_s, ca_file=ca_file)

    def info(self) -> wire.AgentInfo:
        obj = self._json("/v1/info", MAX_INFO_BYTES)
        try:
            return wire.decode_info(obj)
        except wire.WireError as err:
            raise self._invalid(err) from None

    def samples(self, since: float | None, limit: int = LIVE_LIMIT) -> wire.SamplesPage:
        query = {"limit": str(limit)}
        if since is not None:
            query["since"] = repr(float(since))
        url = f"{self.url}/v1/samples?{urllib.parse.urlencode(query)}"
        body = self._fetcher.get(url, max_bytes=MAX_PAGE_BYTES, accept="application/json")
        try:
            page = wire.read_samples_page(body, max_bytes=MAX_PAGE_BYTES)
        except wire.WireError as err:
            raise self._invalid(err) from None
        if since is not None and page.ticks and page.ticks[0].ts <= since:
            raise RemoteError(
                f"{self.where} sent samples older than the ones asked for; is it a Costmeter "
                "agent of the same version?",
                PROTOCOL,
            )
        return page

    def _json(self, path: str, max_bytes: int) -> object:
        body = self._fetcher.get(self.url + path, max_bytes=max_bytes, accept="application/json")
        try:
            return wire.loads(body, max_bytes=max_bytes)
        except wire.WireError as err:
            raise self._invalid(err) from None

    def _invalid(self, err: wire.WireError) -> RemoteError:
        return RemoteError(f"{self.where} sent an answer that is not valid: {err}", PROTOCOL)
