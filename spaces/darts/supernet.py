"""The DARTS supernet: every edge is a softmax(alpha)-weighted mixture of all primitives.

Three implementations of the same function, chosen by :class:`SupernetOptions`:

* the *plain* path, DARTS' own formulation: every operation is a module called on the edge input,
  and the edge output is ``sum_k w_k * op_k(x)``;
* the *lean* path (:mod:`~rnasframe.spaces.darts.lean`; the default on GPUs and other
  accelerators): every edge that reads the same state computed in one wave of grouped kernels,
  about a quarter of the fused path's operators per search iteration (what bounds the speed on a
  GPU);
* the *fast* path (the default on the CPU; ``SupernetOptions(lean=False)`` everywhere), which
  computes exactly the same outputs and gradients as the plain path with fewer and cheaper
  kernels, one edge at a time:

  - ``channels_last``: the cells run on NHWC tensors. On CPU, oneDNN's depthwise and pointwise
    convolutions and the pooling kernels are several times faster in this layout (``docs/performance.md``);
    the convolution weights are not touched, so the parameters and ``state_dict`` are unchanged.
  - ``fused_edges``: (1) ``ReLU`` of a state is computed once and shared by every ``sep_conv``,
    ``dil_conv`` and factorized-reduce ``skip_connect`` that reads the state (up to 4 operations on
    each of up to 4 edges); (2) the mixing weight ``w_k`` of every operation that ends in a
    non-affine BatchNorm (pooling, convolutions, factorized reduce) is passed to that BatchNorm as
    its scale, ``w_k * BN(z) = batch_norm(z, weight=w_k)``, so the product, its backward and the
    reduction that gives ``dL/dw_k`` cost nothing extra; (3) the terms of a node are accumulated in
    place into one buffer instead of allocating a new tensor per addition.
  - ``depthwise`` (with ``fused_edges``): oneDNN's depthwise kernels are fast only for kernels at
    most 3 wide and undilated; 5x5 weight gradients are assembled from 5x3 tiles and dilated
    convolutions run undilated on the polyphase components of their input
    (:mod:`~rnasframe.spaces.darts.fastops`).

``none`` is skipped on every path (its weight still takes part in the softmax). The fast path
rounds differently (sums in another order, ``BN(z) * w`` computed as one product), so results agree
to float tolerance, not bit for bit; ``tests/test_darts_fast.py`` checks every switch in float64.

All paths use the same modules, so the parameters, buffers and ``state_dict`` keys are identical:
a checkpoint written with one path loads into the other, and a supernet can switch paths at any
time by assigning :attr:`DartsSupernet.options`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, cast

import attrs
import gin
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe import validation
from rnasframe.interfaces.search_space import InputSpec, Supernet
from rnasframe.modules import Normalize, pointwise_conv2d
from rnasframe.spaces.darts import fastops, lean
from rnasframe.spaces.darts.genotypes import PRIMITIVES, Genotype, derive_genotype, num_edges
from rnasframe.spaces.darts.operations import (
    DilConv,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SepConv,
    make_op,
)

__all__ = [
    "SupernetOptions", "MixedOp", "SearchCell", "DartsSupernet", "EdgeInput", "NodeSum",
    "weighted", "weighted_batch_norm",
]

_NONE_INDEX = PRIMITIVES.index("none")


@gin.configurable
@attrs.define(frozen=True)
class SupernetOptions:
    """Switches for the supernet's fast paths. Every switch keeps the maths of the plain path.

    The default is the fastest exact combination measured on CPU (``docs/performance.md``);
    :meth:`plain` turns every switch off (DARTS' straightforward implementation).

    Args:
        fused_edges: shared ReLUs, mixing weights folded into the operations' last BatchNorm, and
            in-place accumulation of each node (see the module docstring).
        channels_last: run the cells on NHWC (``torch.channels_last``) tensors.
        depthwise: (needs ``fused_edges``) compute the depthwise convolutions with the exact
            reformulations of :mod:`~rnasframe.spaces.darts.fastops`: 5x5 weight gradients from
            5x3 tiles, dilated convolutions as undilated ones on polyphase components. Their
            backward passes do not support double differentiation (``create_graph=True``).
            CPU only: on other devices the native kernels are used whatever this says.
        compile: wrap the forward pass in :func:`torch.compile` (optional, off by default; needs
            a working inductor tool chain: a C++ compiler on CPU, Triton on CUDA; a failing
            compilation raises :class:`RuntimeError` naming this switch). It recompiles when the
            parameters' ``requires_grad`` flags or the train/eval mode change. On the 2-core CPU of
            ``docs/performance.md`` compiling even a 3-cell supernet took 11 minutes and ran about
            10 % slower than the eager fast path, so measure before using it.
        bf16_autocast: run the forward pass under ``torch.autocast("cuda", torch.bfloat16)``
            (CUDA only; a CPU input raises :class:`RuntimeError`). This one changes the numerics
            (bfloat16 convolutions) and is therefore off by default; the softmax(alpha)-weighted
            sums of every edge (:func:`weighted`) and the logits are computed in float32, so the
            gradients of alpha are not rounded to bfloat16.
        lean: compute the cells in *waves* (:mod:`~rnasframe.spaces.darts.lean`): every edge that
            reads the same state at once, each stage of every operation kind as one grouped
            kernel, about a quarter of the operators per search iteration of the fused path (what
            bounds the speed on a GPU). Takes precedence over ``fused_edges``; uses
            ``channels_last`` and ``depthwise`` like the fused path. ``None`` (the default): the
            lean path on GPUs and other accelerators, the fused path on the CPU, where the lean
            path's large per-wave tensors cost more (page faults of freshly mapped memory,
            concatenations) than the operators they save at the paper's size
            (``docs/performance.md``: 2.3x slower at batch 64 with glibc's default allocator,
            1.2x slower when freed memory is kept, 2.1-2.5x faster on a tiny supernet).
            ``True`` / ``False`` force one path.
        cuda_graphs: *experimental, not yet validated on a GPU*: run the forward (and its
            backward) as CUDA graphs through ``torch.compile(mode="reduce-overhead")``, which
            copies each input into a static buffer and replays the captured kernels, so that the
            host launches one graph instead of thousands of operators. CUDA only (a CPU input
            raises :class:`RuntimeError`); needs Triton; recompiles (and captures again) when the
            parameters' ``requires_grad`` flags, the train/eval mode or the input shape change,
            so the alpha-step, the w-step and the PGD loop each get their own graphs.
            ``benchmarks/gpu_check.sh`` compares it with the eager paths.
    """

    fused_edges: bool = attrs.field(default=True, validator=validation.boolean)
    channels_last: bool = attrs.field(default=True, validator=validation.boolean)
    depthwise: bool = attrs.field(default=True, validator=validation.boolean)
    compile: bool = attrs.field(default=False, validator=validation.boolean)
    bf16_autocast: bool = attrs.field(default=False, validator=validation.boolean)
    lean: Optional[bool] = attrs.field(default=None, validator=attrs.validators.optional(validation.boolean))
    cuda_graphs: bool = attrs.field(default=False, validator=validation.boolean)

    def __attrs_post_init__(self) -> None:
        if self.depthwise and not self.fused_edges:
            raise ValueError(
                "SupernetOptions.depthwise=True needs fused_edges=True (the reformulated depthwise "
                "convolutions are part of the fused edge implementation); got fused_edges=False"
            )

    @classmethod
    def plain(cls) -> "SupernetOptions":
        """Every switch off: DARTS' straightforward implementation."""
        return cls(
            fused_edges=False,
            channels_last=False,
            depthwise=False,
            compile=False,
            bf16_autocast=False,
            lean=False,
            cuda_graphs=False,
        )


