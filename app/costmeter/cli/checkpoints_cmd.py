"""``costmeter checkpoints --run ID [--keep K] [--delete [--yes]]``: a run's checkpoint files,
which later ones supersede, and deleting those after the user confirmed the list."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from costmeter.advice.checkpoints import CheckpointPlan, RunCheckpoints
from costmeter.advice.rules.storage import size_text
from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.cli.table import render
from costmeter.cost.pricing import Pricing
from costmeter.cost.run_cost import format_cost
from costmeter.cost.storage import monthly_cost
from costmeter.service.checkpoint_apply import (
    CheckpointError,
    Outcome,
    checkpoint_plan,
    delete_listed,
    deletion_from_plan,
)
from costmeter.store.runs import RunStore


def run(args: argparse.Namespace) -> int:
    config = load_config_from(args)
    pricing = config.pricing()
    db = resolve_db(args, config)
    if not db.exists():
        say(f"there is no database at {db} yet, so no runs. Start one: costmeter run -- CMD")
        return 2
    with RunStore.open(db) as store:
        try:
            found, p = checkpoint_plan(store, args.run, args.keep)
        except CheckpointError as exc:
            say(str(exc))
            return 2
        if not args.delete:
            if args.format == "json":
                print(json.dumps(as_json(found, p, pricing, args.keep), indent=2))
            else:
                print(table(found, p, pricing, args.keep))
            return 0
        return _delete(args, store, found, p, pricing)


def _delete(
    args: argparse.Namespace,
    store: RunStore,
    found: RunCheckpoints,
    p: CheckpointPlan,
    pricing: Pricing,
) -> int:
    json_out = args.format == "json"
    if not p.superseded:
        if json_out:
            print(json.dumps({**as_json(found, p, pricing, args.keep), "outcomes": []}, indent=2))
        else:
            print(f"Nothing to delete: no checkpoint of run {found.run_id} is superseded.")
        return 0
    deletion = deletion_from_plan(found, p)
    listing = [f"  {f.path}  ({size_text(f.bytes)})" for f in deletion.files]
    # The list always comes first, on stderr when stdout carries JSON.
    out = sys.stderr if json_out else sys.stdout
    print(
        f"These {len(deletion.files)} files of run {found.run_id} ({size_text(deletion.bytes)}) "
        "are superseded by later checkpoints:",
        file=out,
    )
    print("\n".join(listing), file=out, flush=True)
    if not args.yes:
        if not sys.stdin.isatty():
            say("nothing deleted: confirm with --yes (no terminal to ask on).")
            return 2
        answer = input(f"Delete these {len(deletion.files)} files? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("Nothing deleted.", file=out)
            return 1

    def each(o: Outcome) -> None:
        print(o.text(), file=out, flush=True)

    outcomes = delete_listed(deletion, store, price_gb_month=pricing.storage_gb_month, on_each=each)
    freed = sum(o.bytes for o in outcomes if o.deleted)
    skipped = [o for o in outcomes if not o.deleted]
    per_month = format_cost(monthly_cost(freed, pricing.storage_gb_month), pricing.currency)
    print(
        f"Deleted {len(outcomes) - len(skipped)} files ({size_text(freed)}, {per_month}/month); "
        f"skipped {len(skipped)}.",
        file=out,
    )
    if json_out:
        data = as_json(found, p, pricing, args.keep)
        data["outcomes"] = [
            {"path": o.path, "bytes": o.bytes, "deleted": o.deleted, "reason": o.reason or None}
            for o in outcomes
        ]
        print(json.dumps(data, indent=2))
    return 1 if skipped else 0


def _actions(p: CheckpointPlan) -> dict[str, str]:
    deleted = {f.path for f in p.superseded}
    best = set(p.best)
    kept = set(p.keep)
    out = {}
    for f in [*p.kept_files, *p.superseded]:
        if f.path in deleted:
            out[f.path] = "delete (superseded)"
        elif f.unit in best:
            out[f.path] = "keep (best)"
        elif f.unit in kept and f.order:
            out[f.path] = "keep (last)"
        else:
            out[f.path] = "keep"
    return out


def as_json(
    found: RunCheckpoints, p: CheckpointPlan, pricing: Pricing, keep: int
) -> dict[str, Any]:
    actions = _actions(p)
    files = sorted([*p.kept_files, *p.superseded], key=lambda f: f.path)
    return {
        "run": found.run_id,
        "name": found.run_name,
        "dirs": list(found.dirs),
        "keep": keep,
        "stored_bytes": found.stored_bytes,
        "stored_files": found.stored_files,
        "per_month_to_keep": monthly_cost(found.stored_bytes, pricing.storage_gb_month),
        "price_gb_month": pricing.storage_gb_month,
        "price_source": pricing.storage_source,
        "currency": pricing.currency,
        "checkpoints": [
            {
                "path": f.path,
                "bytes": f.bytes,
                "checkpoint": f.unit,
                "action": actions[f.path].split(" ")[0],
                "why": actions[f.path],
                "float32_bytes": f.float32_bytes,
                "float32_measured": f.float32_measured,
            }
            for f in files
        ],
        "best": list(p.best) or None,
        "superseded_bytes": p.superseded_bytes,
        "saved_per_month": monthly_cost(p.superseded_bytes, pricing.storage_gb_month),
        "half_precision_saving_bytes": p.half_saving_bytes,
        "half_precision_measured": p.half_saving_measured,
        "listing_partial": found.listing_partial,
    }


def table(found: RunCheckpoints, p: CheckpointPlan, pricing: Pricing, keep: int) -> str:
    cur = pricing.currency
    price = pricing.storage_gb_month
    actions = _actions(p)
    files = sorted([*p.kept_files, *p.superseded], key=lambda f: f.path)
    lines = [
        f"Run {found.run_id} ({found.run_name}): {', '.join(found.dirs)}",
        f"Stored: {size_text(found.stored_bytes)} in {found.stored_files} files, "
        f"{format_cost(monthly_cost(found.stored_bytes, price), cur)}/month to keep at "
        f"{price:g} {cur}/GB-month",
        f"Price: {pricing.storage_source}",
    ]
    if not files:
        lines.append("No checkpoint files (names with a step or epoch number) found.")
        return "\n".join(lines)
    body = [(f.path, size_text(f.bytes), actions[f.path]) for f in files]
    lines += ["", render(["file", "size", "action"], body, numeric={1}), ""]
    lines.append(
        "Best: " + (", ".join(p.best) if p.best else "unknown (no checkpoint is named best)")
    )
    saved = format_cost(monthly_cost(p.superseded_bytes, price), cur)
    lines.append(
        f"Superseded: {len(p.superseded)} files, {size_text(p.superseded_bytes)}: "
        f"{saved}/month (keeping the last {keep} of each series)."
    )
    if p.half_saving_bytes:
        how = (
            "measured from the tensors" if p.half_saving_measured else "an estimate: half the file"
        )
        lines.append(
            f"Half precision (float16/bfloat16, e.g. as safetensors) would save "
            f"{size_text(p.half_saving_bytes)} more on the kept files ({how}); convert them "
            "yourself: Costmeter does not rewrite your files."
        )
    if found.listing_partial:
        lines.append("The listing stopped at its bound: more checkpoints may exist.")
    if p.superseded:
        lines.append(
            f"To delete them (the list is shown again, then asked): costmeter checkpoints "
            f"--run {found.run_id} --keep {keep} --delete"
        )
    return "\n".join(lines)
