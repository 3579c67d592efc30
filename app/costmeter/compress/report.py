"""The result of a compression measurement: before/after figures, verdict, notes, rendering.

The verdict weighs a goal (``--goal``): ``cost`` (the default: Costmeter is about money) keeps a
model that serves cheaper per inference at batch 1 or at the larger batch and dearer at neither;
``latency`` one that answers a single request (batch 1) faster; ``size`` one that is smaller to
store and hold in memory. Whatever the goal, the verdict says what the model is better for and
what not, and the accuracy gate (``max_drop``) rejects first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from costmeter.compress.measure import Latency
from costmeter.compress.serving_cost import cost_per_million, format_money

Verdict = Literal["keep", "reject", "unmeasured"]
Goal = Literal["cost", "latency", "size"]
GOALS: tuple[Goal, ...] = ("cost", "latency", "size")
DEFAULT_GOAL: Goal = "cost"
FOR_SIZE = "storage and memory"
FOR_LATENCY = "response time (batch 1)"
FOR_COST = "serving cost"
#: What each goal asks of the compressed model.
GOAL_TEXT: dict[Goal, str] = {
    "cost": "serving cost (cheaper per inference at batch 1 or the larger batch, dearer at "
    "neither)",
    "latency": "response time (faster at batch 1)",
    "size": "storage and memory (smaller)",
}
#: A size must shrink by more than this share to count as a gain.
SIZE_MARGIN = 0.05
#: A latency must improve (or worsen) by more than this share to count (timing noise).
LATENCY_MARGIN = 0.10


@dataclass(frozen=True)
class Figures:
    """One model's measurements."""

    size_bytes: int
    latency_1: Latency
    latency_n: Latency
    accuracy: float | None = None
    #: Number of parameter elements (weights and biases).
    parameters: int | None = None


@dataclass(frozen=True)
class Row:
    """One line of the before/after table, as text."""

    label: str
    before: str
    after: str
    change: str


