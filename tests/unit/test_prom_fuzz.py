"""Hostile /metrics pages: a clean PromParseError or a reading, never a crash or a hang."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.service.remote import dcgm, node_exporter
from costmeter.service.remote.prom import MAX_BYTES, PromParseError, parse_metrics

FUZZ = settings(
    max_examples=200,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NAMES = [
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_network_receive_bytes_total",
    "node_uname_info",
]
LABELS = ["gpu", "UUID", "modelName", "Hostname", "GPU_I_ID", "GPU_I_PROFILE", "cpu", "mode",
          "device", "nodename", "le", "quantile"]  # fmt: skip
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(["NaN", "+Inf", "-Inf", "1e999", "0x10", "", "1_000", "--1", "1 2"]),
)
LABEL_VALUE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=30
).map(lambda s: s.replace("\\", "\\\\").replace('"', '\\"'))


@st.composite
def sample_line(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    labels = draw(st.lists(st.tuples(st.sampled_from(LABELS), LABEL_VALUE), max_size=6))
    body = ",".join(f'{k}="{v}"' for k, v in labels)
    raw = draw(st.booleans())
    junk = draw(st.sampled_from(["", "{", "}", '"', ",", "=", " ", "#", "\\"])) if raw else ""
    return f"{name}{{{body}{junk}}} {draw(VALUES)}"


@st.composite
def page(draw: st.DrawFn) -> str:
    lines = draw(
        st.lists(
            st.one_of(
                sample_line(),
                st.sampled_from(NAMES).map(lambda n: f"# TYPE {n} counter"),
                st.sampled_from(NAMES).map(lambda n: f"# TYPE {n} histogram"),
                st.sampled_from(NAMES).map(lambda n: f"# HELP {n} some help \\n text"),
                st.text(max_size=40),
            ),
            max_size=40,
        )
    )
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n", "\n# EOF\n"]))


def _map_everything(text: str | bytes) -> None:
    """Parse; what parses must also map (both mappers, two scrapes for the node rates)."""
    try:
        samples = parse_metrics(text)
    except PromParseError as err:
        assert str(err)  # a sentence, not an empty message
        return
    gpus = dcgm.DcgmMapper()
    node = node_exporter.NodeExporterMapper()
    for ts in (1.0, 2.0):
        reading = gpus.map(samples, host="h", ts=ts)
        for s in reading.samples:
            assert s.gpu_util is None or 0.0 <= s.gpu_util <= 100.0
            assert s.energy_mj is None or s.energy_mj >= 0
        host = node.map(samples, host="h", ts=ts)
        if host.sample is not None:
            assert 0.0 <= host.sample.cpu_percent <= 100.0


@FUZZ
@given(page())
def test_structured_pages_never_crash(text: str) -> None:
    _map_everything(text)


@FUZZ
@given(st.text(max_size=2000))
def test_any_text_never_crashes(text: str) -> None:
    _map_everything(text)


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_never_crash(data: bytes) -> None:
    _map_everything(data)


def test_a_page_over_the_limit_is_refused_at_once() -> None:
    big = b"DCGM_FI_DEV_GPU_UTIL 1\n" * (MAX_BYTES // 20)
    t0 = time.monotonic()
    try:
        parse_metrics(big)
    except PromParseError as err:
        assert "larger than" in str(err)
    else:
        raise AssertionError("a page over the limit was read")
    assert time.monotonic() - t0 < 2.0


def test_many_labels_on_one_line_stay_fast() -> None:
    labels = ",".join(f'l{i}="{"v" * 5}"' for i in range(4000))  # ~60 KB, under the line cap
    t0 = time.monotonic()
    samples = parse_metrics(f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} 5\n")
    assert len(samples["DCGM_FI_DEV_GPU_UTIL"][0].labels) == 4000
    assert time.monotonic() - t0 < 5.0
