"""Mean squared error between perturbed and natural logits."""

from __future__ import annotations

from typing import ClassVar

import attrs
import gin
import torch.nn.functional as F
from torch import Tensor

from rnasframe.interfaces.similarity import Similarity

__all__ = ["MSESimilarity"]


@gin.configurable
@attrs.define(frozen=True)
class MSESimilarity(Similarity):
    """The mean squared error between perturbed and natural logits.

    The mean is over *all* elements (batch and classes), as ``F.mse_loss(..., reduction="mean")``:
    i.e. the per-example mean of squared logit differences, averaged over the batch. Multiply by
    the number of classes for the per-example *sum* of squares. Exactly ``>= 0``, exactly ``0``
    for equal inputs and differentiable in both arguments.

    ``acts_on`` is ``"logits"``: it compares the raw logits, so (unlike
    :class:`~rnasframe.similarity.KLSimilarity`) it is sensitive to their scale and offset.
    """

    acts_on: ClassVar[str] = "logits"

    def compute(self, perturbed_logits: Tensor, natural_logits: Tensor) -> Tensor:
        """Return the mean over all elements of ``(perturbed_logits - natural_logits) ** 2``."""
        return F.mse_loss(perturbed_logits, natural_logits, reduction="mean")
