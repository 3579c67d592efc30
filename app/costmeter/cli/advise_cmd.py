"""``costmeter advise``: what to change to pay less, with evidence and savings per month."""

from __future__ import annotations

import argparse
import json

from costmeter.advice.model import Recommendation
from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.cli.table import render
from costmeter.core.errors import StoreError
from costmeter.core.units import parse_duration
from costmeter.cost.ledger import format_money
from costmeter.service.advice import AdviceResult, advise
from costmeter.store import Store

#: Exit status when the database is missing or unreadable.
NO_DATABASE = 3


def run(args: argparse.Namespace) -> int:
    config = load_config_from(args)
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        say(str(exc))
        return 2
    db = resolve_db(args, config)
    if not db.exists():
        say(f"there is no database at {db} yet. Record first: costmeter record --db {db}")
        return NO_DATABASE
    try:
        # Never creates or moves a file: these only read.
        store = Store.open(db, create=False)
    except StoreError as exc:
        say(str(exc))
        return NO_DATABASE
    try:
        # Only reads: runs left "running" are reconciled by `costmeter runs` and run services.
        result = advise(store, config, since_s=since)
    except StoreError as exc:  # locked, or a damaged page met while reading
        say(str(exc))
        return NO_DATABASE
    finally:
        store.close()
    for message in result.messages:
        say(message)
    if args.format == "json":
        recs = list(result.recommendations)
        if args.all:
            recs += list(result.hidden)
        print(json.dumps([_json(r, r in result.hidden) for r in recs], indent=2))
    else:
        print(table(result, show_hidden=args.all))
    return 0


def _json(r: Recommendation, hidden: bool) -> dict[str, object]:
    out = r.to_json()
    out["hidden"] = hidden
    return out


def _target(r: Recommendation) -> str:
    t = r.target
    parts = [t.host]
    if t.device is not None:
        parts.append(f"GPU {t.device}")
    if t.run is not None:
        parts.append(f"run {t.run}")
    elif t.sweep:
        parts.append(f"sweep {t.sweep}")
    return " ".join(parts)


def table(result: AdviceResult, *, show_hidden: bool = False) -> str:
    cur = result.currency
    rows = []
    recs = [(r, "") for r in result.recommendations]
    if show_hidden:
        recs += [(r, " (hidden)") for r in result.hidden]
    for r, note in recs:
        money = format_money(r.savings.money_per_month, cur) if r.savings else "unknown"
        owner = r.target.owner or "-"
        rows.append([r.rule + note, _target(r), owner, r.title, money, f"{r.confidence:.0%}"])
    if not rows:
        return "No recommendations: nothing to change over this period."
    headers = ["RULE", "TARGET", "OWNER", "RECOMMENDATION", "SAVES/MONTH", "CONFIDENCE"]
    total = format_money(result.total_savings_per_month, cur)
    text = render(headers, rows, numeric={4, 5})
    return f"{text}\n\nTotal: {total} per month if every recommendation is applied."
