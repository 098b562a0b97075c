"""Terms added to the task loss: ``L = CE(m(x), y) + sum_i weight_i * R_i``."""

from __future__ import annotations

import abc
from typing import Mapping, Union

import attrs
from torch import Tensor, nn

__all__ = ["Regularizer", "RegularizerOutput"]


@attrs.define(frozen=True)
class RegularizerOutput:
    """What a regularizer returns: its unweighted value and metrics to log.

    Attributes:
        value: the unweighted term ``R`` (a scalar tensor in the autograd graph).
        metrics: floats or detached scalar tensors to log, keyed by a short name (for example ``"perturbed_acc"``).
    """

    value: Tensor
    metrics: Mapping[str, Union[float, Tensor]] = attrs.field(factory=dict)


class Regularizer(abc.ABC):
    """A term added to the task loss, weighted by :attr:`weight` (the paper's lambda).

    Subclasses are frozen attrs classes with a ``weight`` field (``>= 0``) and implement
    :meth:`__call__`. A regularizer with ``weight == 0`` is skipped entirely by
    :class:`~rnasframe.objective.RobustObjective` (no extra forward pass), so lambda = 0 is plain
    DARTS at no cost.
    """

    weight: float

    @property
    def name(self) -> str:
        """Short name used as the prefix of logged metrics."""
        return type(self).__name__

    @abc.abstractmethod
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> RegularizerOutput:
        """Return the term for a batch.

        Args:
            model: the network being trained (the supernet during the search).
            x: the natural batch, pixels in [0, 1].
            y: its labels.
            logits: ``model(x)``, computed once by the objective and still in the graph; use it
                instead of running the model on ``x`` again.
        """
