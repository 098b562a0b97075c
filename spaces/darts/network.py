"""The stand-alone network of a DARTS genotype (DARTS' ``NetworkCIFAR``), trained from scratch."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import stochastic_depth

from rnasframe.interfaces.search_space import InputSpec, NetworkOutput
from rnasframe.modules import Normalize
from rnasframe.spaces.darts.genotypes import Genotype, validate_genotype
from rnasframe.spaces.darts.operations import FactorizedReduce, Identity, ReLUConvBN, make_op

__all__ = ["drop_path", "Cell", "AuxiliaryHead", "DartsNetwork", "pool_to_2x2"]


def drop_path(x: Tensor, drop_prob: float) -> Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob`` and rescale the kept ones.

    DARTS' ``drop_path`` (per sample: one Bernoulli draw per sample, shared by all its channels
    and pixels), computed by torchvision's ``torchvision.ops.stochastic_depth`` in ``"row"`` mode.

    Args:
        x: a ``(N, C, H, W)`` batch.
        drop_prob: probability in ``[0, 1)`` of dropping a sample.

    Returns:
        ``x * (mask / (1 - drop_prob))``.
    """
    return stochastic_depth(x, drop_prob, "row", training=True)


class Cell(nn.Module):
    """A cell of the stand-alone network, built from one cell of a genotype.

    Args:
        edges: the cell's ``(op_name, input_index)`` pairs, two per intermediate node.
        concat: the states concatenated into the output.
        c_prev_prev: channels of the input from two cells back.
        c_prev: channels of the input from the previous cell.
        channels: channels of every node.
        reduction: whether this cell halves the spatial size.
        reduction_prev: whether the previous cell was a reduction cell (then the input from two
            cells back is reduced with :class:`FactorizedReduce`).
    """

    def __init__(
        self,
        edges: Sequence[Tuple[str, int]],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=True)
        self.steps = len(edges) // 2
        self.concat: List[int] = list(concat)
        self.multiplier = len(self.concat)
        self.indices: List[int] = [index for _, index in edges]
        self.ops = nn.ModuleList(
            make_op(name, channels, 2 if reduction and index < 2 else 1, affine=True)
            for name, index in edges
        )

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float) -> Tensor:
        """Return the cell output; drop path (training mode only) skips identity operations."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.steps):
            total: Optional[Tensor] = None
            for edge in (2 * node, 2 * node + 1):
                op = self.ops[edge]
                h = op(states[self.indices[edge]])
                if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            assert total is not None
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


def pool_to_2x2(x: Tensor) -> Tensor:
    """Adaptive average pooling of ``(N, C, H, W)`` to ``(N, C, 2, 2)`` as a fixed average pooling.

    The same numbers as ``F.adaptive_avg_pool2d(x, 2)`` (up to the order of the sums), with a
    deterministic CUDA backward (adaptive average pooling's has none): adaptive pooling to 2 bins
    of a side ``S >= 2`` averages ``[0, ceil(S/2))`` and ``[floor(S/2), S)``, windows of
    ``ceil(S/2)`` with stride ``floor(S/2)``; a side of 1 is repeated.
    """
    if x.shape[-2] == 1:
        x = torch.cat([x, x], dim=-2)
    if x.shape[-1] == 1:
        x = torch.cat([x, x], dim=-1)
    h, w = x.shape[-2:]
    return F.avg_pool2d(x, ((h + 1) // 2, (w + 1) // 2), (h // 2, w // 2))


class AuxiliaryHead(nn.Module):
    """DARTS' ``AuxiliaryHeadCIFAR``, extended to feature maps of any size.

    ReLU, average pooling to 2x2, 1x1 convolution to 128 channels, BatchNorm, ReLU, 2x2
    convolution to 768 channels, BatchNorm, ReLU, linear classifier. For the 8x8 maps of 32x32
    inputs (any side 8 to 10) the pooling is DARTS' ``AvgPool2d(5, stride=3)``; for other sizes,
    where that pooling would not give 2x2 (e.g. the 2x2 or 4x4 maps of 8x8 or 16x16 inputs), it is
    an adaptive average pooling to 2x2 (:func:`pool_to_2x2`).

    Args:
        in_channels: channels of the feature map it reads.
        num_classes: number of classes.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return auxiliary logits for the feature map ``x``."""
        x = self.relu(x)
        if all(8 <= size <= 10 for size in x.shape[-2:]):
            x = self.pool(x)
        else:
            x = pool_to_2x2(x)
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """The stand-alone network of a genotype: DARTS' ``NetworkCIFAR`` with normalization in front.

    Layers: :class:`~rnasframe.modules.Normalize`, a 3x3 stem convolution to
    ``stem_multiplier * C`` channels with BatchNorm, ``layers`` cells built from the genotype
    (reduction cells, with twice the channels, at ``layers // 3`` and ``2 * layers // 3``), global
    average pooling and a linear classifier. With ``auxiliary=True`` an :class:`AuxiliaryHead`
    reads the output of cell ``2 * layers // 3``.

    Output convention (torchvision's ``GoogLeNetOutputs`` style): in training mode with
    ``auxiliary=True``, ``forward(x)`` returns a :class:`~rnasframe.interfaces.NetworkOutput`
    ``(logits, aux_logits)``; otherwise (eval mode, or no head) the logits alone, so attacks and
    evaluation use the network as a plain classifier. Read outputs with
    :func:`~rnasframe.interfaces.split_output`.

    Drop path (DARTS' per-sample ``drop_path``, not applied to identity operations) is active in
    training mode only, with probability :attr:`drop_path_prob`;
    :meth:`DartsSpace.set_epoch <rnasframe.spaces.darts.DartsSpace.set_epoch>` ramps it between
    epochs.

    Args:
        genotype: the architecture (validated here).
        num_classes: number of classes.
        channels: ``C``, channels of the first cells (36 in DARTS' CIFAR-10 evaluation).
        layers: number of cells (20 in DARTS' CIFAR-10 evaluation).
        auxiliary: whether to build the auxiliary head.
        drop_path_prob: initial drop path probability, in ``[0, 1)``.
        stem_multiplier: the stem outputs ``stem_multiplier * C`` channels (3 in DARTS).
        input_spec: input shape and normalization (default: 3x32x32, identity normalization).

    Raises:
        ValueError: for an invalid genotype (unknown operation, input index out of range, ...) or
            invalid sizes.
    """

    def __init__(
        self,
        genotype: Genotype,
        num_classes: int = 10,
        channels: int = 36,
        layers: int = 20,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
        stem_multiplier: int = 3,
        input_spec: Optional[InputSpec] = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("channels", channels),
            ("layers", layers),
            ("stem_multiplier", stem_multiplier),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DartsNetwork.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(auxiliary, bool):
            raise ValueError(f"DartsNetwork.auxiliary must be True or False, got {auxiliary!r}")
        self.genotype = validate_genotype(genotype)
        spec = input_spec if input_spec is not None else InputSpec()
        self.input_spec = spec
        self.num_classes = num_classes
        self.channels = channels
        self.layers = layers
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self._aux_index = 2 * layers // 3

        self.normalize = Normalize(spec.mean, spec.std)
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(spec.shape[0], c_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_curr),
        )
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = c_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
                edges, concat = self.genotype.reduce, self.genotype.reduce_concat
            else:
                edges, concat = self.genotype.normal, self.genotype.normal_concat
            cell = Cell(edges, concat, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self._aux_index:
                c_aux = c_prev
        self.auxiliary_head: Optional[AuxiliaryHead] = (
            AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        )
        self.classifier = nn.Linear(c_prev, num_classes)

    @property
    def drop_path_prob(self) -> float:
        """Probability of dropping a non-identity edge output per sample (training mode only)."""
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"DartsNetwork.drop_path_prob must be a number in [0, 1), got {value!r}")
        self._drop_path_prob = float(value)

    def forward(self, x: Tensor) -> Union[Tensor, NetworkOutput]:
        """Return the logits of a batch of ``[0, 1]`` images, with the auxiliary ones in training mode.

        Returns:
            ``NetworkOutput(logits, aux_logits)`` in training mode when the network has the
            auxiliary head; the logits tensor otherwise.
        """
        aux_logits: Optional[Tensor] = None
        s0 = s1 = self.stem(self.normalize(x))
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self._drop_path_prob)
            if i == self._aux_index and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(s1.mean((2, 3)))  # global average pooling (deterministic on CUDA)
        return logits if aux_logits is None else NetworkOutput(logits, aux_logits)

    def extra_repr(self) -> str:
        """Summarize the hyperparameters in ``repr``."""
        return (
            f"channels={self.channels}, layers={self.layers}, auxiliary={self.auxiliary}, "
            f"drop_path_prob={self._drop_path_prob}, num_classes={self.num_classes}"
        )