@dataclass
class CompressionReport:
    model: str
    format: str
    method: str
    engine: str
    threads: int
    repeat: int
    batch: int
    input_shape: tuple[int, ...]
    before: Figures
    after: Figures
    eval_path: str | None = None
    eval_rows: int = 0
    agreement: float | None = None
    sparsity: float | None = None
    max_drop: float = 1.0
    verdict: Verdict = "unmeasured"
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    out_path: str | None = None
    #: Why ``out_path`` could not be written (the measurement itself succeeded).
    save_error: str | None = None
    goal: Goal = DEFAULT_GOAL
    #: Price per hour of what ran the measurement (``threads`` CPU cores); None: not priced.
    price_per_hour: float | None = None
    currency: str = "USD"
    price_source: str = ""
    #: Seconds spent training the compressed model (distill only).
    training_s: float | None = None
    #: The compressed model, kept for a later save (not part of the JSON).
    compressed: Any = field(default=None, repr=False, compare=False)

    @property
    def accuracy_drop_points(self) -> float | None:
        if self.before.accuracy is None or self.after.accuracy is None:
            return None
        return (self.before.accuracy - self.after.accuracy) * 100.0

    def cost_per_million(self, figures: Figures, at_batch_n: bool) -> float | None:
        """Serving cost of a million inferences at batch 1 or (per row) at the larger batch;
        None when not priced or not timed."""
        lat = figures.latency_n if at_batch_n else figures.latency_1
        if self.price_per_hour is None or lat.median_s is None:
            return None
        return cost_per_million(lat.median_s, lat.batch, self.price_per_hour)

    def money(self, amount: float | None) -> str:
        return "" if amount is None else format_money(amount, self.currency)

    def rows(self) -> list[Row]:
        b, a = self.before, self.after
        rows = [
            Row("size (state_dict bytes)", format_bytes(b.size_bytes), format_bytes(a.size_bytes),
                ratio_text(b.size_bytes, a.size_bytes, "smaller", "larger")),
        ]  # fmt: skip
        if b.parameters is not None and a.parameters is not None:
            rows.append(Row("parameters", f"{b.parameters:,}", f"{a.parameters:,}",
                            ratio_text(b.parameters, a.parameters, "fewer", "more")))  # fmt: skip
        rows += [
            _latency_row("latency, batch 1", b.latency_1, a.latency_1),
            _latency_row(f"latency, batch {self.batch}", b.latency_n, a.latency_n),
        ]
        if self.price_per_hour is not None:
            for label, at_n in (("batch 1", False), (f"batch {self.batch}", True)):
                cb, ca = self.cost_per_million(b, at_n), self.cost_per_million(a, at_n)
                change = ratio_text(cb, ca, "cheaper", "dearer") if cb and ca else ""
                rows.append(Row(f"cost per 1M inferences, {label}", self.money(cb),
                                self.money(ca), change))  # fmt: skip
        if b.accuracy is not None or a.accuracy is not None:
            drop = self.accuracy_drop_points
            change = "" if drop is None else f"{_change(drop):+.1f} points"
            rows.append(Row("accuracy", _percent(b.accuracy), _percent(a.accuracy), change))
            rows.append(Row("agreement with original", "", _percent(self.agreement), ""))
        if self.sparsity is not None:
            rows.append(Row("sparsity of pruned weights", "", _percent(self.sparsity), ""))
        return rows

    def verdict_text(self) -> str:
        word = {"keep": "Keep", "reject": "Reject", "unmeasured": "No verdict"}[self.verdict]
        return f"{word}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("compressed")
        data["input_shape"] = list(self.input_shape)
        data["accuracy_drop_points"] = self.accuracy_drop_points
        data["cost_per_million"] = {
            side: {
                "batch_1": self.cost_per_million(figures, at_batch_n=False),
                "batch_n": self.cost_per_million(figures, at_batch_n=True),
            }
            for side, figures in (("before", self.before), ("after", self.after))
        }
        data["better_for"], data["worse_for"] = better_for(self)
        return data

    def render_table(self) -> str:
        headers = ("", "before", "after", "change")
        lines = [(r.label, r.before, r.after, r.change) for r in self.rows()]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

        def fmt(cells: tuple[str, str, str, str]) -> str:
            out = [cells[0].ljust(widths[0])]
            out += [cells[i].rjust(widths[i]) for i in (1, 2)]
            out.append(cells[3].ljust(widths[3]))
            return "  ".join(out).rstrip()

        head = (
            f"{self.model} ({self.format}), {self.method} with {self.engine}; "
            f"{self.threads} CPU thread{'s' if self.threads != 1 else ''}, "
            f"median of {self.repeat} runs; goal: {self.goal}"
        )
        table = [fmt(headers), "  ".join("-" * w for w in widths), *(fmt(line) for line in lines)]
        notes = [f"- {n}" for n in self.notes]
        saved = [f"Compressed model saved to {self.out_path}."] if self.out_path else []
        if self.save_error:
            saved.append(f"Not saved: {self.save_error}")
        return "\n".join([head, "", *table, "", self.verdict_text(), *notes, *saved])


def decide(report: CompressionReport) -> tuple[Verdict, str]:
    """Reject a model that does not run, loses more than ``max_drop`` points of accuracy, or
    is neither smaller nor faster; otherwise keep it when it meets ``report.goal`` and reject
    it when not; "unmeasured" without evaluation data. The reason says what it is better for."""
    after, before = report.after, report.before
    if after.latency_1.error and after.latency_n.error:
        return "reject", f"the compressed model does not run here ({after.latency_1.error})."
    gains, losses = _gains(before, after, report.batch)
    drop = report.accuracy_drop_points
    if drop is not None and drop > report.max_drop:
        return "reject", (
            f"accuracy drops {drop:.1f} points, more than the {report.max_drop:g} allowed."
        )
    if not gains:
        return "reject", "it is neither smaller nor faster, as stored and run here."
    facts = " and ".join(gains) + (f", but {' and '.join(losses)}" if losses else "")
    good, bad = better_for(report)
    suited = f"better for {' and '.join(good)}" if good else "better for nothing measured here"
    if bad:
        suited += f", not for {' or '.join(bad)}"
    money = _money_phrase(report)
    if drop is None:
        return "unmeasured", (
            f"{facts}: {suited}{money}; accuracy was not measured: give evaluation data."
        )
    accuracy = f"accuracy changes {_change(drop):+.1f} points (limit {report.max_drop:g})"
    if GOAL_FOR[report.goal] in good:
        return "keep", f"{facts}: {suited}{money}; {accuracy}. Goal {report.goal}: met."
    others = [g for g in GOALS if GOAL_FOR[g] in good]
    hint = f" (--goal {others[0]} would keep it)" if others else ""
    return "reject", (
        f"{facts}: {suited}{money}; {accuracy}. Goal {report.goal}: not met, it asks for "
        f"{GOAL_TEXT[report.goal]}{hint}."
    )


