"""A tiny search space in one file: a chain of edges, each choosing one of three operations.

The "Add a search space" tutorial (docs/tutorials/search_space.rst) reads this file piece by
piece. Nothing outside it knows the space: ``tiny_space.gin`` beside it imports it and binds it to
the search engine and the trainer::

    python examples/rnas_cifar10.py --gin_file=uniform.gin --gin_file=smoke.gin --gin_file=examples/tiny_space.gin

An architecture (:class:`ChainGenotype`) is one operation per edge, written ``conv_3x3-skip-pool``.
The supernet runs every operation on every edge and mixes their outputs with softmax(alpha), as
DARTS does; the derived genotype keeps each edge's strongest operation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, cast

import attrs
import gin
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from rnasframe.interfaces import InputSpec, Picture, SearchSpace, Supernet

__all__ = ["OPS", "ChainGenotype", "TinySupernet", "TinyNetwork", "TinySpace"]

#: The candidate operations of every edge (``channels`` in, ``channels`` out, same size).
OPS: Dict[str, Callable[[int], nn.Module]] = {
    "conv_3x3": lambda c: nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()),
    "pool": lambda c: nn.MaxPool2d(3, stride=1, padding=1),
    "skip": lambda c: nn.Identity(),
}


def _known_ops(instance: Any, attribute: Any, ops: Tuple[str, ...]) -> None:
    unknown = [op for op in ops if op not in OPS]
    if not ops or unknown:
        raise ValueError(f"ChainGenotype.ops must be a non-empty list of {', '.join(OPS)}; got {list(ops)!r}")


def _as_tuple(ops: Iterable[str]) -> Tuple[str, ...]:
    return tuple(ops)


@attrs.frozen
class ChainGenotype:
    """One operation name per edge of the chain, first edge first."""

    ops: Tuple[str, ...] = attrs.field(converter=_as_tuple, validator=_known_ops)

    def __str__(self) -> str:
        return "-".join(self.ops)


class _Body(nn.Module):
    """Normalization, a 3x3 stem to ``channels``, the edges given, global pooling and a linear classifier."""

    mean: Tensor
    std: Tensor

    def __init__(self, edges: nn.ModuleList, channels: int, num_classes: int, spec: InputSpec) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1))
        stem = nn.Conv2d(spec.shape[0], channels, 3, padding=1, bias=False)
        self.stem = nn.Sequential(stem, nn.BatchNorm2d(channels))
        self.edges = edges
        self.classifier = nn.Linear(channels, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.stem((x - self.mean) / self.std)

    def logits(self, h: Tensor) -> Tensor:
        return self.classifier(h.mean(dim=(2, 3)))


class TinySupernet(Supernet):
    """Every edge holds all of :data:`OPS`; its output is their softmax(alpha)-weighted sum."""

    def __init__(self, edges: int, channels: int, num_classes: int, spec: InputSpec) -> None:
        super().__init__()
        mixed = nn.ModuleList(nn.ModuleList(make(channels) for make in OPS.values()) for _ in range(edges))
        self.body = _Body(mixed, channels, num_classes, spec)
        self.alpha = nn.Parameter(1e-3 * torch.randn(edges, len(OPS)))

    def forward(self, x: Tensor) -> Tensor:
        h = self.body.features(x)
        for weights, ops in zip(torch.softmax(self.alpha, dim=-1), self.body.edges):
            h = torch.stack([w * op(h) for w, op in zip(weights, cast(nn.ModuleList, ops))]).sum(dim=0)
        return self.body.logits(h)

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        return self.body.parameters()

    def arch_parameters(self) -> Sequence[nn.Parameter]:
        return [self.alpha]

    @property
    def arch_parameter_names(self) -> Sequence[str]:
        return ["chain"]

    @property
    def op_names(self) -> Sequence[str]:
        return list(OPS)

    def genotype(self) -> ChainGenotype:
        return ChainGenotype([list(OPS)[int(k)] for k in self.alpha.argmax(dim=-1)])


class TinyNetwork(nn.Module):
    """The stand-alone network of a genotype: the chain with one operation per edge."""

    def __init__(self, genotype: ChainGenotype, channels: int, num_classes: int, spec: InputSpec) -> None:
        super().__init__()
        self.body = _Body(nn.ModuleList(OPS[op](channels) for op in genotype.ops), channels, num_classes, spec)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body.features(x)
        for op in self.body.edges:
            h = op(h)
        return self.body.logits(h)


def _positive(instance: Any, attribute: "attrs.Attribute[int]", value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TinySpace.{attribute.name} must be an integer >= 1, got {value!r}")


@gin.configurable
@attrs.frozen
class TinySpace(SearchSpace):
    """A chain of ``edges`` edges of ``channels`` channels, each choosing one of :data:`OPS`."""

    channels: int = attrs.field(default=8, validator=_positive)
    edges: int = attrs.field(default=3, validator=_positive)

    def supernet(self, num_classes: int, input_spec: Optional[InputSpec] = None) -> TinySupernet:
        return TinySupernet(self.edges, self.channels, num_classes, input_spec or InputSpec())

    def network(self, genotype: ChainGenotype, num_classes: int, input_spec: Optional[InputSpec] = None) -> TinyNetwork:
        return TinyNetwork(self._checked(genotype), self.channels, num_classes, input_spec or InputSpec())

    def _checked(self, genotype: Any) -> ChainGenotype:
        if not isinstance(genotype, ChainGenotype) or len(genotype.ops) != self.edges:
            raise ValueError(f"TinySpace needs a ChainGenotype of {self.edges} operations, got {genotype!r}")
        return genotype

    def genotype_to_dict(self, genotype: ChainGenotype) -> Mapping[str, Any]:
        return {"ops": list(self._checked(genotype).ops)}

    def genotype_from_dict(self, data: Mapping[str, Any]) -> ChainGenotype:
        if not isinstance(data, Mapping) or set(data) != {"ops"} or not isinstance(data["ops"], list):
            raise ValueError(f"a TinySpace genotype dict is {{'ops': [op, ...]}}, got {data!r}")
        return self._checked(ChainGenotype(data["ops"]))

    def resolve_genotype(self, text: str) -> ChainGenotype:
        """Read ``conv_3x3-skip-pool`` (``str`` of a genotype) or the JSON form."""
        if text.strip().startswith("{"):
            return super().resolve_genotype(text)
        return self._checked(ChainGenotype(text.strip().split("-")))

    def save_pictures(
        self, genotype: ChainGenotype, alpha_history: Mapping[str, Sequence[Any]], folder: "os.PathLike[str] | str"
    ) -> List[Picture]:
        """Draw the chain: input, one box per chosen operation, output."""
        names = ["input", *self._checked(genotype).ops, "logits"]
        figure = Figure(figsize=(1.6 * len(names), 1.0))
        axes = figure.add_axes((0, 0, 1, 1), xlim=(-0.7, len(names) - 0.3), ylim=(-1, 1))
        axes.axis("off")
        for i, name in enumerate(names):
            axes.text(i, 0, name, ha="center", va="center", bbox={"boxstyle": "round", "facecolor": "#dbe8f7"})
            if i:
                axes.annotate("", (i - 0.32, 0), (i - 0.68, 0), arrowprops={"arrowstyle": "-|>"})
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / "chain.png"
        FigureCanvasAgg(figure).print_png(str(path))
        return [Picture("cell/chain", path)]
