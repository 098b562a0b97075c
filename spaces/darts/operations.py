"""The candidate operations of the DARTS space and the blocks that cells are made of.

Every operation maps ``C`` channels to ``C`` channels; ``stride=2`` halves the spatial size
(rounding up). The ``affine`` flag is forwarded to every BatchNorm: the supernet builds its
operations with ``affine=False`` (as DARTS does during the search) and the stand-alone network with
``affine=True``.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.modules import PointwiseConv2d
from rnasframe.spaces.darts.genotypes import PRIMITIVES

__all__ = [
    "ReLUConvBN",
    "DilConv",
    "SepConv",
    "Identity",
    "Zero",
    "FactorizedReduce",
    "OPS",
    "make_op",
]


class ReLUConvBN(nn.Sequential):
    """ReLU, then a convolution without bias, then BatchNorm.

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel_size: convolution kernel size.
        stride: convolution stride.
        padding: convolution zero-padding.
        affine: whether BatchNorm has a learnable scale and shift.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, a dilated depthwise convolution, a pointwise convolution, then BatchNorm.

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel_size: depthwise kernel size.
        stride: depthwise stride.
        padding: depthwise zero-padding.
        dilation: depthwise dilation.
        affine: whether BatchNorm has a learnable scale and shift.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in,
                c_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=c_in,
                bias=False,
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable blocks (DARTS' ``sep_conv``); only the first one strides.

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel_size: depthwise kernel size of both blocks.
        stride: stride of the first block.
        padding: zero-padding of both depthwise convolutions.
        affine: whether the BatchNorms have a learnable scale and shift.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel_size, stride, padding, dilation=1, affine=affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, dilation=1, affine=affine),
        )


#: ``skip_connect`` with stride 1 is :class:`torch.nn.Identity` (drop path never applies to it).
Identity = nn.Identity


class Zero(nn.Module):
    """The ``none`` operation: zeros shaped like the (strided) output of a real operation.

    Args:
        stride: spatial stride; the output has ``ceil(H / stride) x ceil(W / stride)`` pixels.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """Return zeros with the output shape of a stride-``stride`` operation on ``x``."""
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two stride-2 1x1 convolutions offset by one pixel.

    ReLU, then ``concat(conv_1(x), conv_2(x shifted by one pixel))``, then BatchNorm. The shifted
    copy is zero-padded by one row and column at the bottom-right, so odd sizes work too; for even
    sizes the padding is never sampled and the result is exactly DARTS' ``x[:, :, 1:, 1:]``.
    The convolutions are :class:`~rnasframe.modules.PointwiseConv2d` (stride-1 convolutions of the
    subsampled input: the same numbers, safe for narrow channels-last inputs).

    Args:
        c_in: input channels.
        c_out: output channels (must be even: each convolution gives half).
        affine: whether BatchNorm has a learnable scale and shift.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2 != 0:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = PointwiseConv2d(c_in, c_out // 2, stride=2, bias=False)
        self.conv_2 = PointwiseConv2d(c_in, c_out // 2, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        """Return the reduced feature map (``ceil(H / 2) x ceil(W / 2)``)."""
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


#: Builders of the candidate operations, keyed by primitive name: ``OPS[name](C, stride, affine)``.
OPS: Dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "skip_connect": lambda c, stride, affine: (
        Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)
    ),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine=affine),
}


def make_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Build the operation ``name`` on ``channels`` channels.

    Args:
        name: one of :data:`~rnasframe.spaces.darts.genotypes.PRIMITIVES`.
        channels: input and output channels.
        stride: 1, or 2 on the edges of a reduction cell that read a cell input.
        affine: whether its BatchNorms have a learnable scale and shift.

    Returns:
        The operation as a module.

    Raises:
        ValueError: if ``name`` is not a DARTS primitive.
    """
    if name not in OPS:
        raise ValueError(f"unknown DARTS operation {name!r}; allowed: {', '.join(PRIMITIVES)}")
    return OPS[name](channels, stride, affine)
