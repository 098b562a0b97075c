"""Regularizers: terms added to the task loss. The RNAS term lives here."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

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

    @property
    def uses_example_index(self) -> bool:
        """Whether the perturbation keeps a per-example store (and so needs the batch's indices)."""
        return self.perturbation.uses_example_index

    def bind_examples(self, count: int, key: str) -> None:
        """Tell the perturbation the search data's size and split fingerprint."""
        self.perturbation.bind_examples(count, key)

    def state_dict(self) -> Dict[str, Any]:
        """The perturbation's store (empty for perturbations without one)."""
        return self.perturbation.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the perturbation's store."""
        self.perturbation.load_state_dict(state)

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor, index: Optional[Tensor] = None
    ) -> RegularizerOutput:
        """Return ``f(m(x'), m(x))`` and the accuracy on ``x'``.

        ``index`` (the examples' positions in the search data) is handed to the perturbation,
        which uses it only when it keeps a per-example store.
        """
        target = logits.detach()
        similarity = self.similarity

        def discrepancy(candidate: Tensor) -> Tensor:
            return similarity(model(candidate), target)

        if index is None:  # the old call: perturbations written before indices existed keep working
            x_perturbed = self.perturbation(x, discrepancy, model=model)
        else:
            x_perturbed = self.perturbation(x, discrepancy, model=model, index=index)
        perturbed_logits = model(x_perturbed)
        value = similarity(perturbed_logits, logits)
        with torch.no_grad():
            accuracy = (perturbed_logits.argmax(dim=1) == y).float().mean()
        return RegularizerOutput(value=value, metrics={"perturbed_acc": accuracy})