def weighted(weight: Tensor, term: Tensor) -> Tensor:
    """``weight * term`` computed in the mixing weight's dtype (float32).

    Under ``bf16_autocast`` an operation's output is bfloat16; multiplying it by a float32 scalar
    would keep bfloat16 (a 0-dimensional tensor does not promote), and the gradient of the mixing
    weight, a sum over the whole term, would be rounded to bfloat16 (about 0.4 % per step). The
    term is cast first instead, so the product, the node sums and the mixing weights' gradients
    are float32. Without autocast the dtypes agree and nothing is added.
    """
    if term.dtype != weight.dtype:
        term = term.to(weight.dtype)
    return weight * term


def weighted_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, scale: Tensor) -> Tensor:
    """Return ``scale * bn(x)`` as a single BatchNorm call whose per-channel weight is ``scale``.

    Running statistics, ``num_batches_tracked``, ``track_running_stats`` and train/eval mode are
    handled exactly as :meth:`torch.nn.BatchNorm2d.forward` handles them (the scale never changes
    the statistics). An affine ``bn`` gets weight ``scale * bn.weight`` and bias
    ``scale * bn.bias``.

    Args:
        bn: the BatchNorm module whose buffers (and affine parameters, if any) are used.
        x: its input.
        scale: a scalar tensor (a mixing weight ``w_k``); gradients flow into it. A lower
            precision ``x`` (bfloat16 under autocast) is cast to its dtype first (see :func:`weighted`).
    """
    if x.dtype != scale.dtype:
        x = x.to(scale.dtype)
    if bn.momentum is None:
        factor = 0.0
    else:
        factor = bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
    if bn.training:
        use_batch_stats = True
    else:
        use_batch_stats = bn.running_mean is None and bn.running_var is None
    keep_stats = not bn.training or bn.track_running_stats
    channels = x.shape[1]
    if bn.weight is None:
        # A real copy, not an expanded view: torch 2.14's CPU batch-norm backward reads a stride-0
        # weight as if it were contiguous when the tensors are channels-last (wrong input
        # gradients, found by tests/test_darts_fast.py).
        weight = scale.expand(channels).contiguous()
    else:
        weight = bn.weight * scale
    bias = None if bn.bias is None else bn.bias * scale
    return F.batch_norm(
        x,
        bn.running_mean if keep_stats else None,
        bn.running_var if keep_stats else None,
        weight,
        bias,
        use_batch_stats,
        factor,
        bn.eps,
    )


