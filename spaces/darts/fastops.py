"""Faster CPU formulations of the supernet's depthwise convolutions (same maths, other kernels).

On CPU (torch 2.14, oneDNN 3.12), depthwise convolutions have fast forward *and* backward kernels
only when the kernel is at most 3 wide and undilated. For 5x5 kernels the weight gradient is
10-15x slower than the forward pass, and for dilated kernels both gradients are
(``python benchmarks/suite.py --sections micro`` measures it; see ``docs/performance.md``). Two
exact reformulations avoid those kernels:

* :func:`depthwise_conv2d` (undilated, any odd ``k``): the forward is oneDNN's; the input
  gradient of a stride-1 convolution is a forward convolution with the flipped kernel (faster than
  oneDNN's backward-data kernel); the weight gradient of ``k > 3`` is assembled from ``k x 3``
  column tiles (oneDNN is fast for kernels at most 3 wide, whatever their height), each the weight
  gradient of a convolution over a shifted window of the input. Tiles may overlap; each tap is
  taken from one tile.
* :func:`to_phases` / :func:`phases_to_nhwc` (dilation 2, stride 1, even sizes): a dilated
  convolution only combines pixels of the same parity, so it equals an undilated convolution
  (padding halved) on the four polyphase components stacked along the batch axis. Pointwise
  convolutions and BatchNorm (statistics over all pixels) do not care about the pixel order, so
  a whole ``dil_conv`` can run on the phases; only its result is put back in place. With stride 2
  only the even-even phase is ever read.
* :func:`dilated_depthwise_conv2d` (dilation 2, stride 1, the lean supernet's batched kernels):
  oneDNN's forward, the input gradient as a forward convolution with the flipped kernel and the
  weight gradient as an undilated one on the polyphase components, without rearranging the
  forward's input or output.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "depthwise_conv2d",
    "depthwise_weight_grad",
    "to_phases",
    "phases_to_nhwc",
    "nhwc_view",
    "from_nhwc6",
    "even_phase",
    "dilated_depthwise_conv2d",
]

_aten = torch.ops.aten


def _weight_grad_needed(ctx: object, index: int) -> bool:
    """Whether the engine will use the gradient of input ``index`` of this backward node.

    ``ctx.needs_input_grad`` only says that the input required grad when the graph was built;
    ``loss.backward(inputs=alphas)`` (DARTS' architecture step) does not need convolution weight
    gradients at all. The engine knows, but only through a private function; when it cannot
    answer (``torch.autograd.grad`` with a leaf weight, as in second-order DARTS' finite
    differences, or a torch without that function) the gradient is computed and discarded.
    """
    query = getattr(torch._C, "_will_engine_execute_node", None)
    node = ctx.next_functions[index][0]  # type: ignore[attr-defined]
    if query is None or node is None:
        return node is not None
    try:
        return bool(query(node))
    except RuntimeError:
        return True


def _tile_offsets(kernel_size: int) -> List[int]:
    return sorted({min(start, kernel_size - 3) for start in range(0, kernel_size, 3)})


def depthwise_weight_grad(
    grad_output: Tensor, x: Tensor, kernel_size: int, stride: int, padding: int
) -> Tensor:
    """Weight gradient ``(C, 1, k, k)`` of an undilated depthwise convolution, from ``k x 3`` tiles.

    ``dW[c, i, j] = sum_{n, h, w} g[n, c, h, w] * x_pad[n, c, h * s + i, w * s + j]``. oneDNN's
    weight gradient is fast for kernels at most 3 wide (any height), so the columns are split in
    overlapping tiles of 3: the tile at column offset ``b`` is the weight gradient of a ``k x 3``
    convolution over the columns ``b - p, b - p + 1, ...`` of ``x`` (zero outside), which gives
    taps ``b..b+2``. Each window is one copy; overlapping taps are taken from the later tile.
    Rows are padded by the convolution itself, except for images only a few pixels high, where
    oneDNN is slow with a padding that large and the rows are padded in the copy instead. (Also
    avoided: ``F.pad`` with negative amounts, or on the row axis of a large channels-last tensor,
    both slow paths on CPU; and narrower ``k x 2`` tiles, slower than the overlap at the lean
    supernet's widths.)
    """
    channels, height = x.shape[1], x.shape[-2]
    out_w = grad_output.shape[-1]
    span = (out_w - 1) * stride + 3
    rows_in_copy = height < 2 * kernel_size
    row_pad = padding if rows_in_copy else 0
    probe = _probe(channels, kernel_size, x)
    offsets = _tile_offsets(kernel_size)
    pieces = []
    for index, b in enumerate(offsets):
        left = padding - b  # columns of zeros before column 0 (negative: columns cropped)
        source = x if left >= 0 else x[..., -left:]
        left = max(left, 0)
        # At least `span` columns; more is fine when the excess is shorter than the stride.
        right = max(0, span - left - source.shape[-1])
        window = F.pad(source, (left, right, row_pad, row_pad))
        if window.shape[-1] - span >= stride:
            window = window[..., :span]
        tile = _aten.convolution_backward(
            grad_output, window, probe, None, [stride, stride], [0 if rows_in_copy else padding, 0],
            [1, 1], False, [0, 0], channels, [False, True, False],
        )[1]
        keep = 3 if index == len(offsets) - 1 else offsets[index + 1] - b
        pieces.append(tile if keep == 3 else tile[..., :keep])
    return torch.cat(pieces, dim=-1)


_PROBES: Dict[Tuple[int, int, torch.dtype, torch.device], Tensor] = {}


def _probe(channels: int, kernel_size: int, like: Tensor) -> Tensor:
    """An uninitialized ``(C, 1, k, 3)`` weight: only its shape tells oneDNN the tile's size."""
    key = (channels, kernel_size, like.dtype, like.device)
    probe = _PROBES.get(key)
    if probe is None:
        if len(_PROBES) > 64:
            _PROBES.clear()
        probe = _PROBES[key] = like.new_empty(channels, 1, kernel_size, 3)
    return probe


class _DepthwiseConv2d(torch.autograd.Function):
    """Undilated depthwise convolution with faster backward kernels (see :func:`depthwise_conv2d`)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, stride: int, padding: int, flipped: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, weight, flipped)
        ctx.stride = stride
        ctx.padding = padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, weight, flipped = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        kernel_size = weight.shape[-1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            if stride == 1 and 2 * padding == kernel_size - 1:
                # The input gradient of a stride-1 "same" convolution is the correlation of the
                # output gradient with the flipped kernel: oneDNN's forward kernel, 1.5-2x faster
                # than its backward-data kernel for depthwise convolutions.
                if flipped is None:
                    flipped = weight.flip(-2, -1)
                grad_x = F.conv2d(grad_output, flipped, None, 1, padding, 1, x.shape[1])
            else:
                grad_x = _aten.convolution_backward(
                    grad_output, x, weight, None, [stride, stride], [padding, padding], [1, 1],
                    False, [0, 0], x.shape[1], [True, False, False],
                )[0]
        if ctx.needs_input_grad[1] and _weight_grad_needed(ctx, 1):
            if kernel_size > 3:
                grad_w = depthwise_weight_grad(grad_output, x, kernel_size, stride, padding)
            else:
                grad_w = _aten.convolution_backward(
                    grad_output, x, weight, None, [stride, stride], [padding, padding], [1, 1],
                    False, [0, 0], x.shape[1], [False, True, False],
                )[1]
        return grad_x, grad_w, None, None, None


def depthwise_conv2d(
    x: Tensor, weight: Tensor, stride: int, padding: int, flipped: Optional[Tensor] = None
) -> Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding, groups=C)``, undilated.

    Same forward; faster gradients on CPU. The input gradient of a stride-1 convolution with
    "same" padding is computed as a forward convolution of the output gradient with the flipped
    kernel (oneDNN's backward-data kernel for depthwise convolutions is 1.5-2x slower than its
    forward kernel); the weight gradient of kernels wider than 3 is assembled from ``k x 3``
    tiles (:func:`depthwise_weight_grad`). Stride-2 kernels at most 3 wide use oneDNN throughout.
    The backward is not differentiable twice (``create_graph=True``). ``flipped``, if given, is
    ``weight.flip(-2, -1)`` computed ahead (a weight that does not change between passes need
    not be flipped in every backward pass).
    """
    k_h, k_w = weight.shape[-2:]
    if k_h != k_w or (k_h <= 3 and stride != 1):
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])
    return _DepthwiseConv2d.apply(x, weight, stride, padding, flipped)


