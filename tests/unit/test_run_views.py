"""What the launcher shows, without Qt: the backends to choose from and a log read as its tail."""

from __future__ import annotations

from costmeter.config import Config
from costmeter.plugin_api import LogChunk
from costmeter.service.run_views import LOG_TAIL_CHARS, backend_choices, read_log


def test_the_local_backend_is_offered_with_what_it_can_do() -> None:
    choices = {c.name: c for c in backend_choices(Config())}
    local = choices["local"]
    assert local.ok and local.gpus and not local.places_gpus and local.error == ""
    assert local.description


def test_a_long_log_is_read_to_its_end_keeping_only_its_tail() -> None:
    chunk = 300 * 1024
    text = "".join(chr(ord("a") + i % 26) * 1024 for i in range(3 * 300))  # 900 KiB

    def read(at: int) -> LogChunk:
        part = text[at : at + chunk]
        return LogChunk(part, at + len(part), complete=at + len(part) >= len(text))

    got = read_log(read, 0)
    assert got.complete and got.skipped and got.next_offset == len(text)
    assert got.text == text[-LOG_TAIL_CHARS:]
    later = read_log(read, len(text) - 10)
    assert later.text == text[-10:] and not later.skipped


def test_a_log_still_being_written_stops_at_what_is_there() -> None:
    def read(at: int) -> LogChunk:
        return LogChunk("line\n" if at == 0 else "", 5 if at == 0 else at, complete=False)

    got = read_log(read, 0)
    assert (got.text, got.next_offset, got.complete, got.skipped) == ("line\n", 5, False, False)