# How the fused path computes each operation of an edge.
_SKIP = "skip"  # `none`: zero, contributes nothing
_POOL = "pool"  # Sequential(pool, BatchNorm): the weight goes into the BatchNorm
_IDENTITY = "identity"  # stride-1 skip_connect: w * x
_REDUCE = "reduce"  # stride-2 skip_connect (FactorizedReduce) on the shared ReLU
_SEP = "sep"  # SepConv on the shared ReLU
_DIL = "dil"  # DilConv on the shared ReLU
_GENERIC = "generic"  # anything else: w * op(x)


def _kind_of(index: int, op: nn.Module) -> str:
    if index == _NONE_INDEX:
        return _SKIP
    if isinstance(op, Identity):
        return _IDENTITY
    if isinstance(op, FactorizedReduce):
        return _REDUCE
    if isinstance(op, SepConv) and len(op) == 2 and all(_is_dil_conv(block) for block in op):
        return _SEP
    if _is_dil_conv(op):
        return _DIL
    if (
        isinstance(op, nn.Sequential)
        and len(op) == 2
        and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d))
        and isinstance(op[1], nn.BatchNorm2d)
    ):
        return _POOL
    return _GENERIC


def _is_dil_conv(op: nn.Module) -> bool:
    return (
        isinstance(op, DilConv)
        and len(op) == 4
        and isinstance(op[0], nn.ReLU)
        and isinstance(op[3], nn.BatchNorm2d)
    )


