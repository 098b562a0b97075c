"""The DARTS supernet: every edge is a softmax(alpha)-weighted mixture of all primitives."""

from __future__ import annotations

from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.interfaces.search_space import InputSpec, Supernet
from rnasframe.modules import Normalize
from rnasframe.spaces.darts.genotypes import PRIMITIVES, Genotype, derive_genotype, num_edges
from rnasframe.spaces.darts.operations import FactorizedReduce, ReLUConvBN, make_op

__all__ = ["MixedOp", "SearchCell", "DartsSupernet"]

_NONE_INDEX = PRIMITIVES.index("none")


class MixedOp(nn.Module):
    """One edge of the supernet: ``sum_k w_k * op_k(x)`` over :data:`PRIMITIVES`.

    Pooling is followed by a non-affine BatchNorm, as in DARTS. The ``none`` operation is zero, so
    its term is skipped (its weight still takes part in the softmax, so the output and every
    gradient are those of the full sum).

    Args:
        channels: input and output channels.
        stride: 1, or 2 on the edges of a reduction cell that read a cell input.
    """

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList()
        for primitive in PRIMITIVES:
            op = make_op(primitive, channels, stride, affine=False)
            if "pool" in primitive:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            self.ops.append(op)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """Return the mixture of all operations on ``x``.

        Args:
            x: the edge input.
            weights: ``(len(PRIMITIVES),)`` mixing weights (a softmax row of alpha).
        """
        out: Optional[Tensor] = None
        for k, op in enumerate(self.ops):
            if k == _NONE_INDEX:
                continue
            term = weights[k] * op(x)
            out = term if out is None else out + term
        assert out is not None
        return out


class SearchCell(nn.Module):
    """A supernet cell: ``steps`` nodes, each the sum of mixed edges from all earlier states.

    Args:
        steps: number of intermediate nodes.
        multiplier: number of last nodes concatenated into the output.
        c_prev_prev: channels of the input from two cells back.
        c_prev: channels of the input from the previous cell.
        channels: channels of every node.
        reduction: whether this cell halves the spatial size.
        reduction_prev: whether the previous cell was a reduction cell.
    """

    def __init__(
        self,
        steps: int,
        multiplier: int,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for node in range(steps):
            for j in range(node + 2):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(channels, stride))

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor) -> Tensor:
        """Return the cell output.

        Args:
            s0: output of the cell two back.
            s1: output of the previous cell.
            weights: ``(num_edges(steps), len(PRIMITIVES))`` softmaxed alphas of this cell type.
        """
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            node = sum(
                self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)
            )
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)


class DartsSupernet(Supernet):
    """The DARTS search network (DARTS' ``model_search.Network``) with normalization in front.

    Layers: :class:`~rnasframe.modules.Normalize`, a 3x3 stem convolution to
    ``stem_multiplier * C`` channels with BatchNorm, ``layers`` cells (reduction cells, with twice
    the channels, at ``layers // 3`` and ``2 * layers // 3``), global average pooling and a linear
    classifier. As in DARTS, the operations' BatchNorms have no affine parameters (the stem's
    BatchNorm does).

    The architecture parameters ``alphas_normal`` and ``alphas_reduce`` (each
    ``(num_edges(steps), len(PRIMITIVES))``, initialized to ``1e-3 * randn``) are registered
    parameters, so they are saved in ``state_dict``; :meth:`weight_parameters` yields every other
    parameter.

    Args:
        num_classes: number of classes.
        channels: ``C``, channels of the first cells.
        layers: number of cells.
        steps: intermediate nodes per cell.
        multiplier: number of last nodes concatenated into a cell's output.
        stem_multiplier: the stem outputs ``stem_multiplier * C`` channels.
        input_spec: input shape and normalization (default: 3x32x32, identity normalization).
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 16,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        input_spec: Optional[InputSpec] = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("channels", channels),
            ("layers", layers),
            ("steps", steps),
            ("multiplier", multiplier),
            ("stem_multiplier", stem_multiplier),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DartsSupernet.{name} must be an integer >= 1, got {value!r}")
        if multiplier > steps:
            raise ValueError(
                f"DartsSupernet.multiplier must be <= steps ({steps}): a cell concatenates at most "
                f"its {steps} intermediate nodes, got {multiplier}"
            )
        spec = input_spec if input_spec is not None else InputSpec()
        self.input_spec = spec
        self.num_classes = num_classes
        self.channels = channels
        self.layers = layers
        self.steps = steps
        self.multiplier = multiplier
        self.stem_multiplier = stem_multiplier

        self.normalize = Normalize(spec.mean, spec.std)
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(spec.shape[0], c_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_curr),
        )
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = SearchCell(steps, multiplier, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

        shape = (num_edges(steps), len(PRIMITIVES))
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(*shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(*shape))

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits of a batch of ``[0, 1]`` images."""
        weights_normal = F.softmax(self.alphas_normal, dim=-1)
        weights_reduce = F.softmax(self.alphas_reduce, dim=-1)
        s0 = s1 = self.stem(self.normalize(x))
        for cell in self.cells:
            weights = weights_reduce if cell.reduction else weights_normal
            s0, s1 = s1, cell(s0, s1, weights)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))

    def arch_parameters(self) -> List[nn.Parameter]:
        """Return ``[alphas_normal, alphas_reduce]``."""
        return [self.alphas_normal, self.alphas_reduce]

    @property
    def arch_parameter_names(self) -> List[str]:
        """``["normal", "reduce"]``, the cells the two alpha tensors belong to."""
        return ["normal", "reduce"]

    @property
    def op_names(self) -> List[str]:
        """:data:`PRIMITIVES`, the order of the last axis of both alpha tensors."""
        return list(PRIMITIVES)

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Yield every parameter except the architecture parameters."""
        arch = {id(p) for p in self.arch_parameters()}
        for parameter in self.parameters():
            if id(parameter) not in arch:
                yield parameter

    def genotype(self) -> Genotype:
        """Return the genotype derived from the current alphas (see :func:`derive_genotype`)."""
        return derive_genotype(
            self.alphas_normal, self.alphas_reduce, steps=self.steps, multiplier=self.multiplier
        )

    def extra_repr(self) -> str:
        """Summarize the hyperparameters in ``repr``."""
        return (
            f"channels={self.channels}, layers={self.layers}, steps={self.steps}, "
            f"multiplier={self.multiplier}, num_classes={self.num_classes}"
        )

