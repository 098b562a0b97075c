"""The TRADES discrepancy: KL divergence between natural and perturbed predictive distributions."""

from __future__ import annotations

from typing import ClassVar

import attrs
import gin
import torch.nn.functional as F
from torch import Tensor

from rnasframe.interfaces.similarity import Similarity

__all__ = ["KLSimilarity"]


@gin.configurable
@attrs.define(frozen=True)
class KLSimilarity(Similarity):
    """``KL(p(x) || p(x'))``, the TRADES regularizer, averaged over the batch.

    With ``p = softmax(natural_logits)`` and ``q = softmax(perturbed_logits)``::

        f = mean_over_batch( sum_c p_c * (log p_c - log q_c) )

    This is the direction TRADES uses: the natural distribution is the reference. The paper does
    not name its ``f``; this is rnasframe's default. Computed by :func:`torch.nn.functional.kl_div`
    on two ``log_softmax`` outputs (``log_target=True``), so the result is finite for any finite
    logits. It is in the dtype of the logits and is ``>= 0`` up to floating-point rounding (no
    clamp is applied, so gradients are never cut); it is exactly ``0`` when both arguments are
    equal. Gradients flow to both arguments; detach ``natural_logits`` yourself where the
    reference should be a constant.

    It compares the softmax of the logits (``acts_on = "probabilities"``), so adding a constant to
    all logits of an example does not change it.
    """

    acts_on: ClassVar[str] = "probabilities"

    def compute(self, perturbed_logits: Tensor, natural_logits: Tensor) -> Tensor:
        """Return the batch-mean ``KL(softmax(natural_logits) || softmax(perturbed_logits))``."""
        log_p_natural = F.log_softmax(natural_logits, dim=1)
        log_p_perturbed = F.log_softmax(perturbed_logits, dim=1)
        return F.kl_div(log_p_perturbed, log_p_natural, reduction="batchmean", log_target=True)
