"""``checkpoints``: a run's output folders keep checkpoints that later ones supersede.

Keep the last K of each series (``checkpoint_keep``) and any named best; the others can go. The
GB saved are the superseded files' sizes (listed, not estimated), the money their GB x the
storage price per GB-month. Converting the kept float32 state dicts to half precision (or to
safetensors in half precision) is proposed beside it, with the bytes it would save: measured
from the tensors where the files could be loaded, else half the file (said to be an estimate).
Applying it deletes exactly the listed files after the user confirms (``delete_files``).
"""

from __future__ import annotations

from costmeter.advice.checkpoints import CheckpointPlan, RunCheckpoints, plan
from costmeter.advice.facts import AdviceFacts
from costmeter.advice.model import Action, Evidence, Recommendation, Savings, Target
from costmeter.advice.thresholds import Thresholds

GB = 1_000_000_000
MIB = 1024 * 1024


def size_text(nbytes: float) -> str:
    """Decimal units, as storage is billed: "6.3 MB", "1.20 GB"."""
    if nbytes >= GB:
        return f"{nbytes / GB:.2f} GB"
    if nbytes >= 1_000_000:
        return f"{nbytes / 1_000_000:.1f} MB"
    return f"{nbytes / 1000:.1f} kB"


def checkpoints(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    keep = max(0, int(t.checkpoint_keep))
    out = []
    for run in facts.checkpoints:
        p = plan(run.files, keep)
        if not p.superseded or p.superseded_bytes < t.checkpoint_min_mib * MIB:
            continue
        out.append(_recommend(facts, run, p, keep))
    return out


def _recommend(
    facts: AdviceFacts, run: RunCheckpoints, p: CheckpointPlan, keep: int
) -> Recommendation:
    price = facts.storage_gb_month
    gb = p.superseded_bytes / GB
    units = len({f.unit for f in p.superseded})
    savings = None
    if price > 0:
        savings = Savings(
            money_per_month=gb * price,
            currency=facts.currency,
            kwh_per_month=0.0,
            formula=f"{gb:.4g} GB x {price:g} {facts.currency}/GB-month",
        )
    half = p.half_saving_bytes
    half_how = "measured from the tensors" if p.half_saving_measured else "an estimate: half"
    best = ", ".join(p.best) if p.best else "unknown (no checkpoint is named best)"
    fact_lines = [
        ("output stored", f"{size_text(run.stored_bytes)} in {run.stored_files} files"),
        ("superseded", f"{units} checkpoints, {len(p.superseded)} files, {size_text(gb * GB)}"),
        ("kept", f"the last {keep} of each series: {len(p.keep)} checkpoints"),
        ("best", best),
    ]
    detail = (
        f"Later checkpoints supersede {units} of run {run.run_id}'s: deleting their "
        f"{len(p.superseded)} files frees {size_text(p.superseded_bytes)}."
    )
    if half > 0:
        fact_lines.append(("half precision would save", f"{size_text(half)} ({half_how})"))
        detail += (
            f" Saving the kept ones in half precision (float16/bfloat16, e.g. as safetensors) "
            f"would free {size_text(half)} more ({half_how})."
        )
    if run.listing_partial:
        detail += " The listing stopped at its bound: more checkpoints may exist."
    files = [{"path": f.path, "bytes": f.bytes, "mtime_ns": f.mtime_ns} for f in p.superseded]
    return Recommendation(
        rule="checkpoints",
        title=f"Delete {units} superseded checkpoints of run {run.run_id} ({run.run_name})",
        target=Target(host=run.host, run=run.run_id, run_name=run.run_name),
        evidence=Evidence(
            start=run.measured_at,
            end=run.measured_at,
            facts=tuple(fact_lines),
            values={
                "superseded_bytes": float(p.superseded_bytes),
                "superseded_files": float(len(p.superseded)),
                "half_saving_bytes": float(half),
                "stored_bytes": float(run.stored_bytes),
                "price_gb_month": price,
            },
        ),
        savings=savings,
        # The names say which checkpoints supersede which; whether the old ones are still
        # wanted (a paper's figure from epoch 3) only the user knows.
        confidence=0.8,
        action=Action(
            text=(
                f"Delete the {len(p.superseded)} files listed, after confirming: "
                f"costmeter checkpoints --run {run.run_id} --keep {keep} --delete"
            ),
            kind="delete_files",
            changes={"run": run.run_id, "keep": keep, "files": files},
        ),
        detail=detail,
    )
