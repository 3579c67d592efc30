"""``--method distill[:hidden=H,epochs=E,temperature=T,alpha=A,seed=S]``: parsing the options.

Defaults, and why: a student a quarter as wide as the teacher's hidden layers (at least 8;
32 where the teacher is not a plain MLP) is several times smaller and still learns the digits;
temperature 4 and a soft-target weight of 0.7 are the usual choices since Hinton, Vinyals and
Dean (2015), "Distilling the Knowledge in a Neural Network"; 30 epochs is where the digits
student stops improving.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from costmeter.compress.errors import UnsupportedMethod

KEYS = ("hidden", "epochs", "temperature", "alpha", "seed")
OPTIONS_HELP = "distill[:hidden=H,epochs=E,temperature=T,alpha=A,seed=S] (distill:hidden=32)"


@dataclass(frozen=True)
class DistillOptions:
    #: Width of each hidden layer of the student; None: a quarter of the teacher's.
    hidden: int | None = None
    epochs: int = 30
    #: Softmax temperature of the soft targets (both teacher and student are divided by it).
    temperature: float = 4.0
    #: Weight of the soft-target loss; 1 - alpha goes to the labels' cross-entropy (when y).
    alpha: float = 0.7
    seed: int = 0

    @property
    def label(self) -> str:
        given = [
            f"{f.name}={getattr(self, f.name):g}"
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]
        return "distill" + (":" + ",".join(given) if given else "")


def parse_distill(text: str, arg: str) -> DistillOptions:
    """The options after ``distill:`` (``arg``), checked; ``text`` is the whole method."""
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in KEYS:
            raise UnsupportedMethod(
                f"'{text}': {part!r} is not an option of distill; use {OPTIONS_HELP}."
            )
        try:
            values[key] = float(value)
        except ValueError:
            raise UnsupportedMethod(f"'{text}': {key} must be a number, not {value!r}.") from None
    for key in ("hidden", "epochs", "seed"):
        if key in values and (values[key] != int(values[key]) or values[key] < 0):
            raise UnsupportedMethod(f"'{text}': {key} must be a whole number.")
    if values.get("hidden", 1) < 1 or values.get("epochs", 1) < 1:
        raise UnsupportedMethod(f"'{text}': hidden and epochs must be at least 1.")
    if values.get("temperature", 1.0) <= 0:
        raise UnsupportedMethod(f"'{text}': the temperature must be above 0.")
    if not 0.0 <= values.get("alpha", 0.5) <= 1.0:
        raise UnsupportedMethod(f"'{text}': alpha must be between 0 and 1.")
    return DistillOptions(
        hidden=int(values["hidden"]) if "hidden" in values else None,
        epochs=int(values.get("epochs", 30)),
        temperature=values.get("temperature", 4.0),
        alpha=values.get("alpha", 0.7),
        seed=int(values.get("seed", 0)),
    )
