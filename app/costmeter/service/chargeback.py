"""Who pays over a window: the store's attribution priced like ``costmeter report`` prices it.

One entry point for the CLI (``report --by``), the app's "who pays" page and per-owner budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

from costmeter.config import Config
from costmeter.cost.chargeback import ChargebackReport, compute_chargeback, parse_by
from costmeter.cost.ledger import price_usage
from costmeter.service.summary import report_between
from costmeter.store import Store

__all__ = ["chargeback", "parse_by"]


def chargeback(
    store: Store,
    config: Config,
    start: float,
    end: float,
    by: Sequence[str],
    *,
    share_idle: bool | None = None,
    bucket_s: float | None = None,
) -> ChargebackReport:
    """Split the cost of ``[start, end]`` over owners by the dimensions ``by``.

    ``share_idle`` None takes ``[attribution] share_idle`` from the config; ``bucket_s`` asks
    for the cost-over-time series (one point per bucket and owner).
    """
    pricing = config.pricing()
    costs = report_between(store, pricing, start, end)
    attribution = store.attribution(start, end, bucket_s=bucket_s)
    # Before where the samples reach only rollups are left: their cost, priced the same way, is
    # unattributed as older (GPUs before the per-process minutes, hosts before the raw process
    # samples) rather than guessed from the gap. No samples at all: the whole window is older.
    older_gpu = older_cpu = None
    gpu_until = _until(attribution.covered_from, end)
    if start < gpu_until:
        older_gpu = price_usage(store.device_usage(start, gpu_until), (), pricing, start, gpu_until)
    cpu_until = _until(attribution.cpu_covered_from, end)
    if start < cpu_until:
        older_cpu = price_usage((), store.host_usage(start, cpu_until), pricing, start, cpu_until)
    return compute_chargeback(
        attribution,
        costs,
        pricing,
        by,
        rules=config.attribution.rules,
        share_idle=config.attribution.share_idle if share_idle is None else share_idle,
        raw_days=config.retention.raw_days,
        minute_days=config.retention.minute_days,
        older_gpu=older_gpu,
        older_cpu=older_cpu,
    )


def _until(covered_from: float | None, end: float) -> float:
    return end if covered_from is None else min(covered_from, end)