class EdgeInput:
    """A state read by several edges, with the derived tensors they share (computed on demand).

    Every ``sep_conv``, ``dil_conv`` and factorized-reduce ``skip_connect`` starts with
    ``relu(x)``; the fast path computes it once per state. With ``depthwise=True`` the dilated
    convolutions also share the polyphase arrangement of ``relu(x)`` (stride 1) or its even phase
    (stride 2), see :mod:`rnasframe.spaces.darts.fastops`.

    Args:
        x: the state.
    """

    __slots__ = ("_even", "_phases", "_relu", "x")

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self._relu: Optional[Tensor] = None
        self._phases: Optional[Tensor] = None
        self._even: Optional[Tensor] = None

    def relu(self) -> Tensor:
        """``relu(x)``."""
        if self._relu is None:
            self._relu = F.relu(self.x)
        return self._relu

    def phases(self) -> Tensor:
        """``to_phases(relu(x))``."""
        if self._phases is None:
            self._phases = fastops.to_phases(self.relu())
        return self._phases

    def even(self) -> Tensor:
        """``relu(x)[:, :, ::2, ::2]``, channels-last."""
        if self._even is None:
            self._even = fastops.even_phase(self.relu())
        return self._even


def _reduce_body(op: FactorizedReduce, relu_x: Tensor) -> Tensor:
    """:class:`FactorizedReduce` without its ReLU and BatchNorm, on an already rectified input."""
    shifted = relu_x[:, :, 1:, 1:]
    if relu_x.shape[-2] % 2 or relu_x.shape[-1] % 2:
        # Odd sizes sample the padding; even sizes never do, so the copy is skipped.
        shifted = F.pad(shifted, (0, 1, 0, 1))
    # pointwise_conv2d, not the modules' own forward: the native strided 1x1 kernel is unsafe for
    # narrow channels-last inputs (see rnasframe.modules.pointwise_conv2d).
    first = pointwise_conv2d(relu_x, op.conv_1.weight, stride=2)
    second = pointwise_conv2d(shifted, op.conv_2.weight, stride=2)
    return torch.cat([first, second], dim=1)


