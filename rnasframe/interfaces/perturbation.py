"""Threat models and perturbations: how ``x'`` is made from ``x``.

Two small interfaces:

* :class:`NormBall` — a set ``{x' : ||x' - x|| <= epsilon}`` that knows how to project onto
  itself intersected with the pixel range [0, 1], sample uniformly inside itself and take one
  steepest-ascent step. The paper's samplers (:class:`~rnasframe.perturbations.PGDMaximizer`,
  :class:`~rnasframe.perturbations.UniformSampler`) work with any ball.
* :class:`Perturbation` — turns a batch ``x`` and a function to maximize into ``x'``. Subclasses
  implement one method, :meth:`Perturbation.perturb`; the base class' :meth:`Perturbation.__call__`
  owns what every subclass would otherwise get wrong.

A perturbation may keep a *store*: state per training example that carries over from one visit
of the example to the next (:class:`~rnasframe.perturbations.WarmStartPGD` keeps its last
``x' - x``). Such a perturbation says so with :attr:`Perturbation.uses_example_index`; the search
then passes every batch's example indices (``index=``, positions in the search data's full
training set), tells it the size of that set once (:meth:`Perturbation.bind_examples`) and keeps
its :meth:`Perturbation.state_dict` in the checkpoint. Perturbations without a store ignore all
of this: the defaults do nothing.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

import torch
from torch import Tensor, nn

from rnasframe.model_state import input_gradients_only

__all__ = [
    "NormBall",
    "Perturbation",
    "PerturbationObjective",
    "check_example_index",
    "check_pixel_range",
    "read_only_stores",
    "stores_read_only",
]

#: A function of the perturbed batch ``x'`` returning a scalar to maximize.
PerturbationObjective = Callable[[Tensor], Tensor]

_PIXEL_TOLERANCE = 1e-6

_READ_ONLY_STORES: contextvars.ContextVar[bool] = contextvars.ContextVar("rnasframe_read_only_stores", default=False)


@contextlib.contextmanager
def read_only_stores() -> Iterator[None]:
    """Inside this block, perturbations read their per-example stores but do not write them.

    For evaluations of an objective that are not visits of the batch: second-order DARTS
    (:class:`~rnasframe.bilevel.SecondOrderDarts`) evaluates the training loss at ``w``, ``w+``
    and ``w-`` before the weight step; inside this block all three start from the same stored
    state, and the store is written once per step, by the weight step itself, as in first-order
    DARTS.
    """
    token = _READ_ONLY_STORES.set(True)
    try:
        yield
    finally:
        _READ_ONLY_STORES.reset(token)


def stores_read_only() -> bool:
    """True inside a :func:`read_only_stores` block (stateful perturbations then skip their writes)."""
    return _READ_ONLY_STORES.get()


def check_example_index(index: Any, batch: int, owner: str) -> Tensor:
    """Return ``index`` after checking it is an integer tensor of shape ``(batch,)``; else one-line error.

    ``index`` holds the positions of a batch's examples in the search data's full training set
    (:meth:`~rnasframe.data.BatchLoader.epoch` with ``with_indices=True``).
    """
    if not isinstance(index, Tensor) or index.dtype not in (torch.int64, torch.int32):
        got = f"a {index.dtype} tensor" if isinstance(index, Tensor) else type(index).__name__
        raise TypeError(f"{owner}: index must be an int64 tensor of example positions, got {got}")
    if index.shape != (batch,):
        raise ValueError(
            f"{owner}: index must have shape ({batch},), one position per example of the batch, "
            f"got {tuple(index.shape)}"
        )
    return index


def check_pixel_range(x: Tensor, name: str = "x") -> None:
    """Raise :class:`ValueError` unless every element of ``x`` lies in [0, 1].

    rnasframe measures epsilon in pixel units of [0, 1] images; inputs normalized in the data
    transform (instead of inside the model) are the most common cause of this error.

    It runs before every perturbation, so it never waits for an accelerator: there the check is
    enqueued with ``torch._assert_async`` (a violation surfaces as a device-side assertion
    carrying this message at the next synchronization). On the CPU nothing runs asynchronously,
    so the range is read at once (one fused minimum-and-maximum pass, then two reads of host
    memory) and the error is raised here, naming the values found.
    """
    if x.numel() == 0:
        return
    with torch.no_grad():
        low, high = torch.aminmax(x)
        if x.device.type != "cpu":
            torch._assert_async(
                (low >= -_PIXEL_TOLERANCE) & (high <= 1 + _PIXEL_TOLERANCE),
                f"{name} must hold pixels in [0, 1] (epsilon is in pixel units; normalize inside the "
                "model, not in the data transform)",
            )
            return
    lowest, highest = float(low), float(high)
    if not (lowest >= -_PIXEL_TOLERANCE and highest <= 1 + _PIXEL_TOLERANCE):  # NaN fails too
        raise ValueError(
            f"{name} must hold pixels in [0, 1] (epsilon is in pixel units; normalize inside the "
            f"model, not in the data transform); got values in [{lowest:.4g}, {highest:.4g}]"
        )


class NormBall(abc.ABC):
    """A threat model: the ball ``{x' : ||x' - x|| <= epsilon}`` around each image of a batch.

    Norms are taken per example over all non-batch dimensions. Subclasses are frozen attrs
    classes with an ``epsilon`` field (pixel units of [0, 1] images).
    """

    epsilon: float

    @abc.abstractmethod
    def project(self, x_perturbed: Tensor, x: Tensor) -> Tensor:
        """Return the projection of ``x_perturbed`` onto the ball around ``x`` intersected with [0, 1]."""

    @abc.abstractmethod
    def sample(self, x: Tensor) -> Tensor:
        """Return a point drawn uniformly from the ball around each example of ``x``, clipped to [0, 1].

        Uses torch's global random generator on ``x``'s device (seed it for reproducibility).
        """

    @abc.abstractmethod
    def ascent_step(self, x_perturbed: Tensor, gradient: Tensor, step_size: float) -> Tensor:
        """Return ``x_perturbed`` moved by ``step_size`` along the steepest-ascent direction of this norm.

        The result is not projected; the caller projects it.
        """


class Perturbation(abc.ABC):
    """Turns a batch ``x`` and a function to maximize into a perturbed batch ``x'``.

    Contract of :meth:`__call__` (enforced here, so subclasses need not):

    * ``x`` must hold pixels in [0, 1]; the result has ``x``'s shape and dtype, lies in [0, 1]
      and is detached (a constant for the outer loss);
    * ``x`` itself is never modified;
    * when ``model`` is given, gradients are taken with respect to the input only: no gradient is
      left in any parameter (weights or architecture), and the model's ``requires_grad`` flags,
      every submodule's train/eval mode and its buffers (BatchNorm running statistics) are
      restored afterwards, even on an exception. The mode is not switched: during the search the
      supernet stays in train mode, so ``x'`` maximizes exactly the function the outer loss uses.

    Subclasses implement :meth:`perturb` and keep their result inside their threat model.

    A subclass that keeps a per-example store overrides :attr:`uses_example_index` (to return
    ``True``), :meth:`bind_examples`, :meth:`state_dict` and :meth:`load_state_dict`, and its
    :meth:`perturb` takes a keyword ``index`` (``None`` when the caller has no indices).
    """

    def __call__(
        self,
        x: Tensor,
        objective: PerturbationObjective,
        model: Optional[nn.Module] = None,
        index: Optional[Tensor] = None,
    ) -> Tensor:
        """Return ``x'`` for the batch ``x``; see the class docstring for the guarantees.

        Args:
            x: the natural batch, pixels in [0, 1].
            objective: maps a candidate ``x'`` to a scalar to maximize.
            model: the network the objective runs (guarded: see the class docstring).
            index: the examples' positions in the search data (int64, shape ``(batch,)``);
                passed on to :meth:`perturb` only when :attr:`uses_example_index` is true, so
                perturbations without a store never see it.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
        check_pixel_range(x)
        x = x.detach()
        if index is not None:
            index = check_example_index(index, x.shape[0], type(self).__name__)
        guard = input_gradients_only(model) if model is not None else contextlib.nullcontext()
        with guard, torch.enable_grad():
            if self.uses_example_index:
                x_perturbed = self.perturb(x, objective, index=index)  # type: ignore[call-arg]
            else:
                x_perturbed = self.perturb(x, objective)
        if x_perturbed.shape != x.shape:
            raise RuntimeError(
                f"{type(self).__name__}.perturb returned shape {tuple(x_perturbed.shape)}, "
                f"expected the input's shape {tuple(x.shape)}"
            )
        return x_perturbed.detach().to(x.dtype).clamp_(0.0, 1.0)

    @abc.abstractmethod
    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        """Return the perturbed batch for ``x`` (detached, pixels in [0, 1]).

        Args:
            x: the natural batch, pixels in [0, 1]; do not modify it in place.
            objective: maps a candidate ``x'`` (same shape as ``x``) to a scalar to maximize.
                Samplers that ignore it (uniform noise) may never call it.
        """

    @property
    def uses_example_index(self) -> bool:
        """Whether :meth:`perturb` takes the batch's example indices (``False``: no store).

        The search asks its loaders for indices only when some perturbation says ``True``.
        """
        return False

    def bind_examples(self, count: int, key: str) -> None:
        """Learn the size of the data whose examples ``index`` points into (default: nothing).

        The search calls it once before the first step with ``count``, the number of examples
        of its data source's training set, and ``key``, a fingerprint of the data split: a
        store made for another split (another key or count) must be reset.
        """
        del count, key  # no store: nothing to bind

    def state_dict(self) -> Dict[str, Any]:
        """The store, for the search checkpoint (tensors and plain values; default: empty)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (default: only an empty state is accepted)."""
        if state:
            raise ValueError(
                f"{type(self).__name__} keeps no store, but was given one with entries {sorted(state)}"
            )
