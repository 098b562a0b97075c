"""Warm-started PGD: a few ascent steps per visit, continuing from where the last visit stopped."""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import attrs
import gin
import torch
import torch.distributed as dist
from torch import Tensor

from rnasframe import distributed
from rnasframe.interfaces.perturbation import NormBall, Perturbation, PerturbationObjective, stores_read_only
from rnasframe.perturbations.balls import LinfBall, is_norm_ball
from rnasframe.perturbations.pgd import projected_ascent_step, step_factor
from rnasframe.validation import positive_int

__all__ = ["WarmStartPGD"]

_LOG = logging.getLogger(__name__)


class _Store:
    """The mutable part of a :class:`WarmStartPGD`: what it is bound to and the stored ``x' - x``.

    ``delta`` is ``(count, *example_shape)`` and ``visited`` ``(count,)`` bool; both are made at
    the first call with an index (the example shape, dtype and device are known only then).
    """

    __slots__ = ("count", "delta", "key", "visited")

    def __init__(self) -> None:
        self.count: Optional[int] = None
        self.key: Optional[str] = None
        self.delta: Optional[Tensor] = None
        self.visited: Optional[Tensor] = None


@gin.configurable
@attrs.define(frozen=True)
class WarmStartPGD(Perturbation):
    """PGD that keeps each training example's perturbation and continues from it at the next visit.

    The inner maximizer of "free" adversarial training (Shafahi et al., 2019) and of the
    transferable perturbations of Zheng et al. ("Efficient adversarial training with transferable
    adversarial examples", 2020), carried across epochs of the search: for a batch with example
    indices ``index`` it starts from the example's stored ``delta`` (projected onto the ball
    around today's ``x``, which may be another crop or flip of the same image: the stored
    perturbation is not transformed with the image), takes ``steps``
    projected ascent steps of length ``alpha * ball.epsilon`` and stores the final ``x' - x``::

        x' = ball.project(x + store[index], x)       # ball.sample(x) at an example's first visit
        repeat steps times:                           # g: the objective's gradient at x'
            x' = ball.project(ball.ascent_step(x', g, alpha * ball.epsilon), x)
        store[index] = x' - x

    Over ``e`` visits an example thus gets ``e * steps`` ascent steps at ``steps`` per visit's
    cost. The first visit starts from a uniform point of the ball, not from ``delta = 0``: a
    discrepancy objective such as ``KL(m(x) || m(x'))`` has a zero gradient at ``x' = x`` (its
    minimum), where a first step would follow rounding noise (as
    :class:`~rnasframe.perturbations.PGDMaximizer` explains).

    The store holds one ``delta`` per example of the search data's *full* training set (both
    halves of the split index it), on the batch's device, in the batch's dtype: ``4 * N * C * H
    * W`` bytes in float32 (614 MB for CIFAR-10's 50,000 images). The search binds it to the data
    (:meth:`bind_examples`, which empties it: every search starts afresh), keeps it in its
    checkpoint (:meth:`state_dict`) and passes every batch's ``index``; a store of another split
    is reset with a log line. In data-parallel runs each write is gathered from every rank, so
    every rank holds the whole store.

    Called without an index (the conformance kit, an evaluation, a training objective) before any
    binding, it is PGD with ``steps`` steps from a random start and reads or writes nothing; once
    bound, a call without an index is an error (the indices were lost on the way).

    Attributes:
        ball: the threat model (default: ``LinfBall()``, epsilon = 0.031).
        steps: K', the ascent steps per visit (default 1: one forward and input-backward pass per
            ``x'``, as FGSM, which keeps a search step near 3x DARTS' cost, while the warm start
            accumulates the steps across epochs).
        alpha: the step length in units of the ball's radius, in (0, 2] (default 1.0: free
            adversarial training's step of epsilon per replay from the carried perturbation; less
            than FGSM's 1.25 because the start is already adversarial, so a longer step mostly ends
            in the projection).

    Example:
        >>> warm = WarmStartPGD(ball=LinfBall(epsilon=8 / 255))
        >>> warm.bind_examples(100, "my split")
        >>> x, weights = torch.rand(4, 3, 8, 8), torch.randn(3, 8, 8)
        >>> x_adv = warm(x, lambda z: (z * weights).sum(), index=torch.tensor([3, 14, 15, 92]))
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
        >>> torch.equal(warm.state_dict()["delta"][[3, 14, 15, 92]], x_adv - x)
        True
    """

    ball: NormBall = attrs.field(factory=LinfBall, validator=is_norm_ball)
    steps: int = attrs.field(default=1, validator=positive_int)
    alpha: float = attrs.field(default=1.0, validator=step_factor)
    _store: _Store = attrs.field(init=False, factory=_Store, eq=False, repr=False)

    @property
    def uses_example_index(self) -> bool:
        """Always true: the store is read and written at the batch's example indices."""
        return True

    @property
    def count(self) -> Optional[int]:
        """The number of examples the store is bound to (``None`` before :meth:`bind_examples`)."""
        return self._store.count

    def bind_examples(self, count: int, key: str) -> None:
        """Bind the store to ``count`` examples of the data split ``key``, with every entry empty.

        Every binding starts an empty store, so that a new search never inherits the
        perturbations of an earlier one (a resumed search binds, then restores its checkpoint's
        store with :meth:`load_state_dict`). Dropping a store of another split (another count
        or key) is logged.

        Raises:
            ValueError: ``count`` is not an integer >= 1.
            TypeError: ``key`` is not a string.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"WarmStartPGD.bind_examples: count must be an integer >= 1, got {count!r}")
        if not isinstance(key, str):
            raise TypeError(f"WarmStartPGD.bind_examples: key must be a string, got {type(key).__name__}")
        store = self._store
        if store.delta is not None and (store.count, store.key) != (count, key):
            _LOG.warning(
                "WarmStartPGD: the data split changed (%s examples of split %s -> %s examples of split %s); "
                "the stored perturbations are reset",
                store.count, store.key, count, key,
            )
        store.count, store.key, store.delta, store.visited = count, key, None, None

    def state_dict(self) -> Dict[str, Any]:
        """``count``, ``key``, ``delta`` and ``visited`` (empty before the first binding).

        The tensors are the live store, not copies (as a module's ``state_dict``): save or clone
        them before the next call.
        """
        store = self._store
        if store.count is None:
            return {}
        state: Dict[str, Any] = {"count": store.count, "key": store.key}
        if store.delta is not None:
            state["delta"], state["visited"] = store.delta, store.visited
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (the tensors stay where they are until the next call).

        Raises:
            ValueError: the state holds another number of examples or another split than the
                current binding, or its tensors do not match its count.
        """
        if not state:
            return
        count, key = int(state["count"]), str(state["key"])
        store = self._store
        if store.count is not None and count != store.count:
            raise ValueError(
                f"WarmStartPGD: the saved store holds {count} examples, but the search data has {store.count}"
            )
        if store.key is not None and key != store.key:
            raise ValueError(f"WarmStartPGD: the saved store belongs to split {key}, the search uses split {store.key}")
        delta, visited = state.get("delta"), state.get("visited")
        if delta is not None and (delta.shape[0] != count or visited is None or visited.shape != (count,)):
            raise ValueError(
                f"WarmStartPGD: the saved store holds {delta.shape[0]} perturbations but says {count} examples"
            )
        if delta is not None and visited is not None:  # copies: the caller's tensors are never written here
            delta, visited = delta.detach().clone(), visited.detach().clone().bool()
        store.count, store.key, store.delta, store.visited = count, key, delta, visited

    def perturb(self, x: Tensor, objective: PerturbationObjective, index: Optional[Tensor] = None) -> Tensor:
        """Take ``steps`` projected ascent steps from the stored perturbations of ``index``; store the result.

        Args:
            x: the natural batch (detached), pixels in [0, 1]; not modified.
            objective: maps a candidate batch to a scalar tensor to maximize.
            index: the examples' positions in the bound data (int64, shape ``(batch,)``); without
                it an unbound perturbation starts from a random point and stores nothing.

        Returns:
            The detached last iterate, inside ``ball`` ∩ [0, 1].

        Raises:
            ValueError: an index is missing once bound, given before binding, or outside
                ``[0, count)``; the batch's example shape differs from the store's; the objective
                does not return a scalar.
        """
        store = self._store
        if index is None and store.count is not None:
            raise ValueError(
                f"WarmStartPGD is bound to {store.count} examples but was called without index=: pass the "
                f"batch's example positions (BatchLoader.epoch(e, with_indices=True))"
            )
        with torch.no_grad():
            random_start = self.ball.sample(x)
        if index is None:
            return self._ascend(random_start, x, objective)
        delta, visited = self._entries(x, index)
        with torch.no_grad():
            start = torch.where(
                visited.view(-1, *([1] * (x.dim() - 1))), self.ball.project(x + delta, x), random_start
            )
        result = self._ascend(start, x, objective)
        if not stores_read_only():
            self._write(index.to(x.device), (result - x).detach())
        return result

    def _ascend(self, start: Tensor, x: Tensor, objective: PerturbationObjective) -> Tensor:
        step = self.alpha * float(self.ball.epsilon)
        current = start
        for _ in range(self.steps):
            current = projected_ascent_step(self.ball, current, x, objective, step, "WarmStartPGD")
        return current.detach()

    def _entries(self, x: Tensor, index: Tensor) -> Tuple[Tensor, Tensor]:
        """The stored ``delta`` (in ``x``'s dtype) and ``visited`` flags of ``index``; makes the store first."""
        store = self._store
        if store.count is None:
            raise ValueError(
                "WarmStartPGD got an index but is bound to no data: call bind_examples(count, key) first "
                "(SearchEngine does)"
            )
        if store.delta is None or store.visited is None:
            store.delta = torch.zeros((store.count, *x.shape[1:]), dtype=x.dtype, device=x.device)
            store.visited = torch.zeros(store.count, dtype=torch.bool, device=x.device)
        elif store.delta.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"WarmStartPGD: the store holds examples of shape {tuple(store.delta.shape[1:])}, the batch "
                f"{tuple(x.shape[1:])}"
            )
        if store.delta.device != x.device:
            store.delta, store.visited = store.delta.to(x.device), store.visited.to(x.device)
        index = index.to(x.device)
        _check_range(index, store.count)
        return store.delta[index].to(x.dtype), store.visited[index]

    def _write(self, index: Tensor, delta: Tensor) -> None:
        """Store ``delta`` at ``index``; in data-parallel runs, every rank's entries on every rank."""
        store = self._store
        assert store.delta is not None
        assert store.visited is not None
        if distributed.world_size() > 1:
            index, delta = _gather(index), _gather(delta)
        store.delta[index] = delta.to(store.delta.dtype)
        store.visited[index] = True


def _check_range(index: Tensor, count: int) -> None:
    """One-line error unless every index lies in ``[0, count)`` (asynchronous on accelerators)."""
    if index.numel() == 0:
        return
    message = f"WarmStartPGD: every index must lie in [0, {count}), the number of examples it is bound to"
    if index.device.type != "cpu":
        torch._assert_async((index.amin() >= 0) & (index.amax() < count), message)
        return
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= count:
        raise ValueError(f"{message}; got indices in [{low}, {high}]")


def _gather(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank (same shape on each: the loader's equal shards)."""
    parts = [torch.empty_like(tensor) for _ in range(distributed.world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
