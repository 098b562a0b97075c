"""The NAS-Bench-201 supernet: every edge of every cell is a softmax(alpha)-weighted mixture.

The macro network is the stand-alone one's (:mod:`~rnasframe.spaces.nasbench201.network`: stem,
three stages of ``N`` cells, stride-2 residual blocks, classifier). Every cell shares one alpha of
shape ``6 x 5`` (edges in :data:`~rnasframe.spaces.nasbench201.genotypes.EDGES` order x
:data:`~rnasframe.spaces.nasbench201.genotypes.OPERATIONS`); the BatchNorms of the cells' edges
have no affine parameters, as in NAS-Bench-201's DARTS code. Edge ``i<-j`` computes::

    w_skip * x_j + w_1x1 * BN(conv1x1(relu(x_j))) + w_3x3 * BN(conv3x3(relu(x_j))) + w_pool * avgpool(x_j)

with ``w = softmax(alpha)[edge]``; ``none`` contributes zero (its weight still takes part in the
softmax). The computation is grouped by source node, which is exact, not an approximation:

* ``relu(x_j)`` and ``avgpool(x_j)`` are computed once per source node and shared by its edges;
* the convolutions of all edges leaving node ``j`` run as one convolution with the edges' output
  channels stacked (each block of ``C`` output channels is one edge's own weight and BatchNorm);
* the mixing weight is the BatchNorm's per-channel scale, ``w * BN(z) = batch_norm(z, weight=w)``;
* the mixing weights are laid out (:class:`SourceMixing`) once per forward pass for each width,
  not once per cell.

NAS-Bench-201's search cells give their convolutions a bias (its ``ReLUConvBN`` adds one when the
BatchNorm is not affine); the bias is cancelled exactly by the BatchNorm that follows, so it is
left out here. The cells may run on channels-last tensors (faster on CPU with oneDNN; the
parameters are unchanged).
"""

from __future__ import annotations

from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.interfaces.search_space import InputSpec, Supernet
from rnasframe.modules import Normalize
from rnasframe.spaces.nasbench201.genotypes import EDGES, NODES, OPERATIONS, NasBench201Genotype, derive_genotype
from rnasframe.spaces.nasbench201.network import ResidualBlock, stage_plan

__all__ = ["SourceMixing", "SearchCell", "NasBench201Supernet"]

