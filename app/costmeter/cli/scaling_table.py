"""The scaling table ``costmeter sweep`` prints after its summary when it varied N
(``--nproc-per-node {n}``): per N, duration, speed-up and cost per unit of work, then one
sentence per N ("2 procs: 1.70x faster for 1.18x the cost")."""

from __future__ import annotations

from collections.abc import Sequence

from costmeter.cli.table import render
from costmeter.service.scaling import headers, lines_of, points_of, sentence, table_rows
from costmeter.store.runs import RunRow


def scaling_text(rows: Sequence[RunRow], currency: str) -> str | None:
    """The table and sentences, or None when fewer than two values of N succeeded."""
    points = points_of(rows)
    if len(points) < 2:
        return None
    table = render(headers(points), table_rows(points, currency), numeric={0, 1, 2, 3, 4, 5, 6})
    unit = points[0].unit
    per = "one run" if unit == "run" else f"one {unit.rstrip('s')} of progress"
    said = [sentence(line) for line in lines_of(points)[1:]]
    return (
        f"Scaling over --nproc-per-node (cost per unit of work: {per}; vs N={points[0].nproc}):\n"
        f"{table}\n" + "\n".join(said)
    )