def _is_depthwise(conv: nn.Conv2d) -> bool:
    k_h, k_w = conv.kernel_size
    return (
        conv.groups == conv.in_channels == conv.out_channels
        and conv.bias is None
        and k_h == k_w
        and k_h % 2 == 1
        and conv.stride[0] == conv.stride[1]
        and conv.padding == (conv.dilation[0] * (k_h // 2),) * 2
        and conv.dilation[0] == conv.dilation[1]
        and conv.padding_mode == "zeros"
    )


def _depthwise(conv: nn.Conv2d, x: Tensor, fast: bool) -> Tensor:
    if fast and conv.dilation == (1, 1) and _is_depthwise(conv):
        return fastops.depthwise_conv2d(x, conv.weight, conv.stride[0], cast(int, conv.padding[0]))
    return conv(x)


def _sep_body(op: SepConv, relu_x: Tensor, fast: bool) -> Tensor:
    """:class:`SepConv` up to (not including) its last BatchNorm, on an already rectified input."""
    first, second = cast(DilConv, op[0]), cast(DilConv, op[1])
    hidden = first[3](first[2](_depthwise(cast(nn.Conv2d, first[1]), relu_x, fast)))
    # In place: BatchNorm's backward needs its input, not its output.
    hidden = F.relu(hidden, inplace=True)
    return second[2](_depthwise(cast(nn.Conv2d, second[1]), hidden, fast))


def _dil_body(op: DilConv, state: EdgeInput, fast: bool) -> Tuple[Tensor, bool]:
    """:class:`DilConv` without its ReLU and BatchNorm; also says whether the result is phased.

    A phased result is the :func:`~rnasframe.spaces.darts.fastops.to_phases` arrangement of the
    true one (the pointwise convolution and the BatchNorm that follows do not depend on it).
    """
    conv = cast(nn.Conv2d, op[1])
    if fast and conv.dilation == (2, 2) and _is_depthwise(conv):
        x = state.x
        pad = conv.kernel_size[0] // 2
        if conv.stride == (2, 2):
            hidden = fastops.depthwise_conv2d(state.even(), conv.weight, 1, pad)
            return op[2](hidden), False
        if conv.stride == (1, 1) and x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
            hidden = fastops.depthwise_conv2d(state.phases(), conv.weight, 1, pad)
            return op[2](hidden), True
    return op[2](conv(state.relu())), False


class NodeSum:
    """The partial sum of a node, accumulated in place.

    Terms are added to one buffer in place (no new tensor per addition). Terms of dilated
    convolutions computed on polyphase components (``phased``) are summed apart, in that
    arrangement, and put back in order once, by the single addition in :meth:`result`. The
    buffers are never saved by autograd for a backward formula (every term comes from a BatchNorm
    or a product, whose backward needs their inputs only), so the in-place additions are safe.
    """

    __slots__ = ("_phased", "_total")

    def __init__(self) -> None:
        self._total: Optional[Tensor] = None
        self._phased: Optional[Tensor] = None

    def add(self, term: Tensor, phased: bool = False) -> None:
        """Add ``term`` (a :func:`~rnasframe.spaces.darts.fastops.to_phases` arrangement if ``phased``)."""
        if phased:
            self._phased = term if self._phased is None else self._phased.add_(term)
        else:
            self._total = term if self._total is None else self._total.add_(term)

    def result(self, batch: int) -> Tensor:
        """The sum of every term, in natural pixel order; ``batch`` is the natural batch size."""
        if self._phased is None:
            assert self._total is not None
            return self._total
        phased = fastops.phases_to_nhwc(self._phased, batch)
        if self._total is None:
            return fastops.from_nhwc6(phased).contiguous(memory_format=torch.channels_last)
        if self._total.is_contiguous(memory_format=torch.channels_last):
            # One pass: the addition reads the polyphase arrangement directly.
            return fastops.from_nhwc6(fastops.nhwc_view(self._total) + phased)
        return self._total + fastops.from_nhwc6(phased)


class MixedOp(nn.Module):
    """One edge of the supernet: ``sum_k w_k * op_k(x)`` over :data:`PRIMITIVES`.

    Pooling is followed by a non-affine BatchNorm, as in DARTS. The ``none`` operation is zero, so
    its term is skipped (its weight still takes part in the softmax, so the output and every
    gradient are those of the full sum).

    :meth:`forward` is the plain implementation; :meth:`forward_fused` computes the same sum
    with a shared ReLU, mixing weights folded into BatchNorms and in-place accumulation.

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
        self._kinds: List[str] = [_kind_of(k, op) for k, op in enumerate(self.ops)]

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """Return the mixture of all operations on ``x`` (the plain implementation).

        Args:
            x: the edge input.
            weights: ``(len(PRIMITIVES),)`` mixing weights (a softmax row of alpha).
        """
        out: Optional[Tensor] = None
        for k, op in enumerate(self.ops):
            if k == _NONE_INDEX:
                continue
            term = weighted(weights[k], op(x))
            out = term if out is None else out + term
        assert out is not None
        return out

    def forward_fused(
        self, state: EdgeInput, weights: Tensor, node: NodeSum, depthwise: bool = False
    ) -> None:
        """Add ``sum_k w_k * op_k(x)`` (the value of :meth:`forward`) to ``node``.

        Args:
            state: the edge input ``x`` and its shared derived tensors.
            weights: ``(len(PRIMITIVES),)`` mixing weights.
            node: the partial sum of the node this edge leads to.
            depthwise: use the reformulated depthwise convolutions of
                :mod:`~rnasframe.spaces.darts.fastops`.
        """
        x = state.x
        scales = weights.unbind(0)
        # The kind, not the type checker, knows each operation's class.
        for k, (kind, op) in enumerate(zip(self._kinds, cast(Iterable[Any], self.ops))):
            if kind == _SKIP:
                continue
            scale = scales[k]
            if kind == _POOL:
                node.add(weighted_batch_norm(op[1], op[0](x), scale))
            elif kind == _IDENTITY:
                node.add(weighted(scale, x))
            elif kind == _SEP:
                node.add(weighted_batch_norm(op[1][3], _sep_body(op, state.relu(), depthwise), scale))
            elif kind == _DIL:
                body, phased = _dil_body(op, state, depthwise)
                node.add(weighted_batch_norm(op[3], body, scale), phased)
            elif kind == _REDUCE:
                node.add(weighted_batch_norm(op.bn, _reduce_body(op, state.relu()), scale))
            else:
                node.add(weighted(scale, op(x)))


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

    def forward(
        self, s0: Tensor, s1: Tensor, weights: Tensor, fused: bool = False, depthwise: bool = False
    ) -> Tensor:
        """Return the cell output.

        Args:
            s0: output of the cell two back.
            s1: output of the previous cell.
            weights: ``(num_edges(steps), len(PRIMITIVES))`` softmaxed alphas of this cell type.
            fused: use :meth:`MixedOp.forward_fused` (same result, fewer kernels).
            depthwise: with ``fused``, use the reformulated depthwise convolutions.
        """
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        if fused:
            return self._forward_fused(states, weights, depthwise)
        offset = 0
        for _ in range(self.steps):
            node = sum(
                self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)
            )
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)

    def _forward_fused(self, states: List[Tensor], weights: Tensor, depthwise: bool) -> Tensor:
        rows = weights.unbind(0)
        inputs = [EdgeInput(h) for h in states]
        offset = 0
        batch = states[0].shape[0]
        for _ in range(self.steps):
            node = NodeSum()
            for j, state in enumerate(inputs):
                cast(MixedOp, self.edges[offset + j]).forward_fused(state, rows[offset + j], node, depthwise)
            offset += len(inputs)
            inputs.append(EdgeInput(node.result(batch)))
        return torch.cat([state.x for state in inputs[-self.multiplier :]], dim=1)


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

    How the forward pass is computed is chosen by :attr:`options` (a :class:`SupernetOptions`;
    default: the lean path on accelerators, the fast path on the CPU). Every option except
    ``bf16_autocast`` gives the plain path's outputs and gradients up to float rounding, and none
    changes the parameters or ``state_dict`` keys, so :attr:`options` may be reassigned at any time.

    Args:
        num_classes: number of classes.
        channels: ``C``, channels of the first cells.
        layers: number of cells.
        steps: intermediate nodes per cell.
        multiplier: number of last nodes concatenated into a cell's output.
        stem_multiplier: the stem outputs ``stem_multiplier * C`` channels.
        input_spec: input shape and normalization (default: 3x32x32, identity normalization).
        options: implementation switches (default: ``SupernetOptions()``).
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
        options: Optional[SupernetOptions] = None,
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
        self.options = options if options is not None else SupernetOptions()

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
        self.classifier = nn.Linear(c_prev, num_classes)

        shape = (num_edges(steps), len(PRIMITIVES))
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(*shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(*shape))

    @property
    def options(self) -> SupernetOptions:
        """The implementation switches; assign a new :class:`SupernetOptions` to change paths."""
        return self._options

    @options.setter
    def options(self, value: SupernetOptions) -> None:
        if not isinstance(value, SupernetOptions):
            raise TypeError(
                f"DartsSupernet.options must be a SupernetOptions, got {value!r} of type "
                f"{type(value).__name__}"
            )
        self._options = value

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits of a batch of ``[0, 1]`` images."""
        options = self._options
        if options.bf16_autocast:
            if x.device.type != "cuda":
                raise RuntimeError(
                    "SupernetOptions.bf16_autocast is CUDA only (bfloat16 autocast on this CPU "
                    f"would be slower and change the numerics); got an input on {x.device}. Use "
                    "SupernetOptions(bf16_autocast=False) on CPU."
                )
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self._dispatch(x).float()
        return self._dispatch(x)

    def _dispatch(self, x: Tensor) -> Tensor:
        options = self._options
        if options.cuda_graphs and x.device.type != "cuda":
            raise RuntimeError(
                "SupernetOptions.cuda_graphs=True captures CUDA graphs and needs a CUDA input; got "
                f"an input on {x.device}. Use SupernetOptions(cuda_graphs=False) on this device."
            )
        if not (options.compile or options.cuda_graphs):
            return self._forward_impl(x, options.fused_edges, options.channels_last, options.depthwise, self._lean(x))
        mode = "reduce-overhead" if options.cuda_graphs else None
        compiled = self._compiled(mode)
        if options.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return compiled(x, options.fused_edges, options.channels_last, options.depthwise, self._lean(x))
        except Exception as error:  # re-raised with the switch named
            if type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
                switch = "cuda_graphs" if options.cuda_graphs else "compile"
                raise RuntimeError(
                    f"SupernetOptions.{switch}=True: torch.compile failed ({type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}). It needs a working inductor "
                    "tool chain (a C++ compiler on CPU, Triton on CUDA); set "
                    f"SupernetOptions({switch}=False) to run eagerly."
                ) from error
            raise

    def _lean(self, x: Tensor) -> bool:
        """Whether this forward pass uses the lean path (``options.lean``; ``None``: off the CPU)."""
        choice = self._options.lean
        return x.device.type != "cpu" if choice is None else choice

    def _compiled(self, mode: Optional[str] = None) -> Callable[..., Tensor]:
        key = "_compiled_forward" if mode is None else f"_compiled_forward_{mode}"
        compiled = self.__dict__.get(key)
        if compiled is None:
            if not hasattr(torch, "compile"):
                raise RuntimeError(
                    "SupernetOptions.compile=True needs torch.compile (torch >= 2.0); set "
                    "SupernetOptions(compile=False)"
                )
            if mode is None:
                compiled = torch.compile(self._forward_impl)
            else:
                compiled = torch.compile(self._forward_impl, mode=mode)
            self.__dict__[key] = compiled
        return compiled

    def _forward_impl(
        self, x: Tensor, fused: bool, channels_last: bool, depthwise: bool, lean_cells: bool = False
    ) -> Tensor:
        # The depthwise reformulations work around gaps in oneDNN's CPU kernels only.
        depthwise = depthwise and x.device.type == "cpu"
        weights_normal = F.softmax(self.alphas_normal, dim=-1)
        weights_reduce = F.softmax(self.alphas_reduce, dim=-1)
        h = self.normalize(x)
        if channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(h)
        if lean_cells:
            mixing = lean.LeanMixing(weights_normal, weights_reduce)
            for cell in self.cells:
                s0, s1 = s1, lean.lean_cell_forward(cell, s0, s1, mixing, depthwise, channels_last)
        else:
            for cell in self.cells:
                weights = weights_reduce if cell.reduction else weights_normal
                s0, s1 = s1, cell(s0, s1, weights, fused=fused, depthwise=depthwise)
        return self.classifier(s1.mean((2, 3)))  # global average pooling (deterministic on CUDA)

    def __getstate__(self) -> Dict[str, Any]:
        """Pickle/copy state without the compiled forward (it is rebuilt on demand)."""
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__ itself
        for key in [k for k in state if k.startswith("_compiled_forward")]:
            state.pop(key)
        return state

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
            f"multiplier={self.multiplier}, num_classes={self.num_classes}, options={self._options}"
        )
