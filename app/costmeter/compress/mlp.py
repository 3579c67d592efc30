"""Plain MLPs (Linear layers with activations between them): telling one apart from other
models, building one from its widths, and the weights-only checkpoint a distilled student is
saved as (it loads with ``weights_only=True``: no code runs from the file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Activations an MLP may use, by class name; each is rebuilt with its default arguments.
ACTIVATIONS = ("ReLU", "GELU", "Tanh", "Sigmoid", "SiLU", "ELU", "LeakyReLU")


@dataclass(frozen=True)
class MlpShape:
    """``widths[0]`` inputs, ``widths[-1]`` outputs, the hidden widths between; the activation
    after each hidden layer; ``flatten`` when inputs of ``input_shape`` are flattened first."""

    widths: tuple[int, ...]
    activations: tuple[str, ...]
    input_shape: tuple[int, ...]
    flatten: bool = False

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.widths[1:-1]


def mlp_shape(module: torch.nn.Module) -> MlpShape | None:
    """The shape of an eager ``nn.Sequential`` of Linear layers with known activations (with
    default arguments) between them; None for any other model."""
    from torch import nn

    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return None
    widths: list[int] = []
    activations: list[str] = []
    expect_linear = True
    for layer in module:
        if expect_linear:
            if type(layer) is not nn.Linear:
                return None
            if not widths:
                widths.append(layer.in_features)
            elif layer.in_features != widths[-1]:
                return None
            widths.append(layer.out_features)
        else:
            name = type(layer).__name__
            if name not in ACTIVATIONS or layer.extra_repr() != getattr(nn, name)().extra_repr():
                return None
            activations.append(name)
        expect_linear = not expect_linear
    if expect_linear:  # ends with an activation: not a plain classifier head
        return None
    return MlpShape(tuple(widths), tuple(activations), (widths[0],))


def build_mlp(shape: MlpShape) -> torch.nn.Sequential:
    from torch import nn

    layers: list[nn.Module] = [nn.Flatten()] if shape.flatten else []
    pairs = list(zip(shape.widths[:-1], shape.widths[1:], strict=True))
    for i, (n_in, n_out) in enumerate(pairs):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(pairs) - 1:
            layers.append(getattr(nn, shape.activations[i])())
    return nn.Sequential(*layers)


def checkpoint_payload(module: torch.nn.Module, shape: MlpShape, **extra: Any) -> dict[str, Any]:
    """A Costmeter checkpoint of an MLP: the keys the digits example writes, plus its widths."""
    return {
        "state_dict": module.state_dict(),
        "hidden": shape.widths[1] if len(shape.widths) > 2 else 0,
        "inputs": shape.widths[0],
        "classes": shape.widths[-1],
        "widths": list(shape.widths),
        "activations": list(shape.activations),
        "input_shape": list(shape.input_shape),
        "flatten": shape.flatten,
        **extra,
    }


def shape_from_checkpoint(payload: Mapping[str, Any]) -> MlpShape | None:
    """The MLP a checkpoint describes; None for the digits example's own (no ``widths``)."""
    if "widths" not in payload:
        return None
    widths = tuple(int(w) for w in payload["widths"])
    activations = tuple(str(a) for a in payload.get("activations", ()))
    if len(widths) < 2 or len(activations) != len(widths) - 2:
        raise ValueError(f"widths {list(widths)} do not fit activations {list(activations)}")
    unknown = [a for a in activations if a not in ACTIVATIONS]
    if unknown:
        raise ValueError(f"unknown activation {unknown[0]!r}")
    input_shape = tuple(int(d) for d in payload.get("input_shape", (widths[0],)))
    return MlpShape(widths, activations, input_shape, bool(payload.get("flatten", False)))
