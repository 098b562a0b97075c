"""Regularizers: terms added to the task loss. The RNAS term lives here."""

from __future__ import annotations

from typing import Optional

import attrs
import gin
import torch
from torch import Tensor, nn

from rnasframe import validation
from rnasframe.interfaces.perturbation import Perturbation
from rnasframe.interfaces.regularizer import Regularizer, RegularizerOutput
from rnasframe.interfaces.similarity import Similarity

__all__ = ["PerturbationConsistency"]


def _default_perturbation() -> Perturbation:
    from rnasframe.perturbations import PGDMaximizer

    return PGDMaximizer()


def _default_similarity() -> Similarity:
    from rnasframe.similarity import KLSimilarity

    return KLSimilarity()


@gin.configurable
@attrs.define(frozen=True)
class PerturbationConsistency(Regularizer):
    """The RNAS regularizer ``R = f(m(x'), m(x))`` with ``x'`` from a perturbation (paper Eq. 4, 5).

    ``x'`` is made by ``perturbation`` maximizing ``x_ -> f(m(x_), m(x).detach())`` inside its
    threat model (RNAS-max: :class:`~rnasframe.perturbations.PGDMaximizer`; RNAS-uniform:
    :class:`~rnasframe.perturbations.UniformSampler`). ``x'`` is then a constant, and ``R`` is
    computed with gradients flowing through *both* branches, ``m(x')`` and ``m(x)`` (the natural
    logits are not detached in the outer loss).

    Args:
        perturbation: how ``x'`` is made (default: 10-step PGD, step 0.003, L-inf epsilon 0.031).
        similarity: the discrepancy ``f`` (default: TRADES' KL).
        weight: lambda, ``>= 0`` (the paper uses 1.0; 0 disables the term at no cost).
        label: name used in logs (default: the class name).
    """

    perturbation: Perturbation = attrs.field(
        factory=_default_perturbation, validator=attrs.validators.instance_of(Perturbation)
    )
    similarity: Similarity = attrs.field(
        factory=_default_similarity, validator=attrs.validators.instance_of(Similarity)
    )
    weight: float = attrs.field(
        default=1.0, validator=validation.at_least(0.0, "lambda, the regularization coefficient")
    )
    label: Optional[str] = None

    @property
    def name(self) -> str:
        """Prefix of the logged metrics (``label`` or ``"PerturbationConsistency"``)."""
        return self.label or type(self).__name__

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> RegularizerOutput:
        """Return ``f(m(x'), m(x))`` and the accuracy on ``x'``."""
        target = logits.detach()
        similarity = self.similarity
        x_perturbed = self.perturbation(x, lambda candidate: similarity(model(candidate), target), model=model)
        perturbed_logits = model(x_perturbed)
        value = similarity(perturbed_logits, logits)
        with torch.no_grad():
            accuracy = (perturbed_logits.argmax(dim=1) == y).float().mean()
        return RegularizerOutput(value=value, metrics={"perturbed_acc": accuracy})
