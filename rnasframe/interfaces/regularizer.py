"""Terms added to the task loss: ``L = CE(m(x), y) + sum_i weight_i * R_i``."""

from __future__ import annotations

import abc
from typing import Any, Dict, Mapping, Union

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

    A regularizer whose perturbation keeps a per-example store (see
    :class:`~rnasframe.interfaces.Perturbation`) overrides :attr:`uses_example_index`,
    :meth:`bind_examples`, :meth:`state_dict` and :meth:`load_state_dict` (as
    :class:`~rnasframe.regularizers.PerturbationConsistency` does, by asking its perturbation)
    and accepts a keyword ``index`` in :meth:`__call__`; the objective passes ``index=`` only to
    regularizers that use it, so one written against ``__call__(model, x, y, logits)`` keeps
    working.
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

        Subclasses that set :attr:`uses_example_index` also take ``index: Optional[Tensor] =
        None``, the examples' positions in the search data (int64, shape ``(batch,)``).
        """

    @property
    def uses_example_index(self) -> bool:
        """Whether :meth:`__call__` takes the batch's example indices (default: ``False``)."""
        return False

    def bind_examples(self, count: int, key: str) -> None:
        """Pass the search data's size and split fingerprint on to the stores (default: nothing).

        See :meth:`~rnasframe.interfaces.Perturbation.bind_examples`.
        """
        del count, key  # no store: nothing to bind

    def state_dict(self) -> Dict[str, Any]:
        """Per-example state for the search checkpoint (default: empty)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (default: only an empty state is accepted)."""
        if state:
            raise ValueError(f"{self.name} keeps no per-example state, but was given entries {sorted(state)}")

