"""Cosine distance between perturbed and natural logit vectors."""

from __future__ import annotations

from typing import ClassVar

import attrs
import gin
import torch.nn.functional as F
from torch import Tensor

from rnasframe.interfaces.similarity import Similarity
from rnasframe.validation import greater_than

__all__ = ["CosineSimilarity"]


@gin.configurable
@attrs.define(frozen=True)
class CosineSimilarity(Similarity):
    """The cosine distance ``1 - cos(perturbed_logits, natural_logits)``, averaged over the batch.

    Per example it is computed as ``0.5 * ||u - v||^2`` with ``u = a / max(||a||, eps)`` and
    ``v = b / max(||b||, eps)``, which equals ``1 - cos(a, b)`` whenever both logit vectors are
    longer than ``eps``. This form is exactly ``>= 0``, exactly ``0`` for equal inputs (all-zero
    logits included, where a plain cosine is undefined), more accurate than ``1 - cos`` for nearly
    parallel vectors, and differentiable in both arguments. Values lie in ``[0, 2]``: ``0`` for
    parallel, ``1`` for orthogonal, ``2`` for opposite logits. Scaling either logit vector by a
    positive factor does not change it.

    ``acts_on`` is ``"logits"``: it compares the raw logit vectors.

    Attributes:
        eps: the smallest norm divided by (> 0); guards against division by zero.
    """

    acts_on: ClassVar[str] = "logits"

    eps: float = attrs.field(
        default=1e-8, validator=greater_than(0.0, "a guard against division by zero")
    )

    def compute(self, perturbed_logits: Tensor, natural_logits: Tensor) -> Tensor:
        """Return the batch-mean cosine distance between the two logit batches."""
        u = F.normalize(perturbed_logits, p=2.0, dim=1, eps=self.eps)
        v = F.normalize(natural_logits, p=2.0, dim=1, eps=self.eps)
        return 0.5 * (u - v).square().sum(dim=1).mean()
