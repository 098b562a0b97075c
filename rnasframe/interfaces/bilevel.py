"""Bi-level optimizers: one search step given a training and a validation batch."""

from __future__ import annotations

import abc
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from torch import Tensor, nn

from rnasframe.interfaces.search_space import Supernet

__all__ = ["BilevelOptimizer", "Batch", "call_objective", "split_batch"]

#: ``(inputs, labels)`` or ``(inputs, labels, index)``: inputs are pixels in [0, 1]; ``index``
#: (int64, shape ``(batch,)``) holds the examples' positions in the search data's training set
#: and is present when the objective asked for it (``objective.uses_example_index``).
Batch = Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]


def split_batch(batch: Batch) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """``(x, y, index)`` of a two- or three-element batch (``index`` is ``None`` for two)."""
    if len(batch) == 2:
        x, y = batch
        return x, y, None
    if len(batch) == 3:
        x, y, index = batch
        return x, y, index
    raise ValueError(f"a batch is (x, y) or (x, y, index), got {len(batch)} elements")


def call_objective(objective: Any, model: nn.Module, batch: Batch) -> Any:
    """``objective(model, x, y)``, or with ``index=`` when the batch carries example indices.

    Bi-level optimizers evaluate their objective through this function so that per-example
    stores (warm-started perturbations) see the indices, while objectives written against
    ``objective(model, x, y)`` keep working on two-element batches.
    """
    x, y, index = split_batch(batch)
    if index is None:
        return objective(model, x, y)
    return objective(model, x, y, index=index)


class BilevelOptimizer(abc.ABC):
    """Alternates architecture (``alpha``) and weight (``w``) updates, as DARTS does.

    Life cycle: :meth:`setup` once with the supernet, then :meth:`step` for every pair of batches
    and :meth:`end_epoch` after every epoch. :meth:`state_dict` / :meth:`load_state_dict` capture
    everything needed to resume bit-exactly (optimizer moments, scheduler position).
    """

    @abc.abstractmethod
    def setup(self, supernet: Supernet, epochs: int) -> None:
        """Create the inner optimizers and schedulers for ``supernet`` and a search of ``epochs`` epochs."""

    @abc.abstractmethod
    def step(
        self,
        supernet: Supernet,
        objective: Any,
        train_batch: Batch,
        valid_batch: Batch,
        update_arch: bool,
    ) -> Dict[str, Tensor]:
        """Run one search step and return metrics to log (0-d tensors, left on the device: no host sync).

        Args:
            supernet: the supernet given to :meth:`setup`.
            objective: a :class:`~rnasframe.objective.RobustObjective` (callable
                ``objective(model, x, y) -> ObjectiveOutput``, and ``objective(model, x, y,
                index=index)`` for batches with indices: use :func:`call_objective`).
            train_batch: the batch for the ``w`` update.
            valid_batch: the batch for the ``alpha`` update.
            update_arch: ``False`` during warm-up: only ``w`` is updated and ``valid_batch`` is unused.
        """

    @abc.abstractmethod
    def end_epoch(self) -> None:
        """Advance per-epoch schedules (the learning rate of ``w``)."""

    @property
    @abc.abstractmethod
    def weight_learning_rate(self) -> float:
        """The current learning rate of ``w``."""

    @abc.abstractmethod
    def state_dict(self) -> Dict[str, Any]:
        """Return the optimizer state (tensors and plain Python values only)."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state returned by :meth:`state_dict`."""
