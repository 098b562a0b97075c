"""The stand-alone NAS-Bench-201 network of a genotype (NAS-Bench-201's ``TinyNetwork``).

Macro network: a 3x3 convolution stem to ``C`` channels with BatchNorm, three stages of ``N`` cells
at ``C``, ``2C`` and ``4C`` channels separated by a stride-2 residual block
(:class:`ResidualBlock`), then BatchNorm, ReLU, global average pooling and a linear classifier.
All BatchNorms are affine; the parameter count of every architecture equals NAS-Bench-201's
reference implementation (e.g. 1,531,546 for the all-``nor_conv_3x3`` cell with 10 classes).
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from rnasframe.interfaces.search_space import InputSpec
from rnasframe.modules import Normalize
from rnasframe.spaces.nasbench201.genotypes import NODES, NasBench201Genotype

__all__ = ["ReLUConvBN", "ResidualBlock", "Cell", "NasBench201Network", "stage_plan"]


def stage_plan(channels: int, cells_per_stage: int) -> List[tuple]:
    """The macro network's layers in order: ``("cell", C)`` or ``("residual", C_in, C_out)``."""
    plan: List[tuple] = []
    width = channels
    for stage in range(3):
        if stage > 0:
            plan.append(("residual", width, 2 * width))
            width *= 2
        plan.extend(("cell", width) for _ in range(cells_per_stage))
    return plan


class ReLUConvBN(nn.Sequential):
    """``nor_conv_k``: ReLU, k x k convolution (stride 1, same padding, no bias), BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class ResidualBlock(nn.Module):
    """NAS-Bench-201's stride-2 ResNet basic block between stages.

    ``ReLUConvBN(3x3, stride 2) -> ReLUConvBN(3x3)`` plus the shortcut ``AvgPool(2) -> 1x1 conv``
    (no BatchNorm on the shortcut, no ReLU after the sum).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return ``conv_b(conv_a(x)) + shortcut(x)``."""
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


def _operation(name: str, channels: int) -> Optional[nn.Module]:
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity()
    return None  # none: the edge contributes nothing


class Cell(nn.Module):
    """A discrete NAS-Bench-201 cell: node ``i = sum_{j<i} op_ij(node j)``, output node 3.

    ``none`` edges hold no module and are skipped; a node whose every input is ``none`` is zero.
    """

    def __init__(self, genotype: NasBench201Genotype, channels: int) -> None:
        super().__init__()
        self.genotype = genotype
        ops = {f"{i}<-{j}": _operation(name, channels) for i, j, name in genotype.edges()}
        self.edges = nn.ModuleDict({key: op for key, op in ops.items() if op is not None})

    def forward(self, x: Tensor) -> Tensor:
        """Return the output node of the cell."""
        nodes = [x]
        for target in range(1, NODES):
            node: Optional[Tensor] = None
            for source in range(target):
                key = f"{target}<-{source}"
                if key in self.edges:  # a none edge has no module and adds nothing
                    term = self.edges[key](nodes[source])
                    node = term if node is None else node + term
            nodes.append(torch.zeros_like(x) if node is None else node)
        return nodes[-1]


class NasBench201Network(nn.Module):
    """The network NAS-Bench-201 trains for a genotype (its ``TinyNetwork``).

    Inputs are pixels in [0, 1]; :class:`~rnasframe.modules.Normalize` is the first layer. The
    forward pass returns the logits (there is no auxiliary head).

    Args:
        genotype: the cell, repeated in every stage.
        num_classes: outputs of the classifier.
        channels: ``C`` (16 in NAS-Bench-201).
        cells_per_stage: ``N`` (5 in NAS-Bench-201).
        input_spec: input shape and normalization (default: 3x32x32, identity normalization).
    """

    def __init__(
        self,
        genotype: NasBench201Genotype,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        input_spec: Optional[InputSpec] = None,
    ) -> None:
        super().__init__()
        spec = input_spec or InputSpec()
        self.genotype = genotype
        self.normalize = Normalize(spec.mean, spec.std)
        self.stem = nn.Sequential(
            nn.Conv2d(spec.shape[0], channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: List[nn.Module] = []
        for kind, *sizes in stage_plan(channels, cells_per_stage):
            layers.append(Cell(genotype, sizes[0]) if kind == "cell" else ResidualBlock(*sizes))
        self.cells = nn.Sequential(*layers)
        width = 4 * channels
        self.last = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits of a batch of images in [0, 1]."""
        out = self.last(self.cells(self.stem(self.normalize(x))))
        return self.classifier(out.mean((2, 3)))  # global average pooling (deterministic on CUDA)
