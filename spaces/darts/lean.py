"""The *lean* supernet cell: every edge that reads the same state is computed in one wave.

DARTS' supernet evaluates 14 edges x 7 operations per cell one by one, each a handful of small
kernels. On a GPU every kernel costs several microseconds of host time whatever its size, so the
search is bound by the number of operators, not by arithmetic (``docs/performance.md``). This
module computes the same function with a few dozen operators per *wave*:

* a cell has ``steps`` waves; wave 0 holds every edge that reads the two cell inputs, wave
  ``s >= 1`` every edge that reads node ``s - 1``. Nodes are summed in a running buffer, so node
  ``i`` is complete after wave ``i``;
* the state(s) of a wave are replicated once per edge along the channel axis (``E`` edges ->
  ``E * C`` channels), and each stage of every operation kind runs as *one* grouped kernel over
  all edges: depthwise convolutions are per channel, pointwise (1x1) convolutions become
  block-diagonal grouped convolutions (``groups = E``), and BatchNorm without affine parameters
  is per channel, so the stages of several operation kinds share one BatchNorm call too;
* the mixing weight ``w_k`` of every operation that ends in a BatchNorm is that BatchNorm's
  per-channel scale (``w_k * BN(z) = batch_norm(z, weight=w_k)``), gathered for the whole wave
  with one indexing operator per forward pass and cell type;
* the parameters are the plain path's modules' own parameters, gathered per wave and kernel
  shape with one concatenation whose backward is one split (the three 3x3 depthwise kernels of
  a wave in one, the three 5x5 ones in another), and the BatchNorm running
  statistics are the plain modules' own buffers, re-pointed at slices of one flat buffer per
  wave so that one BatchNorm call updates all of them. Parameters,
  buffers and ``state_dict`` keys are therefore exactly those of the plain path;
* while the parameters are frozen (``requires_grad=False``, as in the inner maximization of a
  robust objective), the gathered weights are kept and reused by the next forward pass until a
  parameter changes (its storage or version counter), so that the ten PGD passes of an
  RNAS-max step gather nothing;
* on the CPU (``fast``), the 5x5 and the dilated depthwise kernels use the reformulated
  backward passes of :mod:`~rnasframe.spaces.darts.fastops` (the 5x5 ones with their flipped
  kernels made once per wave); the undilated 3x3 kernels use oneDNN's own backward passes, as
  fast as the reformulation at the wave's width and one operator instead of two or three.

Factorized reductions (``skip_connect`` on stride-2 edges and ``preprocess0`` after a reduction
cell) run their stride-2 1x1 convolutions as stride-1 convolutions on the subsampled input
``x[..., ::2, ::2]`` (the same numbers; it also sidesteps a oneDNN defect in channels-last
stride-2 1x1 backward kernels with few input channels).

The lean path rounds differently from the plain path (sums in another order), so they agree to
float tolerance (``tests/test_lean_supernet.py`` checks values and gradients in float64).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.spaces.darts import fastops
from rnasframe.spaces.darts.genotypes import PRIMITIVES
from rnasframe.spaces.darts.operations import FactorizedReduce, ReLUConvBN

__all__ = ["LeanMixing", "lean_cell_forward", "check_lean_structure", "factorized_reduce"]

# Column of each operation in the alphas (and in MixedOp.ops).
_MAX, _AVG, _SKIP, _SEP3, _SEP5, _DIL3, _DIL5 = (
    PRIMITIVES.index(name)
    for name in (
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )
)
_ONE = -1  # "scale 1" in a BatchNorm scale layout (a BatchNorm that is not an edge's last one)


class _Cat(torch.autograd.Function):
    """``torch.cat(tensors, dim)`` whose backward is one split (autograd's is one slice per input)."""

    @staticmethod
    def forward(ctx: Any, dim: int, *tensors: Tensor) -> Tensor:
        ctx.dim = dim
        ctx.sizes = [t.shape[dim] for t in tensors]
        return torch.cat(tensors, dim)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
        return (None, *grad.split(ctx.sizes, ctx.dim))


def _cat(tensors: Sequence[Tensor], dim: int = 1) -> Tensor:
    """Concatenate along ``dim`` (channels by default) with a one-operator backward."""
    if len(tensors) == 1 and dim == 0:
        return tensors[0]
    return _Cat.apply(dim, *tensors)


def _gather(tensors: Sequence[Tensor]) -> Tensor:
    """The parameters of several edges as one grouped-convolution weight (along dim 0)."""
    return _cat(tensors, 0)


class LeanMixing:
    """The mixing weights of one forward pass, laid out as the waves' BatchNorm scales.

    A scale vector has one entry per channel of a wave's BatchNorm call: ``w[edge, k]`` repeated
    over the ``C`` channels of that edge's operation ``k``, or 1. Each layout is gathered from
    ``softmax(alpha)`` with one ``index_select`` per forward pass and cell type, whatever the
    number of cells that use it.

    Args:
        normal: ``softmax(alphas_normal)``, ``(edges, ops)``.
        reduce: ``softmax(alphas_reduce)``.
    """

    def __init__(self, normal: Tensor, reduce: Tensor) -> None:
        self._flat: Dict[bool, Tensor] = {}
        self._source = {False: normal, True: reduce}
        self._sets: Dict[Tuple[bool, int], Dict[Tuple[int, int], Tensor]] = {}

    def scale_set(
        self, reduction: bool, channels: int, index: Tensor, keys: Sequence[Tuple[int, int]], sizes: Sequence[int]
    ) -> Dict[Tuple[int, int], Tensor]:
        """Every scale vector of a cell type at one width, from one ``index_select`` and one split.

        ``index`` holds the positions in ``cat([w.flatten(), 1])`` of the vectors named by
        ``keys`` (wave, BatchNorm call), of lengths ``sizes``, one after the other. Cells of one
        type and width share the layouts, so the result is computed once per forward pass.
        """
        cache_key = (reduction, channels)
        found = self._sets.get(cache_key)
        if found is None:
            flat = self._flat.get(reduction)
            if flat is None:
                weights = self._source[reduction]
                flat = torch.cat([weights.reshape(-1), weights.new_ones(1)])
                self._flat[reduction] = flat
            vectors = flat.index_select(0, index).split(list(sizes))
            found = self._sets[cache_key] = dict(zip(keys, vectors))
        return found


class _FlatStatistics:
    """BatchNorm running statistics of several modules as consecutive slices of one buffer.

    Each module's ``running_mean`` / ``running_var`` buffer is replaced by a view of a flat
    buffer (the values are copied over once), so one ``F.batch_norm`` call on the concatenated
    channels updates every module's statistics in place. :meth:`valid` tells whether the modules
    still hold those views (``.to()``, ``.double()`` and the like replace buffers; in-place
    updates such as ``load_state_dict`` keep them); if not, the views are rebuilt.
    """

    __slots__ = ("_views", "mean", "modules", "var")

    def __init__(self, modules: Sequence[nn.modules.batchnorm._BatchNorm]) -> None:
        self.modules = list(modules)
        self.mean: Optional[Tensor] = None
        self.var: Optional[Tensor] = None
        self._views: List[Tuple[Tensor, Tensor]] = []
        if all(m.running_mean is not None for m in self.modules):
            self.mean = torch.cat([m.running_mean for m in self.modules])  # type: ignore[misc]
            self.var = torch.cat([m.running_var for m in self.modules])  # type: ignore[misc]
            start = 0
            for module in self.modules:
                size = module.num_features
                mean, var = self.mean[start : start + size], self.var[start : start + size]
                module._buffers["running_mean"] = mean
                module._buffers["running_var"] = var
                self._views.append((mean, var))
                start += size

    def valid(self) -> bool:
        """Whether every module still holds its view of the flat buffers."""
        if self.mean is None:
            return all(m.running_mean is None for m in self.modules)
        return all(
            m._buffers.get("running_mean") is mean and m._buffers.get("running_var") is var
            for m, (mean, var) in zip(self.modules, self._views)
        )


class _Counters:
    """Every ``num_batches_tracked`` of a cell as an element of one flat int64 buffer."""

    __slots__ = ("_views", "flat", "modules")

    def __init__(self, modules: Sequence[nn.modules.batchnorm._BatchNorm]) -> None:
        self.modules = [m for m in modules if m.num_batches_tracked is not None]
        self._views: List[Tensor] = []
        self.flat: Optional[Tensor] = None
        if self.modules:
            self.flat = torch.stack([m.num_batches_tracked for m in self.modules])  # type: ignore[misc]
            for index, module in enumerate(self.modules):
                view = self.flat[index]
                module._buffers["num_batches_tracked"] = view
                self._views.append(view)

    def valid(self) -> bool:
        """Whether every module still holds its view of the flat counter."""
        return all(m._buffers.get("num_batches_tracked") is v for m, v in zip(self.modules, self._views))


def _bn_settings(modules: Sequence[nn.modules.batchnorm._BatchNorm]) -> Tuple[bool, bool, Optional[float], float]:
    first = modules[0]
    return first.training, first.track_running_stats, first.momentum, first.eps


class _Wave:
    """The modules of one wave of a cell, in the channel order of its batched kernels."""

    def __init__(self, cell: Any, number: int, sources: List[int], targets: List[int], stride: int, rows: int) -> None:
        self.number, self.rows = number, rows
        self.sources, self.targets, self.stride = sources, targets, stride
        offsets = [sum(i + 2 for i in range(node)) for node in range(cell.steps + 1)]
        # Edges in channel order: source-major, then target node.
        self.edge_ids = [offsets[node] + source for source in sources for node in targets]
        ops = [cell.edges[e].ops for e in self.edge_ids]
        self.count = len(self.edge_ids)
        self.dw1 = [[o[k][0][1] for o in ops] for k in (_SEP3, _SEP5)]
        self.dw1 += [[o[k][1] for o in ops] for k in (_DIL3, _DIL5)]
        self.pw1 = [o[k][0][2] for k in (_SEP3, _SEP5) for o in ops] + [o[k][2] for k in (_DIL3, _DIL5) for o in ops]
        self.dw2 = [[o[k][1][1] for o in ops] for k in (_SEP3, _SEP5)]
        self.pw2 = [o[k][1][2] for k in (_SEP3, _SEP5) for o in ops]
        bn1 = [o[k][0][3] for k in (_SEP3, _SEP5) for o in ops]
        bn2 = [o[k][1] for k in (_MAX, _AVG) for o in ops] + [o[k][1][3] for k in (_SEP3, _SEP5) for o in ops]
        bn2 += [o[k][3] for k in (_DIL3, _DIL5) for o in ops]
        self.reduce: List[FactorizedReduce] = []
        if stride == 2:
            self.reduce = [o[_SKIP] for o in ops]
            bn2 += [r.bn for r in self.reduce]
        self.bn1_modules, self.bn2_modules = bn1, bn2
        e = self.edge_ids
        kinds2 = [_MAX, _AVG, _SEP3, _SEP5, _DIL3, _DIL5] + ([_SKIP] if stride == 2 else [])
        self.layout2 = tuple((i, k) for k in kinds2 for i in e)
        self.layout_skip = tuple((i, _SKIP) for i in e)
        self.kinds2 = len(kinds2)
        self.stats1: Optional[_FlatStatistics] = None
        self.stats2: Optional[_FlatStatistics] = None
        self._index: Dict[Tuple[int, torch.device, int], Tensor] = {}
        self._frozen: Dict[str, _FrozenWeight] = {}

    def weights(
        self, name: str, params: Sequence[Tensor], pieces: int, flip: bool, ahead: bool = False
    ) -> List[Tuple[Tensor, Optional[Tensor]]]:
        """``cat(params)`` as one grouped weight split in ``pieces`` equal parts, each with its flip.

        One concatenation (whose backward is one split) and one split serve several kernels of
        the same shape. A part's flip (``weight.flip(-2, -1)``, for the CPU's flipped-kernel input
        gradients) is given if ``flip`` and either the parameters are frozen or ``ahead`` (one
        flip for several kernels that would each flip their part in the backward pass); else
        ``None`` (the backward pass flips it if it needs it).

        While no parameter requires a gradient (the inner maximization freezes them), the parts
        and their flips are kept between forward passes and reused as long as every parameter
        keeps its storage and version counter (in-place changes through ``.data``, which bypass
        the version counter, are not seen: change frozen parameters under ``torch.no_grad()``).
        """
        # Under torch.compile the gathering is traced instead (no Python-side state in the graph).
        if any(p.requires_grad for p in params) or torch.compiler.is_compiling():
            self._frozen.pop(name, None)
            if len(params) == pieces:  # one parameter per part: nothing to gather
                return [(p, None) for p in params]
            weight = _gather(params)
            parts = weight.chunk(pieces) if pieces > 1 else (weight,)
            flipped: Sequence[Optional[Tensor]] = (None,) * pieces
            if flip and ahead and torch.is_grad_enabled():
                with torch.no_grad():
                    whole = weight.flip(-2, -1)
                    flipped = whole.chunk(pieces) if pieces > 1 else (whole,)
            return list(zip(parts, flipped))
        key = tuple((p.data_ptr(), p._version) for p in params)
        entry = self._frozen.get(name)
        if entry is None or entry.key != key:
            weight = torch.cat(list(params))
            entry = _FrozenWeight(key, weight.chunk(pieces) if pieces > 1 else (weight,))
            self._frozen[name] = entry
        if flip and entry.flipped is None:
            whole = torch.cat(list(entry.parts)).flip(-2, -1) if pieces > 1 else entry.parts[0].flip(-2, -1)
            entry.flipped = whole.chunk(pieces) if pieces > 1 else (whole,)
        flips: Sequence[Optional[Tensor]] = entry.flipped if flip and entry.flipped is not None else (None,) * pieces
        return list(zip(entry.parts, flips))

    def index(
        self, which: int, layout: Tuple[Tuple[int, int], ...], channels: int, device: torch.device, ops: int
    ) -> Tensor:
        """The positions of ``layout``'s scales in ``cat([softmax(alpha).flatten(), 1])``."""
        key = (which, device, channels)
        index = self._index.get(key)
        if index is None:
            ones = self.rows * ops
            positions = [ones if k == _ONE else e * ops + k for e, k in layout]
            index = torch.tensor(positions, dtype=torch.long).repeat_interleave(channels).to(device)
            self._index[key] = index
        return index


class _FrozenWeight:
    """Grouped weights gathered from frozen parameters, with the state they were gathered from."""

    __slots__ = ("flipped", "key", "parts")

    def __init__(self, key: Tuple[Tuple[int, int], ...], parts: Sequence[Tensor]) -> None:
        self.key, self.parts = key, tuple(parts)
        self.flipped: Optional[Tuple[Tensor, ...]] = None


class _CellPlan:
    """The waves of one cell and its shared running-statistics buffers (built on first use)."""

    def __init__(self, cell: Any) -> None:
        steps = cell.steps
        self.waves: List[_Wave] = []
        rows = sum(i + 2 for i in range(steps))
        for wave in range(steps):
            sources = [0, 1] if wave == 0 else [wave + 1]
            targets = list(range(steps)) if wave == 0 else list(range(wave, steps))
            stride = 2 if cell.reduction and wave == 0 else 1
            self.waves.append(_Wave(cell, wave, sources, targets, stride, rows))
        # The edges' BatchNorms (the preprocessing modules count their own batches).
        self.norms = [m for m in cell.edges.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.counters: Optional[_Counters] = None
        self.ops = len(PRIMITIVES)
        self._layouts: Dict[Tuple[torch.device, int], Tuple[Tensor, List[Tuple[int, int]], List[int]]] = {}

    def scales(
        self, mixing: LeanMixing, reduction: bool, channels: int, device: torch.device
    ) -> Dict[Tuple[int, int], Tensor]:
        """The scale vectors of every wave, ``(wave, 1)``: its scaled BatchNorm call; ``(wave, 0)``:
        its identities (stride-1 waves)."""
        key = (device, channels)
        layout = self._layouts.get(key)
        if layout is None:
            keys: List[Tuple[int, int]] = []
            indices: List[Tensor] = []
            for wave in self.waves:
                for which in (1, 0) if wave.stride == 1 else (1,):
                    keys.append((wave.number, which))
                    layout_of = (wave.layout_skip, wave.layout2)[which]
                    indices.append(wave.index(which, layout_of, channels, device, self.ops))
            layout = self._layouts[key] = (torch.cat(indices), keys, [len(i) for i in indices])
        index, keys, sizes = layout
        return mixing.scale_set(reduction, channels, index, keys, sizes)

    def ensure_buffers(self) -> None:
        """(Re)point the BatchNorm buffers at flat storage if they are not already."""
        for wave in self.waves:
            if wave.stats1 is None or not wave.stats1.valid():
                wave.stats1 = _FlatStatistics(wave.bn1_modules)
            if wave.stats2 is None or not wave.stats2.valid():
                wave.stats2 = _FlatStatistics(wave.bn2_modules)
        if self.counters is None or not self.counters.valid():
            self.counters = _Counters(self.norms)


def check_lean_structure(cell: Any) -> None:
    """Raise :class:`ValueError` unless ``cell`` has the standard DARTS edges the lean path batches."""
    from rnasframe.spaces.darts.operations import DilConv, SepConv

    for index, edge in enumerate(cell.edges):
        ops = edge.ops
        ok = (
            len(ops) == len(PRIMITIVES)
            and all(isinstance(ops[k], SepConv) for k in (_SEP3, _SEP5))
            and all(isinstance(ops[k], DilConv) for k in (_DIL3, _DIL5))
            and all(not m.affine for m in ops.modules() if isinstance(m, nn.BatchNorm2d))
        )
        if not ok:
            raise ValueError(
                f"SupernetOptions.lean=True needs DARTS' standard mixed edges (operations {PRIMITIVES} "
                f"with non-affine BatchNorms); edge {index} of {type(cell).__name__} differs. Use "
                "SupernetOptions(lean=False)."
            )


def _plan(cell: Any) -> _CellPlan:
    plan = cell.__dict__.get("_lean_plan")
    if plan is None:
        check_lean_structure(cell)
        plan = _CellPlan(cell)
        cell.__dict__["_lean_plan"] = plan
    plan.ensure_buffers()
    return plan


def _batch_norm(x: Tensor, stats: _FlatStatistics, weight: Optional[Tensor]) -> Tensor:
    training, tracking, momentum, eps = _bn_settings(stats.modules)
    keep = not training or tracking
    return F.batch_norm(
        x,
        stats.mean if keep else None,
        stats.var if keep else None,
        weight,
        None,
        training or stats.mean is None,
        0.0 if momentum is None else momentum,
        eps,
    )


def _depthwise(
    x: Tensor, weight: Tuple[Tensor, Optional[Tensor]], stride: int, padding: int, dilation: int, fast: bool
) -> Tensor:
    """A depthwise convolution with a grouped weight ``(weight, flipped or None)`` of :meth:`_Wave.weight`.

    On the CPU (``fast``) kernels wider than 3 use the reformulated backward passes of
    :mod:`~rnasframe.spaces.darts.fastops`; at the wave's width oneDNN's own backward kernels of
    3x3 convolutions are as fast as the reformulation and take fewer operators.
    """
    w, flipped = weight
    if fast and dilation == 1 and w.shape[-1] > 3:
        return fastops.depthwise_conv2d(x, w, stride, padding, flipped)
    return F.conv2d(x, w, None, stride, padding, dilation, x.shape[1])


def _subsampled(x: Tensor, odd: bool) -> Tensor:
    """``x[..., ::2, ::2]`` (``odd=False``) or ``x[..., 1::2, 1::2]`` zero-padded to the same size."""
    if not odd:
        return x[:, :, ::2, ::2]
    part = x[:, :, 1::2, 1::2]
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        part = F.pad(part, (0, pad_w, 0, pad_h))
    return part


def factorized_reduce(op: FactorizedReduce, x: Tensor, channels_last: bool) -> Tensor:
    """:class:`~rnasframe.spaces.darts.operations.FactorizedReduce` with its stride-2 1x1 convolutions on
    subsampled inputs (a stride-1 convolution on ``x[..., ::2, ::2]`` and on the shifted phase)."""
    r = F.relu(x)
    even, odd = _subsampled(r, False), _subsampled(r, True)
    if channels_last:
        even = even.contiguous(memory_format=torch.channels_last)
        odd = odd.contiguous(memory_format=torch.channels_last)
    out = torch.cat([F.conv2d(even, op.conv_1.weight), F.conv2d(odd, op.conv_2.weight)], dim=1)
    return op.bn(out)


def _preprocess(module: nn.Module, x: Tensor, channels_last: bool) -> Tensor:
    if isinstance(module, FactorizedReduce):
        return factorized_reduce(module, x, channels_last)
    assert isinstance(module, ReLUConvBN)
    return module(x)


def _replicate(states: Sequence[Tensor], copies: int) -> Tensor:
    """``cat([s] * copies for s in states)`` along channels: one copy per edge of the wave."""
    return _cat([s for s in states for _ in range(copies)])


def _wave(
    wave: _Wave,
    states: Sequence[Tensor],
    scales: Dict[Tuple[int, int], Tensor],
    fast: bool,
    channels_last: bool,
) -> Tensor:
    """The contributions ``(N, len(targets), C, H', W')`` of every edge of ``wave`` to its targets.

    ``scales``: the cell's scale vectors (:meth:`_CellPlan.scales`).
    """
    n, c = states[0].shape[0], states[0].shape[1]
    m, e, s = len(wave.sources), len(wave.targets), wave.stride
    count = wave.count

    def weights(name: str, groups: Sequence[Sequence[nn.Module]], flip: bool, ahead: bool = False) -> Any:
        params = [cast(Tensor, m_.weight) for group in groups for m_ in group]
        return wave.weights(name, params, len(groups), flip, ahead)

    # The depthwise kernels of the wave gathered by shape: 3x3 (first and second of sep_conv_3x3,
    # dil_conv_3x3) and 5x5 (the same of the 5x5 operations); on the CPU the 5x5 ones are also
    # flipped at once for their input gradients.
    sep3a, sep3b, dil3 = weights("k3", (wave.dw1[0], wave.dw2[0], wave.dw1[2]), fast)
    sep5a, sep5b, dil5 = weights("k5", (wave.dw1[1], wave.dw2[1], wave.dw1[3]), fast, ahead=True)
    # The rectified states, one copy per edge (the raw states are never replicated).
    r = _replicate([F.relu(state) for state in states], e)
    # Stage 1 of every convolution kind, then one block-diagonal pointwise convolution.
    if fast and s == 2:
        # A stride-2 dilation-2 convolution reads the even-even phase only: an undilated
        # stride-1 convolution on it (oneDNN's dilated depthwise kernels are slow on the CPU).
        even = fastops.even_phase(r)
        dilated = [
            _depthwise(even, dil3, 1, 1, 1, fast),
            _depthwise(even, dil5, 1, 2, 1, fast),
        ]
    elif fast and s == 1:
        dilated = [
            fastops.dilated_depthwise_conv2d(r, *dil3),
            fastops.dilated_depthwise_conv2d(r, *dil5),
        ]
    else:
        dilated = [
            _depthwise(r, dil3, s, 2, 2, fast),
            _depthwise(r, dil5, s, 4, 2, fast),
        ]
    d1 = _cat(
        [
            _depthwise(r, sep3a, s, 1, 1, fast),
            _depthwise(r, sep5a, s, 2, 1, fast),
            *dilated,
        ]
    )
    p1 = F.conv2d(d1, weights("pw1", (wave.pw1,), False)[0][0], groups=4 * count)
    sep, dil = p1.split([2 * count * c, 2 * count * c], dim=1)
    if channels_last and fast:
        # A channel slice of a channels-last tensor is strided; the CPU batch-norm kernels are
        # several times slower on it than the copy costs (``fast``: CPU only).
        sep = sep.contiguous(memory_format=torch.channels_last)
    # Stage 2 of the separable convolutions (their middle BatchNorm has no scale).
    h3, h5 = F.relu(_batch_norm(sep, wave.stats1, None)).split([count * c, count * c], dim=1)  # type: ignore[arg-type]
    d2 = _cat(
        [
            _depthwise(h3, sep3b, 1, 1, 1, fast),
            _depthwise(h5, sep5b, 1, 2, 1, fast),
        ]
    )
    p2 = F.conv2d(d2, weights("pw2", (wave.pw2,), False)[0][0], groups=2 * count)
    # Every operation that ends in a BatchNorm, scaled by its mixing weight, in one call.
    # Pooling once per state; the concatenation repeats each result for the state's edges.
    pooled_max = [F.max_pool2d(state, 3, s, 1) for state in states]
    pooled_avg = [F.avg_pool2d(state, 3, s, 1, count_include_pad=False) for state in states]
    parts = [p for p in pooled_max for _ in range(e)] + [p for p in pooled_avg for _ in range(e)] + [p2, dil]
    if s == 2:
        # Factorized reduction of every edge: groups (edge, half) read the even / odd subsample.
        even, odd = _subsampled(r, False), _subsampled(r, True)
        z = torch.stack([even.unflatten(1, (count, c)), odd.unflatten(1, (count, c))], dim=2).flatten(1, 3)
        if channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        halves = [w for op in wave.reduce for w in (op.conv_1.weight, op.conv_2.weight)]
        reduce_weight = wave.weights("reduce", halves, 1, False)[0][0]
        parts.append(F.conv2d(z, reduce_weight, groups=2 * count))
    scale2 = scales[(wave.number, 1)]
    scaled = _cat(parts)
    if scaled.dtype != scale2.dtype:  # bfloat16 under autocast: mix in the weights' float32
        scaled = scaled.to(scale2.dtype)
    b2 = _batch_norm(scaled, wave.stats2, scale2)  # type: ignore[arg-type]
    hh, ww = b2.shape[-2:]
    if channels_last:
        # Reduce in the NHWC layout, so that the gradient reaching the BatchNorm is channels-last
        # like its input: torch 2.14's CPU batch-norm backward gives wrong input and weight
        # gradients for a channels-last input with a contiguous (NCHW) output gradient.
        total = b2.permute(0, 2, 3, 1).view(n, hh, ww, wave.kinds2 * m, e, c).sum(3).permute(0, 3, 4, 1, 2)
    else:
        total = b2.view(n, wave.kinds2 * m, e, c, hh, ww).sum(1)
    if s == 1:
        skip = scales[(wave.number, 0)]
        states = [s if s.dtype == skip.dtype else s.to(skip.dtype) for s in states]
        if m == 1:
            identity = states[0].unsqueeze(1) * skip.view(1, e, c, 1, 1)
        else:
            identity = (torch.stack(list(states), 1).unsqueeze(2) * skip.view(1, m, e, c, 1, 1)).sum(1)
        total = total + identity
    return total


def lean_cell_forward(
    cell: Any, s0: Tensor, s1: Tensor, mixing: LeanMixing, fast: bool, channels_last: bool
) -> Tensor:
    """The output of a :class:`~rnasframe.spaces.darts.supernet.SearchCell`, computed in waves.

    Args:
        cell: the cell (its modules hold every parameter and buffer used).
        s0: output of the cell two back.
        s1: output of the previous cell.
        mixing: the mixing weights of this forward pass.
        fast: use the CPU depthwise reformulations of :mod:`~rnasframe.spaces.darts.fastops`.
        channels_last: keep the reshuffled tensors in ``torch.channels_last`` layout.
    """
    plan = _plan(cell)
    states = [_preprocess(cell.preprocess0, s0, channels_last), _preprocess(cell.preprocess1, s1, channels_last)]
    counters = plan.counters
    norm = plan.norms[0]
    if counters is not None and counters.flat is not None and norm.training and norm.track_running_stats:
        counters.flat.add_(1)
    scales = plan.scales(mixing, cell.reduction, states[0].shape[1], states[0].device)
    nodes: List[Tensor] = []
    pending: Optional[Tensor] = None  # partial sums of the nodes not complete yet, (N, e * C, H, W)
    for index, wave in enumerate(plan.waves):
        inputs = states if index == 0 else [nodes[-1]]
        contribution = _wave(wave, inputs, scales, fast, channels_last).flatten(1, 2)
        pending = contribution if pending is None else pending + contribution
        channels = states[0].shape[1]
        if pending.shape[1] == channels:
            nodes.append(pending)
        else:
            node, pending = pending.split([channels, pending.shape[1] - channels], dim=1)
            nodes.append(node)
    return _cat(nodes[-cell.multiplier :])
