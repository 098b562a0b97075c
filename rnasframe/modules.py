"""Small building blocks shared by search spaces."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.model_state import read_only_buffers

__all__ = ["Normalize", "PointwiseConv2d", "pointwise_conv2d"]


@read_only_buffers
class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as a model's first layer.

    Keeping normalization inside the model lets data stay in [0, 1], so perturbation radii are in
    pixel units, as in the paper (epsilon = 0.031 ~ 8/255).
    """

    mean: Tensor
    inv_std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.as_tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        if (std_t <= 0).any():
            raise ValueError(f"Normalize.std must be > 0 for every channel, got {list(std)}")
        # Non-persistent: derived from the data, not learned; kept out of state_dict.
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("inv_std", 1.0 / std_t, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Return the normalized batch."""
        return (x - self.mean) * self.inv_std


def pointwise_conv2d(
    x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: int = 1
) -> Tensor:
    """A 1x1 convolution without padding, ``F.conv2d(x, weight, bias, stride)``, safe at any width.

    A stride-``s`` 1x1 convolution reads only the pixels ``x[..., ::s, ::s]``, so it is computed as
    a stride-1 1x1 convolution of that subsampled view: the same numbers, and it never reaches
    oneDNN's strided 1x1 backward kernel. That kernel (oneDNN 3.x as shipped with torch 2.14 on
    AVX2 CPUs) writes past its buffers for channels-last inputs with fewer than 8 channels:
    heap-corruption aborts, or wrong weight gradients without any error. Every strided 1x1
    convolution in the library (e.g. the factorized reductions of the DARTS space) goes through
    this function; ``docs/performance.md`` gives its speed against the native kernel.

    Args:
        x: ``(N, C_in, H, W)`` input, any memory format.
        weight: ``(C_out, C_in, 1, 1)`` kernel.
        bias: optional ``(C_out,)`` bias.
        stride: the stride ``s >= 1`` (the same along both axes); the output is
            ``ceil(H / s) x ceil(W / s)``.

    Raises:
        ValueError: if the kernel is not 1x1 or the stride is not a positive integer.
    """
    if weight.dim() != 4 or weight.shape[-2:] != (1, 1):
        raise ValueError(
            f"pointwise_conv2d needs a (C_out, C_in, 1, 1) kernel, got shape {tuple(weight.shape)}"
        )
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"pointwise_conv2d needs an integer stride >= 1, got {stride!r}")
    if stride != 1:
        x = x[..., ::stride, ::stride]
    return F.conv2d(x, weight, bias)


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(c_in, c_out, 1, stride=stride, padding=0)`` computed by :func:`pointwise_conv2d`.

    A drop-in ``torch.nn.Conv2d`` (same parameters, ``state_dict`` keys and ``repr``) whose
    strided forward never reaches the faulty narrow-channel kernel described there.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: spatial stride (both axes).
        bias: whether the convolution has a learnable bias.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bias: bool = True) -> None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"PointwiseConv2d needs an integer stride >= 1, got {stride!r}")
        super().__init__(in_channels, out_channels, 1, stride=stride, padding=0, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Return the convolution of ``x``."""
        return pointwise_conv2d(x, self.weight, self.bias, self.stride[0])
