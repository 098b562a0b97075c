"""The discrepancy ``f(m(x'), m(x))`` between perturbed and natural outputs."""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import Tensor

__all__ = ["Similarity"]


class Similarity(abc.ABC):
    """A discrepancy between the model's outputs on perturbed and on natural inputs.

    Despite the paper's name ("similarity"), every implementation is a *discrepancy*: a scalar
    that is ``>= 0`` and ``0`` when the two outputs are equal, so that RNAS maximizes it in the
    inner problem and minimizes it in the outer ones. Both arguments are raw logits of shape
    ``(batch, classes)``; :attr:`acts_on` documents what the metric compares (``"logits"`` or
    ``"probabilities"``, i.e. after a softmax it applies itself). The result is a batch mean.

    Subclasses implement :meth:`compute`.
    """

    #: What the metric compares, ``"logits"`` or ``"probabilities"`` (the softmax of the logits).
    acts_on: ClassVar[str] = "logits"

    def __call__(self, perturbed_logits: Tensor, natural_logits: Tensor) -> Tensor:
        """Return the batch-mean discrepancy between ``perturbed_logits`` and ``natural_logits``."""
        if perturbed_logits.shape != natural_logits.shape:
            raise ValueError(
                f"{type(self).__name__}: perturbed and natural logits must have the same shape, got "
                f"{tuple(perturbed_logits.shape)} and {tuple(natural_logits.shape)}"
            )
        if perturbed_logits.dim() != 2:
            raise ValueError(
                f"{type(self).__name__}: logits must have shape (batch, classes), got "
                f"{tuple(perturbed_logits.shape)}"
            )
        return self.compute(perturbed_logits, natural_logits)

    @abc.abstractmethod
    def compute(self, perturbed_logits: Tensor, natural_logits: Tensor) -> Tensor:
        """Return the batch-mean discrepancy (a scalar tensor, differentiable in both arguments)."""