def to_phases(x: Tensor) -> Tensor:
    """``(N, C, H, W)`` with even ``H, W`` -> ``(4N, C, H/2, W/2)``, channels-last.

    Phase ``(r, q)`` (rows ``r::2``, columns ``q::2``) of sample ``n`` is batch entry
    ``(2 r + q) N + n``. One copy.
    """
    n, c, h, w = x.shape
    s_n, s_c, s_h, s_w = x.stride()
    # (r, q, n, h/2, w/2, c) as a view of x, copied once into that order, seen as NCHW.
    view = x.as_strided((2, 2, n, h // 2, w // 2, c), (s_h, s_w, s_n, 2 * s_h, 2 * s_w, s_c))
    phases = view.clone(memory_format=torch.contiguous_format)
    return phases.as_strided((4 * n, c, h // 2, w // 2), ((h // 2) * (w // 2) * c, 1, (w // 2) * c, c))


def phases_to_nhwc(y: Tensor, batch: int) -> Tensor:
    """The inverse arrangement of :func:`to_phases` as a 6-d ``(N, H/2, 2, W/2, 2, C)`` view.

    ``y`` must be channels-last contiguous. Add it to ``nhwc_view(z)`` of a same-shaped
    channels-last ``z`` so that the rearrangement costs no separate copy.
    """
    c, h, w = y.shape[1:]
    return y.permute(0, 2, 3, 1).view(2, 2, batch, h, w, c).permute(2, 3, 0, 4, 1, 5)


def nhwc_view(z: Tensor) -> Tensor:
    """A channels-last ``(N, C, H, W)`` tensor as a 6-d ``(N, H/2, 2, W/2, 2, C)`` view."""
    n, c, h, w = z.shape
    return z.permute(0, 2, 3, 1).view(n, h // 2, 2, w // 2, 2, c)


def from_nhwc6(z6: Tensor) -> Tensor:
    """Back from :func:`nhwc_view`'s layout to a channels-last ``(N, C, H, W)`` tensor."""
    n, h2, _, w2, _, c = z6.shape
    return z6.reshape(n, 2 * h2, 2 * w2, c).permute(0, 3, 1, 2)


def even_phase(x: Tensor) -> Tensor:
    """Rows and columns ``0, 2, 4, ...`` of ``x`` (what a stride-2, dilation-2 convolution reads)."""
    return x[:, :, ::2, ::2].contiguous(memory_format=torch.channels_last)


class _DilatedDepthwiseConv2d(torch.autograd.Function):
    """Stride-1, dilation-2 depthwise convolution with faster backward kernels on the CPU."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, padding: int, flipped: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, weight, flipped)
        ctx.padding = padding
        return F.conv2d(x, weight, None, 1, padding, 2, x.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, weight, flipped = ctx.saved_tensors
        kernel_size = weight.shape[-1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # "Same" padding, stride 1: the correlation with the flipped kernel (a forward kernel).
            if flipped is None:
                flipped = weight.flip(-2, -1)
            grad_x = F.conv2d(grad_output, flipped, None, 1, ctx.padding, 2, x.shape[1])
        if ctx.needs_input_grad[1] and _weight_grad_needed(ctx, 1):
            # Each output phase reads only the same phase of the input, undilated.
            # to_phases reads any strides: no contiguous copy of a channel slice first.
            phases_x, phases_g = to_phases(x), to_phases(grad_output)
            pad = kernel_size // 2
            if kernel_size > 3:
                grad_w = depthwise_weight_grad(phases_g, phases_x, kernel_size, 1, pad)
            else:
                grad_w = _aten.convolution_backward(
                    phases_g, phases_x, weight, None, [1, 1], [pad, pad], [1, 1], False, [0, 0],
                    x.shape[1], [False, True, False],
                )[1]
        return grad_x, grad_w, None, None


def dilated_depthwise_conv2d(x: Tensor, weight: Tensor, flipped: Optional[Tensor] = None) -> Tensor:
    """``F.conv2d(x, weight, padding=k - 1, dilation=2, groups=C)`` (stride 1, "same" size).

    oneDNN's forward kernel, whose speed is fine; its backward kernels for dilated depthwise
    convolutions are 10-30x slower, so the input gradient is the forward convolution of the
    output gradient with the flipped kernel and the weight gradient that of an undilated
    convolution on the polyphase components (:func:`to_phases`; even sizes, else oneDNN's). The
    backward is not differentiable twice. ``flipped``: ``weight.flip(-2, -1)`` computed ahead, or
    ``None`` (flipped in the backward pass).
    """
    k_h, k_w = weight.shape[-2:]
    padding = k_h - 1
    if k_h != k_w or k_h % 2 == 0 or x.shape[-2] % 2 or x.shape[-1] % 2:
        return F.conv2d(x, weight, None, 1, padding, 2, x.shape[1])
    return _DilatedDepthwiseConv2d.apply(x, weight, padding, flipped)
