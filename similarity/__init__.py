"""Discrepancies ``f(m(x'), m(x))`` between the model's outputs on perturbed and natural inputs.

All take raw logits of shape ``(batch, classes)``, return a batch mean that is ``>= 0`` and ``0``
for equal inputs, and are differentiable in both arguments
(:class:`~rnasframe.interfaces.Similarity`).

* :class:`KLSimilarity` — ``KL(p(x) || p(x'))`` on softmax probabilities (TRADES).
* :class:`CosineSimilarity` — ``1 - cos`` between logit vectors.
* :class:`MSESimilarity` — mean squared error between logits.
"""

from rnasframe.similarity.cosine import CosineSimilarity
from rnasframe.similarity.kl import KLSimilarity
from rnasframe.similarity.mse import MSESimilarity

__all__ = ["CosineSimilarity", "KLSimilarity", "MSESimilarity"]