_SKIP, _CONV1, _CONV3, _POOL = (OPERATIONS.index(name) for name in
                                ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"))


def _scaled_batch_norm(bn: nn.BatchNorm2d, z: Tensor, scale: Tensor) -> Tensor:
    """``scale * bn(z)`` for a non-affine ``bn`` as one call, statistics handled as ``bn.forward`` does.

    Batch statistics in training mode (or without running statistics); running statistics updated
    only in training mode while ``bn.track_running_stats`` (a block that switches tracking off, as
    PGD's inner loop does, leaves them and any autograd graph that saved them untouched).
    """
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            factor = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep_running = not bn.training or bn.track_running_stats
    return F.batch_norm(
        z, bn.running_mean if keep_running else None, bn.running_var if keep_running else None,
        weight=scale, bias=None, training=use_batch_stats, momentum=factor, eps=bn.eps,
    )


class SourceMixing(NamedTuple):
    """The mixing weights of the edges that leave one source node of a cell.

    ``conv1x1`` and ``conv3x3`` hold the ``nor_conv_1x1`` and ``nor_conv_3x3`` weight of each edge
    repeated over its ``C`` channels (the BatchNorm scales of the stacked convolutions); ``skip``
    and ``pool`` hold the ``skip_connect`` and ``avg_pool_3x3`` weight of each edge as 0-d tensors,
    in target order.
    """

    conv1x1: Tensor
    conv3x3: Tensor
    skip: Tuple[Tensor, ...]
    pool: Tuple[Tensor, ...]


class SearchCell(nn.Module):
    """One NAS-Bench-201 cell of the supernet, its convolutions grouped by source node.

    For source node ``j`` (0, 1, 2) with ``n_j = 3 - j`` outgoing edges (to nodes ``j+1 .. 3``),
    ``conv1x1[j]`` and ``conv3x3[j]`` have ``n_j * C`` output channels: block ``k`` belongs to edge
    ``(j + 1 + k)<-j``; ``bn1x1[j]`` and ``bn3x3[j]`` hold the matching running statistics.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv1x1 = nn.ModuleList()
        self.conv3x3 = nn.ModuleList()
        self.bn1x1 = nn.ModuleList()
        self.bn3x3 = nn.ModuleList()
        for source in range(NODES - 1):
            width = (NODES - 1 - source) * channels
            self.conv1x1.append(nn.Conv2d(channels, width, 1, bias=False))
            self.conv3x3.append(nn.Conv2d(channels, width, 3, padding=1, bias=False))
            self.bn1x1.append(nn.BatchNorm2d(width, affine=False))
            self.bn3x3.append(nn.BatchNorm2d(width, affine=False))
        # rows of alpha of the edges leaving each source node, in target order
        self._rows: List[List[int]] = [
            [EDGES.index((target, source)) for target in range(source + 1, NODES)] for source in range(NODES - 1)
        ]

    def mixing(self, weights: Tensor) -> List[SourceMixing]:
        """Per source node, the mixing weights of its edges laid out for :meth:`forward`.

        They depend only on ``softmax(alpha)`` and the width, so the supernet computes them once
        per forward pass for all cells of a stage instead of once per cell.
        """
        c = self.channels
        plan = []
        for rows in self._rows:
            w = weights[rows]  # (n_j, 5): the edges leaving this source node, in target order
            plan.append(SourceMixing(
                conv1x1=w[:, _CONV1].repeat_interleave(c),
                conv3x3=w[:, _CONV3].repeat_interleave(c),
                skip=w[:, _SKIP].unbind(),
                pool=w[:, _POOL].unbind(),
            ))
        return plan

    def forward(self, x: Tensor, weights: Union[Tensor, List[SourceMixing]]) -> Tensor:
        """Return the output node for input ``x`` and mixing weights: ``softmax(alpha)`` (6 x 5),
        or its :meth:`mixing` for this cell's width."""
        plan = self.mixing(weights) if isinstance(weights, Tensor) else weights
        c = self.channels
        sums: Dict[int, Tensor] = {}
        node = x
        for source, mix in enumerate(plan):
            if source > 0:
                node = sums.pop(source)
            activated = F.relu(node)
            bn1x1 = cast(nn.BatchNorm2d, self.bn1x1[source])
            bn3x3 = cast(nn.BatchNorm2d, self.bn3x3[source])
            y = _scaled_batch_norm(bn1x1, self.conv1x1[source](activated), mix.conv1x1)
            y = y + _scaled_batch_norm(bn3x3, self.conv3x3[source](activated), mix.conv3x3)
            pooled = F.avg_pool2d(node, 3, stride=1, padding=1, count_include_pad=False)
            for k, target in enumerate(range(source + 1, NODES)):
                term = y[:, k * c:(k + 1) * c] + mix.skip[k] * node + mix.pool[k] * pooled
                sums[target] = term if target not in sums else sums[target] + term
        return sums[NODES - 1]


class NasBench201Supernet(Supernet):
    """The NAS-Bench-201 supernet (NAS-Bench-201's ``TinyNetworkDarts``), one alpha for all cells.

    Args:
        num_classes: outputs of the classifier.
        channels: ``C`` of the first stage.
        cells_per_stage: ``N``, cells per stage.
        input_spec: input shape and normalization (default: 3x32x32, identity normalization).
        channels_last: run the network on channels-last tensors after the stem's input.
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        input_spec: Optional[InputSpec] = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        spec = input_spec or InputSpec()
        self.channels_last = channels_last
        self.normalize = Normalize(spec.mean, spec.std)
        self.stem = nn.Sequential(
            nn.Conv2d(spec.shape[0], channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        self.cells = nn.ModuleList(
            SearchCell(sizes[0]) if kind == "cell" else ResidualBlock(*sizes)
            for kind, *sizes in stage_plan(channels, cells_per_stage)
        )
        width = 4 * channels
        self.last = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(width, num_classes)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPERATIONS)))

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits of a batch of images in [0, 1]."""
        x = self.normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.stem(x)
        weights = F.softmax(self.alpha, dim=-1)
        plans: Dict[int, List[SourceMixing]] = {}  # one per width: the cells of a stage share it
        for cell in self.cells:
            if isinstance(cell, SearchCell):
                if cell.channels not in plans:
                    plans[cell.channels] = cell.mixing(weights)
                out = cell(out, plans[cell.channels])
            else:
                out = cell(out)
        out = self.last(out)
        return self.classifier(out.mean((2, 3)))  # global average pooling (deterministic on CUDA)

    def arch_parameters(self) -> List[nn.Parameter]:
        """Return ``[alpha]``, one ``6 x 5`` tensor shared by every cell."""
        return [self.alpha]

    @property
    def arch_parameter_names(self) -> List[str]:
        """``["cell"]``: the one alpha belongs to the (single kind of) cell."""
        return ["cell"]

    @property
    def op_names(self) -> Sequence[str]:
        """:data:`~rnasframe.spaces.nasbench201.genotypes.OPERATIONS`, the order of alpha's last axis."""
        return list(OPERATIONS)

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Yield every parameter except alpha."""
        for parameter in self.parameters():
            if parameter is not self.alpha:
                yield parameter

    def genotype(self) -> NasBench201Genotype:
        """The cell derived from alpha: argmax over all five operations per edge, ``none`` included."""
        return derive_genotype(self.alpha)