#: The phrase of ``better_for`` each goal needs.
GOAL_FOR: dict[Goal, str] = {"cost": FOR_COST, "latency": FOR_LATENCY, "size": FOR_SIZE}


def better_for(report: CompressionReport) -> tuple[list[str], list[str]]:
    """What the compressed model is better for and worse for, of storage and memory, response
    time at batch 1, and serving cost (per inference, at batch 1 or the larger batch: the
    same CPU and threads ran both, so the cost ratio is the time-per-inference ratio)."""
    b, a = report.before, report.after
    good: list[str] = []
    bad: list[str] = []
    size = _compare(b.size_bytes, a.size_bytes, SIZE_MARGIN)
    one = _compare(b.latency_1.median_s, a.latency_1.median_s, LATENCY_MARGIN)
    many = _compare(b.latency_n.median_s, a.latency_n.median_s, LATENCY_MARGIN)
    for sign, phrase in ((size, FOR_SIZE), (one, FOR_LATENCY)):
        if sign:
            (good if sign < 0 else bad).append(phrase)
    if one > 0 or many > 0 or (a.latency_1.error and not b.latency_1.error):
        bad.append(FOR_COST)
    elif one < 0 or many < 0:
        good.append(FOR_COST)
    return good, bad


def _compare(before: float | None, after: float | None, margin: float) -> int:
    """-1 when ``after`` is lower by more than ``margin`` (a share), +1 when higher, else 0."""
    if not before or not after:
        return 0
    if after < before * (1 - margin):
        return -1
    return 1 if after > before * (1 + margin) else 0


def _money_phrase(report: CompressionReport) -> str:
    """ " (a million inferences: $A instead of $B at batch 1, ...)" when priced."""
    parts = []
    for label, at_n in (("batch 1", False), (f"batch {report.batch}", True)):
        before = report.cost_per_million(report.before, at_n)
        after = report.cost_per_million(report.after, at_n)
        if before is not None and after is not None:
            parts.append(f"{report.money(after)} instead of {report.money(before)} at {label}")
    return f" (a million inferences on this CPU: {', '.join(parts)})" if parts else ""


def _change(drop: float) -> float:
    """The accuracy change in points, without a "-0.0"."""
    return round(0.0 - drop, 1) + 0.0


def _gains(before: Figures, after: Figures, batch: int) -> tuple[list[str], list[str]]:
    """What got better and what got worse, as phrases ("3.2x smaller", "2.1x slower at ...")."""
    gains, losses = [], []
    if after.size_bytes < before.size_bytes * (1 - SIZE_MARGIN):
        gains.append(ratio_text(before.size_bytes, after.size_bytes, "smaller", "larger"))
    elif after.size_bytes > before.size_bytes * (1 + SIZE_MARGIN):
        losses.append(ratio_text(before.size_bytes, after.size_bytes, "smaller", "larger"))
    pairs = (("batch 1", before.latency_1, after.latency_1),
             (f"batch {batch}", before.latency_n, after.latency_n))  # fmt: skip
    for label, b, a in pairs:
        if not (b.median_s and a.median_s):
            continue
        phrase = f"{ratio_text(b.median_s, a.median_s, 'faster', 'slower')} at {label}"
        if a.median_s < b.median_s * (1 - LATENCY_MARGIN):
            gains.append(phrase)
        elif a.median_s > b.median_s * (1 + LATENCY_MARGIN):
            losses.append(phrase)
    return gains, losses


def ratio_text(before: float, after: float, better: str, worse: str) -> str:
    if before <= 0 or after <= 0:
        return ""
    if abs(after / before - 1) < 0.005:
        return "same"
    if after < before:
        return f"{before / after:.2f}x {better}"
    return f"{after / before:.2f}x {worse}"


def format_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.2f} MB"


def format_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _latency_cell(lat: Latency) -> str:
    if lat.error is not None or lat.median_s is None:
        return "does not run"
    return format_seconds(lat.median_s)


def _latency_row(label: str, b: Latency, a: Latency) -> Row:
    change = ""
    if b.median_s and a.median_s:
        change = ratio_text(b.median_s, a.median_s, "faster", "slower")
    elif a.error:
        change = a.error[:80]
    return Row(label, _latency_cell(b), _latency_cell(a), change)


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f} %"
