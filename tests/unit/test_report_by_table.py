"""``costmeter report --by``'s table and CSV on a hand-made report."""

from __future__ import annotations

import csv
import io

from costmeter.cli.report_cmd import chargeback_csv, chargeback_table
from costmeter.cost.chargeback import Amounts, ChargebackReport, OwnerGroup

REPORT = ChargebackReport(
    by=("project", "user"),
    start=0.0,
    end=86400.0,
    currency="EUR",
    share_idle=False,
    groups=(
        OwnerGroup({"project": "vision", "user": "alice"}, Amounts(10.0, 2.5, 30.0, 4.0, 1.0), 0.6),
        OwnerGroup({"project": None, "user": "bob"}, Amounts(4.0, 1.0, 10.0, 0.0, 0.4), 0.2),
    ),
    unattributed=Amounts(1.0, 0.2, 5.0, 0.0, 0.1),
    unattributed_why={"owner unreadable: environ": 5.0},
    idle=Amounts(2.0, 0.3, 5.0, 5.0, 0.1),
    total=Amounts(17.0, 4.0, 50.0, 9.0, 1.6),
)


def test_the_table_has_a_row_per_owner_then_unattributed_idle_and_total() -> None:
    text = chargeback_table(REPORT, "24h")
    lines = text.splitlines()
    assert lines[0] == "Who pays over the last 24h (24.0 h window), by project, user"
    assert lines[1].split() == ["PROJECT", "USER", "GPU-HOURS", "ENERGY", "COST", "IDLE",
                                "COST", "CO2e", "SHARE"]  # fmt: skip
    rows = [line.split() for line in lines[3:7]]
    assert rows[0][:2] == ["vision", "alice"] and rows[0][-1] == "60.0%"
    assert rows[1][:2] == ["(none)", "bob"] and "€10.00" in rows[1]
    assert [r[0] for r in rows[2:]] == ["UNATTRIBUTED", "IDLE"]
    assert lines[7].startswith("TOTAL") and lines[7].endswith("100.0%")
    assert "unattributed €5.00: owner unreadable: environ" in text


def test_csv_rows_add_up_to_the_total_row() -> None:
    rows = list(csv.DictReader(io.StringIO(chargeback_csv(REPORT))))
    assert [r["kind"] for r in rows] == ["group", "group", "unattributed", "idle", "total"]
    assert rows[1]["project"] == "" and rows[1]["user"] == "bob"
    assert sum(float(r["cost"]) for r in rows[:-1]) == float(rows[-1]["cost"])
