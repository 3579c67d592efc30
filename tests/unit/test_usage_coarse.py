"""Usage totals read from the rollups (``coarse=True``, what History's cost card uses) equal the
totals summed from raw rows, on data written by the real writer, on an imported nvidia-smi log
(someone else's data) and after retention cut rows away."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.cost.ledger import price_usage
from costmeter.cost.pricing import load_default_pricing
from costmeter.service.log_import import ImportOptions, import_log
from costmeter.store import RetentionPolicy, Store, Writer
from costmeter.store.retention import Cutoffs
from costmeter.store.rollup import HOUR_MS, MINUTE_MS
from costmeter.store.testing import realistic_ticks
from costmeter.store.usage import pieces

T0 = 1_699_999_200.0  # on a whole hour
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)
LOG = Path(__file__).resolve().parents[1] / "data" / "nvidia_smi" / "nanogpt_8gpu_train_nounits.csv"


def write(db: Path, seconds: int) -> None:
    w = Writer(db, clock=SimulatedClock(T0), retention=KEEP_ALL, batch_ticks=97)
    w.start()
    for t in realistic_ticks(T0 + 17.25, seconds, 3, host="h", seed=5):
        w.submit(t, wait=True)
    assert w.flush(60)
    w.stop()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("coarse") / "h.db"
    write(db, 3 * 3600 + 1234)
    return db


def assert_same_usage(store: Store, start: float, end: float) -> None:
    raw = store.device_usage(start, end)
    coarse = store.device_usage(start, end, coarse=True)
    assert raw, "no devices in the range: the comparison would prove nothing"
    assert [u.uuid for u in coarse] == [u.uuid for u in raw]
    for a, b in zip(raw, coarse, strict=True):
        for field in ("seconds", "idle_seconds", "energy_j", "energy_measured_j", "idle_energy_j"):
            assert getattr(b, field) == pytest.approx(getattr(a, field), rel=1e-12), field
        assert b.avg_util == pytest.approx(a.avg_util, rel=1e-12)
    hosts_raw = store.host_usage(start, end)
    hosts_coarse = store.host_usage(start, end, coarse=True)
    for a, b in zip(hosts_raw, hosts_coarse, strict=True):
        assert b.seconds == pytest.approx(a.seconds, rel=1e-12)
        assert b.busy_core_seconds == pytest.approx(a.busy_core_seconds, rel=1e-9)
        assert b.cpu_energy_j == pytest.approx(a.cpu_energy_j, rel=1e-12)
    # The priced report, as the cost card shows it, within 1 % (in fact the same).
    pricing = load_default_pricing()
    report_raw = price_usage(raw, hosts_raw, pricing, start, end)
    report_coarse = price_usage(coarse, hosts_coarse, pricing, start, end)
    assert report_raw.total.cost > 0
    assert report_coarse.total.cost == pytest.approx(report_raw.total.cost, rel=0.01)
    assert report_coarse.total.idle_cost == pytest.approx(report_raw.total.idle_cost, rel=0.01)


@pytest.mark.parametrize(
    "start, end",
    [
        (T0, T0 + 4 * 3600),  # all of it
        (T0 + 17.25, T0 + 3 * 3600 + 1234 + 17.25),  # exactly the samples
        (T0 + 123.4, T0 + 2 * 3600 + 59.9),  # odd edges, whole hours inside
        (T0 + 3600, T0 + 7200),  # one whole hour
        (T0 + 61.5, T0 + 3599.5),  # minutes only, no whole hour
        (T0 + 4000.2, T0 + 4031.7),  # inside one minute: raw only
    ],
)
def test_coarse_equals_raw_on_recorded_data(recorded: Path, start: float, end: float) -> None:
    with Store.open(recorded) as store:
        assert_same_usage(store, start, end)


def test_coarse_equals_raw_on_random_ranges(recorded: Path) -> None:
    rng = random.Random(11)
    with Store.open(recorded) as store:
        for _ in range(25):
            a = T0 + rng.uniform(0, 3 * 3600)
            assert_same_usage(store, a, a + rng.uniform(40, 3 * 3600))


def test_coarse_equals_raw_on_an_imported_nvidia_smi_log(tmp_path: Path) -> None:
    db = tmp_path / "imported.db"
    columns = ("timestamp", "index", "temperature.gpu", "utilization.gpu", "power.draw")
    import_log(LOG, db, ImportOptions(host="gpu-box-1", gpu_model="h100", columns=columns))
    with Store.open(db) as store:
        span = store.time_range()
        assert span is not None
        assert_same_usage(store, span[0] - 30, span[1] + 30)
        assert_same_usage(store, span[0] + 61.3, span[1] - 7.9)


def test_coarse_keeps_the_retention_cutoffs(tmp_path: Path) -> None:
    """Raw rows deleted before the raw cut-off: both paths read the rollups there, the same way."""
    db = tmp_path / "kept.db"
    write(db, 3 * 3600 + 1234)
    with Store.open(db) as store:
        # Keep raw rows for the last ~1.5 h, minute rows for the last ~2.5 h.
        now = T0 + 4 * 3600
        cut = store.apply_retention(
            RetentionPolicy(raw_days=1.5 / 24, minute_days=2.5 / 24, hour_days=None), now
        )
        assert cut.raw > T0 * 1000 and cut.minute > T0 * 1000
        assert_same_usage(store, T0 + 100.5, now)
        assert_same_usage(store, T0 + 2 * 3600 + 33.3, now - 11.1)


def test_pieces_tile_the_range_on_bucket_edges() -> None:
    cut = Cutoffs(raw=2 * HOUR_MS + 5 * MINUTE_MS, minute=HOUR_MS, hour=0)
    rng = random.Random(2)
    for _ in range(500):
        s = rng.randrange(0, 5 * HOUR_MS)
        e = s + rng.randrange(1, 5 * HOUR_MS)
        for coarse in (False, True):
            parts = pieces(s, e, cut, coarse)
            spans = sorted((lo, hi) for _, lo, hi in parts)
            assert spans[0][0] == s and spans[-1][1] == e
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
            for src, lo, hi in parts:
                if src == "samples":
                    assert lo >= cut.raw
                if coarse and src == "rollup_1h" and lo >= cut.minute:
                    assert lo % HOUR_MS == 0 and hi % HOUR_MS == 0
                if coarse and src == "rollup_1m" and lo >= cut.raw:
                    assert lo % MINUTE_MS == 0 and hi % MINUTE_MS == 0
    # A 30-day range reads whole hours from the hour table, not millions of raw rows.
    parts = pieces(0, 30 * 24 * HOUR_MS + 61_234, Cutoffs(0, 0, 0), coarse=True)
    assert [p[0] for p in parts] == ["rollup_1h", "rollup_1m", "samples"]
